//! The CONNECT phase of a device connection: the first packet read (within the CONNECT
//! timeout), the device authenticated, its session registered and CONNACK queued, in the
//! protocol version the CONNECT chose; and the answer to a connection the per-address
//! limits refused. It runs in a boxed future of its own, so that its state does not
//! enlarge the long-lived connection task (see [`super::connection`]).

use std::time::Duration;

use bytes::BytesMut;
use herald_mqtt::{ConnAck, DecodeError, MqttStr, Packet, Properties, Property, Protocol, ReasonCode, decode};

use herald_core::crypto;
use herald_core::ids::DeviceId;
use herald_core::untrusted::Untrusted;

use super::Gateway;
use super::connection::{Accepted, Active, Close, Conn, GOODBYE, poll_read_into, write_all};
use super::transport::Transport;

/// The longest client id looked up: a deviceId Herald hands out is 22 characters; a longer
/// one is refused with CONNACK 2 before the store is asked (docs/device-protocol.md).
pub const MAX_CLIENT_ID_BYTES: usize = 64;
/// Refused connections answered at once, at most (each holds a task and a socket for up
/// to [`REFUSAL_READ`] after its TLS handshake); beyond, refused connections are closed
/// unread.
pub(super) const ANSWERED_REFUSALS: usize = 64;
/// How long a refused connection has to send its CONNECT to be told when to come back.
const REFUSAL_READ: Duration = Duration::from_secs(2);
/// The CONNECT of a refused connection is read up to this size.
const REFUSAL_MAX_PACKET: usize = 1024;
/// The least a client refused for holding too many connections is told to wait: a slot
/// comes back only when one of its connections ends.
const FULL_ADDRESS_RETRY: Duration = Duration::from_secs(10);
/// The MQTT 5 property identifier of Authentication Method.
const AUTHENTICATION_METHOD: u8 = 0x15;

impl Gateway {
    /// Answers a connection the per-address limits refused, so that a reconnect storm
    /// spreads out instead of retrying at once: reads its CONNECT (briefly) and answers
    /// CONNACK "connection rate exceeded" (0x9F) or "quota exceeded" (0x97, too many open)
    /// with a user property `retry-after-ms`: when the address may connect again, plus a
    /// random share of as much again, so that clients refused together come back apart.
    /// MQTT 3.1.1 can only say "server unavailable" (3).
    pub(super) async fn refuse(&self, mut stream: Transport, why: super::admission::Refused) {
        let mut inbuf = None;
        let first =
            tokio::time::timeout(REFUSAL_READ, read_first_packet(&mut stream, &mut inbuf, REFUSAL_MAX_PACKET)).await;
        let Ok(Ok(Packet::Connect(connect))) = first else { return };
        let (code, wait) = match why {
            super::admission::Refused::TooFast(wait) => (ReasonCode::CONNECTION_RATE_EXCEEDED, wait),
            super::admission::Refused::TooManyOpen => (ReasonCode::QUOTA_EXCEEDED, FULL_ADDRESS_RETRY),
        };
        let base = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1000);
        let jitter = u64::from(u32::from_le_bytes(crypto::random_bytes::<4>())) % base;
        let mut ack = refusal(code);
        ack.properties
            .push(Property::UserProperty(MqttStr::new("retry-after-ms"), MqttStr::new((base + jitter).to_string())));
        let answer = encoded(Packet::ConnAck(ack), connect.protocol);
        let _ = tokio::time::timeout(GOODBYE, write_all(&mut stream, &answer)).await;
    }

    /// Reads CONNECT, authenticates, registers the session and queues CONNACK.
    pub(super) async fn handshake(&self, mut stream: Transport) -> Option<Accepted> {
        let connect_timeout = Duration::from_secs(self.cfg.connect_timeout_secs);
        let mut inbuf = None;
        let first = tokio::time::timeout(
            connect_timeout,
            read_first_packet(&mut stream, &mut inbuf, self.cfg.max_packet_bytes),
        )
        .await;
        let connect = match first {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(other)) => {
                tracing::debug!(packet = other.name(), "first packet is not CONNECT");
                return None;
            }
            Ok(Err(Close::Decode(e @ DecodeError::UnsupportedProtocolLevel(_)))) => {
                // In 3.1.1's form: a client of a later version reads that one too.
                let refusal = ConnAck::new(false, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
                let _ = write_all(&mut stream, &encoded(Packet::ConnAck(refusal), Protocol::V311)).await;
                tracing::debug!(reason = %e, "CONNECT refused");
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(reason = %e, "connection closed before CONNECT");
                return None;
            }
            Err(_) => {
                tracing::debug!("no CONNECT within the timeout");
                return None;
            }
        };
        let protocol = connect.protocol;
        let device_id = DeviceId::new(connect.client_id.as_str());
        let code = if connect.properties.get(AUTHENTICATION_METHOD).is_some() {
            // Enhanced authentication (MQTT 5 AUTH) is not offered: the token is the password.
            ReasonCode::BAD_AUTHENTICATION_METHOD
        } else {
            match self.authenticate(&device_id, connect.username.as_ref(), connect.password.as_deref()).await {
                Ok(code) => code,
                Err(e) => {
                    tracing::warn!(error = %e, "store unavailable during CONNECT");
                    ReasonCode::SERVER_UNAVAILABLE
                }
            }
        };
        if code != ReasonCode::SUCCESS {
            // Not yet authenticated: the client id is shown escaped and cut.
            tracing::info!(device = %Untrusted(device_id.as_str()), ?code, "CONNECT refused");
            let _ = write_all(&mut stream, &encoded(Packet::ConnAck(refusal(code)), protocol)).await;
            return None;
        }
        // In this order: the hub takes deliveries from now on, the store records which node
        // holds the device (a push committing later rings this node), and only then are
        // the pending deliveries read (a push committed earlier is among them).
        let session = self.hub().register(&device_id);
        let presence = self.presence(&session);
        let resend_as_dup = match self.store.device_connected(&device_id, &presence, herald_core::now_ms()).await {
            Ok(Some(old)) => {
                if old.node != presence.node {
                    // A connection on another node lingers (or died with its node): that
                    // node closes it.
                    self.dispatcher.take_over(&old.node, device_id.clone(), old.generation).await;
                }
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "store unavailable during CONNECT");
                self.hub().unregister(&device_id, session.generation);
                let refused = refusal(ReasonCode::SERVER_UNAVAILABLE);
                let _ = write_all(&mut stream, &encoded(Packet::ConnAck(refused), protocol)).await;
                return None;
            }
        };
        // Deliveries for this device wait in the store: read them before anything newer.
        session.mark_lagging();
        let mut active = Box::<Active>::default();
        let mut ack = ConnAck::new(!connect.clean_session, ReasonCode::SUCCESS);
        let (mut receive_maximum, mut max_packet) = (0, 0);
        if protocol.is_v5() {
            for p in connect.properties.iter() {
                match p {
                    Property::ReceiveMaximum(n) => receive_maximum = *n,
                    Property::MaximumPacketSize(n) => max_packet = *n,
                    _ => {}
                }
            }
            ack.properties = self.connack_properties();
        }
        Packet::ConnAck(ack).encode_with(&mut active.outbuf, protocol);
        tracing::debug!(device = %device_id, "connected");
        // `connect` borrows the frame it was read from: it ends here, with that buffer.
        Some(Accepted {
            conn: Conn {
                stream,
                session,
                inbuf,
                active: Some(active),
                next_packet_id: 1,
                resend_as_dup,
                unflushed: false,
                protocol,
                receive_maximum,
                max_packet,
            },
            keep_alive: connect.keep_alive,
        })
    }

    /// What an MQTT 5 CONNACK tells the device about this server: the largest packet it
    /// takes, and the features it lacks (retained messages, wildcard, shared subscriptions
    /// and subscription identifiers: a device has exactly one subscription, its own).
    /// Topic aliases are not offered (Topic Alias Maximum left at its default, 0).
    fn connack_properties(&self) -> Properties {
        let max = u32::try_from(self.cfg.max_packet_bytes).unwrap_or(u32::MAX);
        Properties(vec![
            Property::MaximumPacketSize(max),
            Property::RetainAvailable(0),
            Property::WildcardSubscriptionAvailable(0),
            Property::SubscriptionIdentifierAvailable(0),
            Property::SharedSubscriptionAvailable(0),
        ])
    }

    async fn authenticate(
        &self,
        device_id: &DeviceId,
        username: Option<&MqttStr>,
        password: Option<&[u8]>,
    ) -> Result<ReasonCode, herald_store::StoreError> {
        let (Some(username), Some(password)) = (username, password) else {
            return Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        };
        if device_id.as_str().is_empty() || device_id.as_str().len() > MAX_CLIENT_ID_BYTES {
            return Ok(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        let Some((app_id, token_hash)) = self.store.device_credentials(device_id).await? else {
            return Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        };
        if !crypto::constant_time_eq(crypto::sha256_hex(password).as_bytes(), token_hash.as_bytes()) {
            return Ok(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        }
        if app_id.as_str() != username.as_str() {
            return Ok(ReasonCode::NOT_AUTHORIZED);
        }
        Ok(ReasonCode::SUCCESS)
    }
}

fn encoded(packet: Packet, protocol: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    packet.encode_with(&mut out, protocol);
    out
}

/// A refusing CONNACK; on MQTT 5 with the reason in words too (dropped on 3.1.1).
fn refusal(code: ReasonCode) -> ConnAck {
    let mut ack = ConnAck::new(false, code);
    ack.properties.push(Property::ReasonString(MqttStr::new(code.name())));
    ack
}

async fn read_first_packet(
    stream: &mut Transport,
    inbuf: &mut Option<BytesMut>,
    max_packet: usize,
) -> Result<Packet, Close> {
    loop {
        if let Some(buf) = inbuf.as_mut() {
            match decode(buf, max_packet) {
                Ok(Some(p)) => {
                    if buf.is_empty() {
                        *inbuf = None;
                    }
                    return Ok(p);
                }
                Ok(None) => {}
                Err(e) => return Err(Close::Decode(e)),
            }
        }
        std::future::poll_fn(|cx| poll_read_into(stream, cx, inbuf, max_packet)).await?;
    }
}
