//! One device connection: CONNECT and authentication, then a loop that reads packets,
//! writes deliveries (QoS 1), and enforces the keepalive.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use herald_mqtt::{
    ConnAck, ConnectReturnCode, DecodeError, MqttStr, Packet, PubAck, PubComp, PubRec, Publish,
    QoS, SubAck, SubscribeReturnCode, UnsubAck, decode,
};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Gateway;
use crate::crypto;
use crate::dispatch::{Message, Outgoing, Session, outgoing};
use crate::ids::{AppId, DeviceId, MessageId};
use crate::store::{DeviceEvent, StatusUpdate};

const READ_CHUNK: usize = 4096;
/// Acknowledged message ids remembered to drop a second copy of the same message that was
/// queued twice (by the dispatcher and by a store refill).
const RECENT_ACKED: usize = 64;

/// Why a connection ended, for the log.
#[derive(Debug)]
enum Close {
    Eof,
    Io(std::io::Error),
    Protocol(String),
    KeepAliveTimeout,
    Disconnect,
    TakenOver,
    Store(String),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Eof => f.write_str("closed by the device"),
            Close::Io(e) => write!(f, "socket error: {e}"),
            Close::Protocol(why) => write!(f, "protocol violation: {why}"),
            Close::KeepAliveTimeout => f.write_str("keepalive expired"),
            Close::Disconnect => f.write_str("DISCONNECT"),
            Close::TakenOver => f.write_str("taken over by a newer connection or shutdown"),
            Close::Store(e) => write!(f, "store error: {e}"),
        }
    }
}

struct Conn {
    stream: TcpStream,
    app_id: AppId,
    device_id: DeviceId,
    topic: MqttStr,
    session: Arc<Session>,
    inbuf: Option<BytesMut>,
    outbuf: BytesMut,
    /// Deliveries written and not yet acknowledged: (packet id, message).
    inflight: Vec<(u16, Arc<Message>)>,
    /// Deliveries read from the store, older than anything in the session queue.
    backlog: VecDeque<Outgoing>,
    recent_acked: VecDeque<MessageId>,
    next_packet_id: u16,
}

impl Gateway {
    pub(super) async fn connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let connect_timeout = Duration::from_secs(self.cfg.connect_timeout_secs);
        let mut inbuf = None;
        let connect = match tokio::time::timeout(
            connect_timeout,
            read_first_packet(&stream, &mut inbuf, self.cfg.max_packet_bytes),
        )
        .await
        {
            Ok(Ok(Packet::Connect(c))) => c,
            Ok(Ok(other)) => {
                tracing::debug!(packet = ?other, "first packet is not CONNECT");
                return;
            }
            Ok(Err(Close::Protocol(reason)))
                if reason.starts_with("unsupported protocol level") =>
            {
                let _ = write_all(
                    &stream,
                    &connack(ConnectReturnCode::UnacceptableProtocolVersion),
                )
                .await;
                tracing::debug!(%reason, "CONNECT refused");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(reason = %e, "connection closed before CONNECT");
                return;
            }
            Err(_) => {
                tracing::debug!("no CONNECT within the timeout");
                return;
            }
        };
        let device_id = DeviceId::new(connect.client_id.as_str());
        let code = match self
            .authenticate(
                &device_id,
                connect.username.as_ref(),
                connect.password.as_deref(),
            )
            .await
        {
            Ok(code) => code,
            Err(e) => {
                tracing::warn!(error = %e, "store unavailable during CONNECT");
                ConnectReturnCode::ServerUnavailable
            }
        };
        if code != ConnectReturnCode::Accepted {
            tracing::info!(device = %device_id, ?code, "CONNECT refused");
            let _ = write_all(&stream, &connack(code)).await;
            return;
        }
        let app_id = AppId::new(
            connect
                .username
                .as_ref()
                .map(|u| u.as_str())
                .unwrap_or_default(),
        );
        let session = self.hub.register(&device_id);
        // Deliveries for this device wait in the store: read them before anything newer.
        session.mark_lagging();
        let topic = MqttStr::new(format!("push/{device_id}"));
        let mut conn = Conn {
            stream,
            app_id,
            device_id: device_id.clone(),
            topic,
            session: session.clone(),
            inbuf,
            outbuf: BytesMut::new(),
            inflight: Vec::new(),
            backlog: VecDeque::new(),
            recent_acked: VecDeque::new(),
            next_packet_id: 1,
        };
        let ack = ConnAck {
            session_present: !connect.clean_session,
            code: ConnectReturnCode::Accepted,
        };
        Packet::ConnAck(ack).encode(&mut conn.outbuf);
        self.store.record(StatusUpdate::Seen {
            device_id: device_id.clone(),
            at: crate::now_ms(),
        });
        tracing::debug!(device = %device_id, "connected");
        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(connect.keep_alive as u64 * 1500));
        let reason = self.run(&mut conn, keep_alive).await;
        tracing::debug!(device = %device_id, %reason, "disconnected");
        self.hub.unregister(&device_id, session.generation);
        self.store.record(StatusUpdate::Seen {
            device_id,
            at: crate::now_ms(),
        });
    }

    async fn authenticate(
        &self,
        device_id: &DeviceId,
        username: Option<&MqttStr>,
        password: Option<&[u8]>,
    ) -> Result<ConnectReturnCode, crate::store::StoreError> {
        let (Some(username), Some(password)) = (username, password) else {
            return Ok(ConnectReturnCode::BadUserNameOrPassword);
        };
        if device_id.as_str().is_empty() {
            return Ok(ConnectReturnCode::IdentifierRejected);
        }
        let Some((app_id, token_hash)) = self.store.device_credentials(device_id).await? else {
            return Ok(ConnectReturnCode::BadUserNameOrPassword);
        };
        if crypto::sha256_hex(password) != token_hash {
            return Ok(ConnectReturnCode::BadUserNameOrPassword);
        }
        if app_id.as_str() != username.as_str() {
            return Ok(ConnectReturnCode::NotAuthorized);
        }
        Ok(ConnectReturnCode::Accepted)
    }

    async fn run(&self, conn: &mut Conn, keep_alive: Option<Duration>) -> Close {
        let far = Duration::from_secs(86_400 * 365);
        let sleep = tokio::time::sleep(keep_alive.unwrap_or(far));
        tokio::pin!(sleep);
        // A CONNECT may have arrived together with the packets after it.
        if let Err(e) = self.handle_input(conn) {
            return e;
        }
        loop {
            if conn.session.is_closed() {
                return Close::TakenOver;
            }
            if let Err(e) = self.fill(conn).await {
                return e;
            }
            if let Err(e) = flush(conn) {
                return e;
            }
            let room = conn.inflight.len() < self.cfg.max_inflight
                && conn.outbuf.len() < self.cfg.max_write_buffer_bytes;
            let writing = !conn.outbuf.is_empty();
            tokio::select! {
                ready = conn.stream.readable() => {
                    if let Err(e) = ready {
                        return Close::Io(e);
                    }
                    match read(conn, self.cfg.max_packet_bytes) {
                        Ok(0) => continue,
                        Ok(_) => {
                            if let Some(ka) = keep_alive {
                                sleep.as_mut().reset(Instant::now() + ka);
                            }
                            if let Err(e) = self.handle_input(conn) {
                                return e;
                            }
                        }
                        Err(e) => return e,
                    }
                }
                _ = conn.session.wait(), if room => {}
                ready = conn.stream.writable(), if writing => {
                    if let Err(e) = ready {
                        return Close::Io(e);
                    }
                }
                _ = &mut sleep => return Close::KeepAliveTimeout,
            }
        }
    }

    /// Writes queued deliveries while the in-flight window and the write buffer have room.
    async fn fill(&self, conn: &mut Conn) -> Result<(), Close> {
        loop {
            let room = self.cfg.max_inflight.saturating_sub(conn.inflight.len());
            if room == 0 || conn.outbuf.len() >= self.cfg.max_write_buffer_bytes {
                return Ok(());
            }
            if conn.backlog.is_empty() && conn.session.take_lagging() {
                let pending = self
                    .store
                    .pending_deliveries(&conn.device_id, crate::now_ms(), self.cfg.max_queued)
                    .await
                    .map_err(|e| Close::Store(e.to_string()))?;
                if pending.len() == self.cfg.max_queued {
                    // More may wait in the store: read again once these are written.
                    conn.session.mark_lagging();
                }
                conn.backlog.extend(pending.into_iter().map(outgoing));
            }
            let batch: Vec<Outgoing> = if conn.backlog.is_empty() {
                conn.session.take(room)
            } else {
                let n = room.min(conn.backlog.len());
                conn.backlog.drain(..n).collect()
            };
            if batch.is_empty() {
                if conn.backlog.capacity() > 0 {
                    conn.backlog = VecDeque::new();
                }
                return Ok(());
            }
            let now = crate::now_ms();
            for item in batch {
                self.write_delivery(conn, item, now);
            }
        }
    }

    fn write_delivery(&self, conn: &mut Conn, item: Outgoing, now: i64) {
        let message = item.message;
        // Never deliver past the validity; the expiry sweep records it as expired.
        if message.expires_at <= now
            || conn.inflight.iter().any(|(_, m)| m.id == message.id)
            || conn.recent_acked.contains(&message.id)
        {
            return;
        }
        let packet_id = conn.next_free_packet_id();
        let publish = Publish {
            dup: item.dup,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: conn.topic.clone(),
            packet_id: Some(packet_id),
            payload: message.payload.clone(),
        };
        Packet::Publish(publish).encode(&mut conn.outbuf);
        if !item.dup {
            self.store.record(StatusUpdate::Sent {
                message_id: message.id.clone(),
                device_id: conn.device_id.clone(),
                at: now,
            });
        }
        crate::metrics::DELIVERIES_WRITTEN.inc();
        conn.inflight.push((packet_id, message));
    }

    /// Handles every complete packet in the input buffer.
    fn handle_input(&self, conn: &mut Conn) -> Result<(), Close> {
        loop {
            let Some(buf) = conn.inbuf.as_mut() else {
                return Ok(());
            };
            let packet = match decode(buf, self.cfg.max_packet_bytes) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    if buf.is_empty() {
                        conn.inbuf = None;
                    }
                    return Ok(());
                }
                Err(e) => return Err(protocol(e)),
            };
            self.handle_packet(conn, packet)?;
        }
    }

    fn handle_packet(&self, conn: &mut Conn, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::PubAck(PubAck { packet_id }) => {
                if let Some(i) = conn.inflight.iter().position(|(id, _)| *id == packet_id) {
                    let (_, message) = conn.inflight.swap_remove(i);
                    crate::metrics::DELIVERIES_ACKED.inc();
                    self.store.record(StatusUpdate::Event {
                        message_id: message.id.clone(),
                        device_id: conn.device_id.clone(),
                        event: DeviceEvent::Arrived,
                        at: crate::now_ms(),
                    });
                    if conn.recent_acked.len() == RECENT_ACKED {
                        conn.recent_acked.pop_front();
                    }
                    conn.recent_acked.push_back(message.id.clone());
                }
                if conn.inflight.is_empty() {
                    conn.inflight = Vec::new();
                }
                Ok(())
            }
            Packet::Publish(p) => {
                if p.topic.as_str().strip_prefix("events/") != Some(conn.device_id.as_str()) {
                    // MQTT 3.1.1 offers no negative PUBACK: refusing means closing.
                    return Err(Close::Protocol(format!(
                        "publish to {} is not allowed",
                        p.topic
                    )));
                }
                self.apply_events(conn, &p.payload);
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(packet_id)) => {
                        Packet::PubAck(PubAck { packet_id }).encode(&mut conn.outbuf)
                    }
                    (QoS::ExactlyOnce, Some(packet_id)) => {
                        Packet::PubRec(PubRec { packet_id }).encode(&mut conn.outbuf)
                    }
                    _ => {}
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                Packet::PubComp(PubComp {
                    packet_id: rel.packet_id,
                })
                .encode(&mut conn.outbuf);
                Ok(())
            }
            Packet::Subscribe(sub) => {
                let return_codes = sub
                    .filters
                    .iter()
                    .map(|f| {
                        if f.filter == conn.topic {
                            SubscribeReturnCode::Success(QoS::AtLeastOnce)
                        } else {
                            SubscribeReturnCode::Failure
                        }
                    })
                    .collect();
                Packet::SubAck(SubAck {
                    packet_id: sub.packet_id,
                    return_codes,
                })
                .encode(&mut conn.outbuf);
                Ok(())
            }
            Packet::Unsubscribe(unsub) => {
                // The push topic is the server's own subscription: it stays.
                Packet::UnsubAck(UnsubAck {
                    packet_id: unsub.packet_id,
                })
                .encode(&mut conn.outbuf);
                Ok(())
            }
            Packet::PingReq => {
                Packet::PingResp.encode(&mut conn.outbuf);
                Ok(())
            }
            Packet::Disconnect => Err(Close::Disconnect),
            other => Err(Close::Protocol(format!(
                "unexpected packet from a device: {other:?}"
            ))),
        }
    }

    /// Applies `{messageId, event, at?}` (one object or an array) published by the device.
    fn apply_events(&self, conn: &Conn, payload: &[u8]) {
        match crate::api::device::parse_events(payload) {
            Ok(events) => {
                for (message_id, event, at) in events {
                    self.store.record(StatusUpdate::Event {
                        message_id,
                        device_id: conn.device_id.clone(),
                        event,
                        at,
                    });
                }
            }
            Err(e) => {
                tracing::debug!(device = %conn.device_id, app = %conn.app_id, error = %e, "ignored malformed events")
            }
        }
    }
}

impl Conn {
    fn next_free_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|(used, _)| *used == id) {
                return id;
            }
        }
    }
}

fn protocol(e: DecodeError) -> Close {
    Close::Protocol(e.to_string())
}

fn connack(code: ConnectReturnCode) -> BytesMut {
    let mut out = BytesMut::new();
    Packet::ConnAck(ConnAck {
        session_present: false,
        code,
    })
    .encode(&mut out);
    out
}

/// Reads what the socket has into the connection's input buffer; `Ok(0)` when nothing
/// was there after all.
fn read(conn: &mut Conn, max_packet: usize) -> Result<usize, Close> {
    read_into(&conn.stream, &mut conn.inbuf, max_packet)
}

fn read_into(
    stream: &TcpStream,
    inbuf: &mut Option<BytesMut>,
    max_packet: usize,
) -> Result<usize, Close> {
    let buf = inbuf.get_or_insert_with(|| BytesMut::with_capacity(READ_CHUNK));
    if buf.capacity() - buf.len() < 256 {
        buf.reserve(READ_CHUNK.min(max_packet));
    }
    let result = stream.try_read_buf(buf);
    if buf.is_empty() {
        *inbuf = None;
    }
    match result {
        Ok(0) => Err(Close::Eof),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(Close::Io(e)),
    }
}

async fn read_first_packet(
    stream: &TcpStream,
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
                Err(e) => return Err(protocol(e)),
            }
        }
        stream.readable().await.map_err(Close::Io)?;
        read_into(stream, inbuf, max_packet)?;
    }
}

/// Writes as much of the output buffer as the socket takes now.
fn flush(conn: &mut Conn) -> Result<(), Close> {
    while !conn.outbuf.is_empty() {
        match conn.stream.try_write(&conn.outbuf) {
            Ok(0) => return Err(Close::Eof),
            Ok(n) => {
                let _ = conn.outbuf.split_to(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(Close::Io(e)),
        }
    }
    // Give the buffer back while idle.
    conn.outbuf = BytesMut::new();
    Ok(())
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        stream.writable().await?;
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
