//! One device connection: CONNECT and authentication ([`super::handshake`]), then a loop
//! that reads packets, writes deliveries (QoS 1), and stops when the hub closes the session
//! (takeover, keepalive expiry, shutdown).
//!
//! Memory is the design constraint here: a node holds hundreds of thousands of mostly
//! idle connections. An idle connection keeps only [`Conn`] (a socket, its device id, its
//! session and two empty options) inside a small task; the input buffer exists only while
//! a packet is partly received, and everything a delivery needs ([`Active`]: output
//! buffer, in-flight window, backlog) is allocated when a delivery starts and freed when
//! the connection is idle again. The CONNECT phase runs in a boxed future of its own so
//! that its state does not enlarge the long-lived task, and the loop is a hand-written
//! future ([`ConnLoop`]) that polls the socket and the session directly instead of
//! keeping `select!` branch futures and a timer alive in every task. Reads go through a
//! buffer on the stack and are copied into the input buffer only when bytes came.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use herald_mqtt::{
    DecodeError, Disconnect, MqttStr, Packet, Properties, Property, Protocol, PubAck, PubComp, PubRec, Publish, QoS,
    ReasonCode, SubAck, UnsubAck, decode_with,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use herald_core::ids::{DeviceId, MessageId};
use herald_core::model::{PendingDelivery, Presence, StatusUpdate};
use herald_core::untrusted::Untrusted;
use herald_store::{StoreError, StoreResult};

use super::Gateway;
use super::transport::Transport;

use crate::dispatch::{CloseCause, Message, Outgoing, Session, outgoing};

/// First allocation for incoming bytes: device packets are small (PUBACK, PINGREQ, CONNECT);
/// a larger packet grows the buffer as it arrives.
const READ_CHUNK: usize = 512;
/// The stack buffer one read fills.
const READ_STACK: usize = 4096;
/// Acknowledged message ids remembered while deliveries flow, to drop a second copy of a
/// message queued twice (by the dispatcher and by a store refill).
const RECENT_ACKED: usize = 64;
/// How long the server's MQTT 5 DISCONNECT may take to write.
pub(super) const GOODBYE: Duration = Duration::from_secs(1);
/// The MQTT 5 property identifier of Topic Alias.
const TOPIC_ALIAS: u8 = 0x23;
/// How long a graceful stop reads acknowledgements already sent (see `take_arrived`).
const SHUTDOWN_READ: std::time::Duration = std::time::Duration::from_millis(200);

/// Why a connection ended, for the log.
#[derive(Debug)]
pub(super) enum Close {
    Eof,
    Io(std::io::Error),
    /// Bytes that are no MQTT packet.
    Decode(DecodeError),
    /// A packet a device may not send (with the MQTT 5 reason code that names it).
    Protocol(ReasonCode, String),
    Disconnect,
    Hub(CloseCause),
    Store(String),
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Eof => f.write_str("closed by the device"),
            Close::Io(e) => write!(f, "socket error: {e}"),
            Close::Decode(e) => write!(f, "malformed packet: {e}"),
            Close::Protocol(_, why) => write!(f, "protocol violation: {why}"),
            Close::Disconnect => f.write_str("DISCONNECT"),
            Close::Hub(CloseCause::TakenOver) => f.write_str("taken over by a newer connection"),
            Close::Hub(CloseCause::KeepAlive) => f.write_str("keepalive expired"),
            Close::Hub(CloseCause::Shutdown) => f.write_str("server shutdown"),
            Close::Store(e) => write!(f, "store error: {e}"),
        }
    }
}

impl Close {
    /// What an MQTT 5 connection is told in the server's DISCONNECT, if anything (a
    /// connection the device closed, or whose socket failed, gets none).
    fn v5_reason(&self) -> Option<ReasonCode> {
        match self {
            Close::Eof | Close::Io(_) | Close::Disconnect => None,
            Close::Decode(DecodeError::PacketTooLarge { .. }) => Some(ReasonCode::PACKET_TOO_LARGE),
            Close::Decode(_) => Some(ReasonCode::MALFORMED_PACKET),
            Close::Protocol(code, _) => Some(*code),
            Close::Hub(CloseCause::TakenOver) => Some(ReasonCode::SESSION_TAKEN_OVER),
            Close::Hub(CloseCause::KeepAlive) => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Close::Hub(CloseCause::Shutdown) => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            Close::Store(_) => Some(ReasonCode::UNSPECIFIED_ERROR),
        }
    }
}

/// What an idle connection keeps.
pub(super) struct Conn {
    pub(super) stream: Transport,
    /// Also holds the device id (one copy per connection, shared with the hub).
    pub(super) session: Arc<Session>,
    /// A partly received packet.
    pub(super) inbuf: Option<BytesMut>,
    /// Present while deliveries or replies are in progress.
    pub(super) active: Option<Box<Active>>,
    pub(super) next_packet_id: u16,
    /// The connection this one replaced ended without a trace in the store (its node died,
    /// or it has not closed yet): what it may have written goes out again with DUP.
    pub(super) resend_as_dup: bool,
    /// Bytes were written since the last completed flush (TLS keeps records until then).
    pub(super) unflushed: bool,
    /// What the CONNECT spoke; every other packet is read and written in it.
    pub(super) protocol: Protocol,
    /// MQTT 5: the device's Receive Maximum (deliveries in flight), 0 when it gave none.
    pub(super) receive_maximum: u16,
    /// MQTT 5: the device's Maximum Packet Size, 0 when it gave none.
    pub(super) max_packet: u32,
}

/// What a connection needs only while something is being delivered or answered.
#[derive(Default)]
pub(super) struct Active {
    pub(super) outbuf: BytesMut,
    /// Deliveries written and not yet acknowledged: (packet id, message, written at).
    pub(super) inflight: Vec<(u16, Arc<Message>, i64)>,
    /// Deliveries read from the store, older than anything in the session queue.
    pub(super) backlog: VecDeque<Outgoing>,
    pub(super) recent_acked: VecDeque<MessageId>,
}

impl Active {
    fn is_idle(&self) -> bool {
        self.outbuf.is_empty() && self.inflight.is_empty() && self.backlog.is_empty()
    }
}

/// What the CONNECT phase hands to the connection loop.
pub(super) struct Accepted {
    pub(super) conn: Conn,
    pub(super) keep_alive: u16,
}

impl Gateway {
    pub(super) async fn connection(self: Arc<Self>, stream: Transport) {
        let Some(Accepted { mut conn, keep_alive }) = Box::pin(self.handshake(stream)).await else {
            return;
        };
        conn.session.set_keep_alive(keep_alive, herald_core::now_ms());
        // A CONNECT may have arrived together with the packets after it.
        let reason = match self.handle_input(&mut conn) {
            Ok(()) => ConnLoop { gw: &self, conn: &mut conn, refill: None, retry: None, failed_reads: 0 }.await,
            Err(e) => e,
        };
        if matches!(reason, Close::Hub(CloseCause::Shutdown)) {
            // Boxed, like the handshake: its timer would otherwise enlarge every idle
            // connection's task by its size.
            Box::pin(self.take_arrived(&mut conn)).await;
        }
        if conn.protocol.is_v5()
            && let Some(code) = reason.v5_reason()
        {
            Box::pin(conn.disconnect(code)).await;
        }
        tracing::debug!(device = %conn.device_id(), %reason, "disconnected");
        self.hub().unregister(conn.device_id(), conn.session.generation);
        // Written but not acknowledged: the next connection gets them again, with DUP.
        for (_, message, sent_at) in conn.active.take().map(|a| a.inflight).unwrap_or_default() {
            self.store.record(StatusUpdate::Sent {
                message_id: message.id.clone(),
                device_id: conn.device_id().clone(),
                at: sent_at,
            });
        }
        self.store.record(StatusUpdate::Disconnected {
            device_id: conn.device_id().clone(),
            presence: self.presence(&conn.session),
            at: herald_core::now_ms(),
        });
    }

    /// At a graceful stop, while deliveries wait for their acknowledgement: handles what the
    /// device sent before the stop and the node has not read yet, so that an acknowledgement
    /// already on its way is committed with the rest instead of the delivery staying `sent`.
    /// Bounded: at most [`SHUTDOWN_READ`] of waiting.
    async fn take_arrived(&self, conn: &mut Conn) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_READ;
        let unacked = |conn: &Conn| conn.active.as_ref().is_some_and(|a| !a.inflight.is_empty());
        let max_packet = self.cfg.max_packet_bytes;
        while unacked(conn) {
            let read = std::future::poll_fn(|cx| poll_read_into(&mut conn.stream, cx, &mut conn.inbuf, max_packet));
            match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(_)) if self.handle_input(conn).is_ok() => continue,
                _ => return,
            }
        }
    }

    pub(super) fn presence(&self, session: &Session) -> Presence {
        Presence { node: self.dispatcher.node_id().to_owned(), generation: session.generation }
    }

    /// Writes queued deliveries while the in-flight window and the write buffer have
    /// room. Returns true when the session asks for a refill from the store first.
    fn fill(&self, conn: &mut Conn) -> bool {
        loop {
            let (inflight, buffered, backlog) =
                conn.active.as_ref().map_or((0, 0, 0), |a| (a.inflight.len(), a.outbuf.len(), a.backlog.len()));
            let room = conn.window(self.cfg.max_inflight).saturating_sub(inflight);
            if room == 0 || buffered >= self.cfg.max_write_buffer_bytes {
                return false;
            }
            if backlog == 0 && conn.session.take_lagging() {
                return true;
            }
            let batch: Vec<Outgoing> = match conn.active.as_mut().filter(|a| !a.backlog.is_empty()) {
                Some(a) => {
                    let n = room.min(a.backlog.len());
                    a.backlog.drain(..n).collect()
                }
                None => conn.session.take(room),
            };
            if batch.is_empty() {
                return false;
            }
            let now = herald_core::now_ms();
            for item in batch {
                self.write_delivery(conn, item, now);
            }
        }
    }

    fn has_room(&self, conn: &Conn) -> bool {
        let window = conn.window(self.cfg.max_inflight);
        conn.active
            .as_ref()
            .is_none_or(|a| a.inflight.len() < window && a.outbuf.len() < self.cfg.max_write_buffer_bytes)
    }

    fn write_delivery(&self, conn: &mut Conn, item: Outgoing, now: i64) {
        let message = item.message;
        let packet_id = conn.next_packet_id;
        let topic = conn.push_topic();
        let (protocol, max_packet) = (conn.protocol, conn.max_packet);
        let active = conn.active();
        // Never deliver past the validity (the expiry sweep records it as expired), nor a
        // revoked message (the store has recorded that already).
        if message.expires_at <= now
            || self.hub().is_revoked(&message.id)
            || active.inflight.iter().any(|(_, m, _)| m.id == message.id)
            || active.recent_acked.contains(&message.id)
        {
            return;
        }
        let properties = if protocol.is_v5() { delivery_properties(&message, now) } else { Properties::new() };
        let publish = Publish {
            dup: item.dup,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic,
            packet_id: Some(packet_id),
            payload: message.payload.clone(),
            properties,
        };
        let start = active.outbuf.len();
        Packet::Publish(publish).encode_with(&mut active.outbuf, protocol);
        if max_packet > 0 && active.outbuf.len() - start > max_packet as usize {
            // MQTT 5: never send more than the device takes. The message stays pending in
            // the store (until it expires) for a connection that takes it.
            active.outbuf.truncate(start);
            tracing::debug!(message = %message.id, limit = max_packet, "delivery larger than the device's maximum packet size");
            return;
        }
        active.inflight.push((packet_id, message, now));
        conn.advance_packet_id();
        self.dispatcher.metrics().deliveries_written.inc();
    }

    /// Handles every complete packet in the input buffer.
    fn handle_input(&self, conn: &mut Conn) -> Result<(), Close> {
        loop {
            let Some(buf) = conn.inbuf.as_mut() else { return Ok(()) };
            let packet = match decode_with(buf, self.cfg.max_packet_bytes, conn.protocol) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    if buf.is_empty() {
                        conn.inbuf = None;
                    }
                    return Ok(());
                }
                Err(e) => return Err(Close::Decode(e)),
            };
            self.handle_packet(conn, packet)?;
        }
    }

    fn handle_packet(&self, conn: &mut Conn, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::PubAck(PubAck { packet_id, reason, .. }) => {
                let device_id = conn.device_id().clone();
                let Some(active) = conn.active.as_mut() else {
                    return Ok(());
                };
                if let Some(i) = active.inflight.iter().position(|(id, _, _)| *id == packet_id) {
                    let (_, message, sent_at) = active.inflight.swap_remove(i);
                    if reason.is_success() {
                        self.dispatcher.metrics().deliveries_acked.inc();
                        self.store.record(StatusUpdate::Delivered {
                            message_id: message.id.clone(),
                            device_id,
                            sent_at,
                            at: herald_core::now_ms(),
                        });
                    } else {
                        // An MQTT 5 device refused the message: it is not marked arrived,
                        // stays pending, and is offered again on its next connection.
                        tracing::debug!(device = %device_id, message = %message.id, ?reason, "delivery refused by the device");
                    }
                    if active.recent_acked.len() == RECENT_ACKED {
                        active.recent_acked.pop_front();
                    }
                    active.recent_acked.push_back(message.id.clone());
                }
                Ok(())
            }
            Packet::Publish(p) => {
                if p.properties.get(TOPIC_ALIAS).is_some() {
                    // The CONNACK offered none (Topic Alias Maximum 0).
                    return Err(Close::Protocol(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias".into()));
                }
                let allowed = p.topic.as_str().strip_prefix("events/") == Some(conn.device_id().as_str());
                let reason = if allowed {
                    self.apply_events(conn, &p.payload);
                    ReasonCode::SUCCESS
                } else if conn.protocol.is_v5() {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    // MQTT 3.1.1 offers no negative PUBACK: refusing means closing.
                    return Err(Close::Protocol(
                        ReasonCode::NOT_AUTHORIZED,
                        format!("publish to {} is not allowed", Untrusted(p.topic.as_str())),
                    ));
                };
                let answer = |packet_id| PubAck { reason, ..PubAck::new(packet_id) };
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(packet_id)) => conn.reply(Packet::PubAck(answer(packet_id))),
                    (QoS::ExactlyOnce, Some(packet_id)) => {
                        let PubAck { packet_id, reason, properties } = answer(packet_id);
                        conn.reply(Packet::PubRec(PubRec { packet_id, reason, properties }))
                    }
                    _ => {}
                }
                Ok(())
            }
            Packet::PubRel(rel) => {
                conn.reply(Packet::PubComp(PubComp::new(rel.packet_id)));
                Ok(())
            }
            Packet::Subscribe(sub) => {
                let own = format!("push/{}", conn.device_id());
                let return_codes = sub
                    .filters
                    .iter()
                    .map(|f| {
                        if f.filter.as_str() == own {
                            ReasonCode::GRANTED_QOS_1
                        } else {
                            // 0x80 on a 3.1.1 connection.
                            ReasonCode::NOT_AUTHORIZED
                        }
                    })
                    .collect();
                let ack = SubAck { packet_id: sub.packet_id, return_codes, properties: Properties::new() };
                conn.reply(Packet::SubAck(ack));
                Ok(())
            }
            Packet::Unsubscribe(unsub) => {
                // The push topic is the server's own subscription: it stays (MQTT 5: "not
                // authorized"); any other filter was never subscribed.
                let own = format!("push/{}", conn.device_id());
                let reasons = if conn.protocol.is_v5() {
                    let reason = |f: &MqttStr| {
                        if f.as_str() == own { ReasonCode::NOT_AUTHORIZED } else { ReasonCode::NO_SUBSCRIPTION_EXISTED }
                    };
                    unsub.filters.iter().map(reason).collect()
                } else {
                    Vec::new()
                };
                let ack = UnsubAck { packet_id: unsub.packet_id, reasons, properties: Properties::new() };
                conn.reply(Packet::UnsubAck(ack));
                Ok(())
            }
            Packet::PingReq => {
                conn.reply(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(_) => Err(Close::Disconnect),
            Packet::Auth(_) => {
                Err(Close::Protocol(ReasonCode::PROTOCOL_ERROR, "AUTH without an authentication method".into()))
            }
            other => {
                Err(Close::Protocol(ReasonCode::PROTOCOL_ERROR, format!("unexpected {} from a device", other.name())))
            }
        }
    }

    /// Applies `{messageId, event, at?}` (one object or an array) published by the device.
    fn apply_events(&self, conn: &Conn, payload: &[u8]) {
        let now = herald_core::now_ms();
        match herald_core::events::parse_events(payload, now) {
            Ok(events) => {
                for e in events {
                    self.store.record(StatusUpdate::Event {
                        message_id: e.message_id,
                        device_id: conn.device_id().clone(),
                        event: e.event,
                        at: e.at,
                        received_at: now,
                    });
                }
            }
            Err(e) => tracing::debug!(device = %conn.device_id(), error = %e, "ignored malformed events"),
        }
    }
}

type Refill = Pin<Box<dyn Future<Output = StoreResult<Vec<PendingDelivery>>> + Send>>;

/// How long a connection waits to read its pending deliveries again when the store did not
/// answer: 1 s, then 2 s, then 4 s at most (a read that waits for an unreachable store holds
/// up what the hub hands over, so it is not tried back to back).
fn refill_retry(failed_reads: u32) -> std::time::Duration {
    std::time::Duration::from_secs(1 << failed_reads.clamp(1, 3).saturating_sub(1))
}

/// A read of the device's pending deliveries.
fn read_pending(gw: &Gateway, device: &DeviceId) -> Refill {
    let (store, device, limit) = (gw.store.clone(), device.clone(), gw.cfg.max_queued);
    Box::pin(async move { store.pending_deliveries(&device, herald_core::now_ms(), limit).await })
}

/// The connection loop: reads and handles packets, writes deliveries, and ends with the
/// reason the connection closed. It keeps no timer and no branch futures: socket readiness
/// is polled directly, and the session stores the task's waker.
struct ConnLoop<'a> {
    gw: &'a Gateway,
    conn: &'a mut Conn,
    /// A read of pending deliveries from the store, while one is running.
    refill: Option<Refill>,
    /// After a read the store did not answer: when to read again.
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Reads the store did not answer in a row.
    failed_reads: u32,
}

impl Future for ConnLoop<'_> {
    type Output = Close;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Close> {
        let this = self.get_mut();
        let (gw, conn) = (this.gw, &mut *this.conn);
        loop {
            if let Some(cause) = conn.session.closed() {
                return Poll::Ready(Close::Hub(cause));
            }
            if let Some(refill) = this.refill.as_mut()
                && let Poll::Ready(result) = refill.as_mut().poll(cx)
            {
                this.refill = None;
                match result {
                    Ok(pending) => {
                        this.failed_reads = 0;
                        if pending.len() == gw.cfg.max_queued {
                            // More may wait in the store: read again once these are written.
                            conn.session.mark_lagging();
                        }
                        let dup = std::mem::take(&mut conn.resend_as_dup);
                        if !pending.is_empty() {
                            conn.active().backlog.extend(pending.into_iter().map(|p| {
                                let mut o = outgoing(p);
                                o.dup |= dup;
                                o
                            }));
                        }
                    }
                    // The store is away (a restart, a failover, a partition): the device
                    // keeps its connection, gets what other nodes hand over meanwhile, and
                    // the read is tried again a little later.
                    Err(StoreError::Unavailable(_)) => {
                        this.failed_reads = this.failed_reads.saturating_add(1);
                        this.retry = Some(Box::pin(tokio::time::sleep(refill_retry(this.failed_reads))));
                        continue;
                    }
                    Err(e) => return Poll::Ready(Close::Store(e.to_string())),
                }
            }
            if let Some(retry) = this.retry.as_mut()
                && retry.as_mut().poll(cx).is_ready()
            {
                this.retry = None;
                conn.session.mark_lagging();
            }
            // Meanwhile, what the hub hands over is written as usual.
            if this.refill.is_none() && gw.fill(conn) {
                this.refill = Some(read_pending(gw, conn.device_id()));
                continue;
            }
            // Writes what the socket takes; when it takes no more, the waker is registered
            // for when it does.
            if let Err(e) = conn.flush(cx) {
                return Poll::Ready(e);
            }
            match poll_read_into(&mut conn.stream, cx, &mut conn.inbuf, gw.cfg.max_packet_bytes) {
                Poll::Ready(Ok(_)) => {
                    conn.session.touch(herald_core::now_ms());
                    if let Err(e) = gw.handle_input(conn) {
                        return Poll::Ready(e);
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => {}
            }
            let room = this.refill.is_none() && gw.has_room(conn);
            if conn.session.poll_work(cx.waker(), room) {
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl Conn {
    fn device_id(&self) -> &DeviceId {
        &self.session.device_id
    }

    fn active(&mut self) -> &mut Active {
        self.active.get_or_insert_with(Box::default)
    }

    fn reply(&mut self, packet: Packet) {
        let protocol = self.protocol;
        packet.encode_with(&mut self.active().outbuf, protocol);
    }

    /// Deliveries allowed in flight: the node's limit, or the device's Receive Maximum
    /// (MQTT 5) when lower.
    fn window(&self, max_inflight: usize) -> usize {
        match self.receive_maximum {
            0 => max_inflight,
            n => max_inflight.min(usize::from(n)),
        }
    }

    /// MQTT 5: ends the connection with the server's DISCONNECT, after what is still
    /// unwritten (a packet cut in the middle would garble it). Bounded by [`GOODBYE`].
    async fn disconnect(&mut self, reason: ReasonCode) {
        // Only the output: what is in flight is recorded as sent after this.
        let mut out = self.active.as_mut().map(|a| std::mem::take(&mut a.outbuf)).unwrap_or_default();
        let mut goodbye = Disconnect::new(reason);
        goodbye.properties.push(Property::ReasonString(MqttStr::new(reason.name())));
        Packet::Disconnect(goodbye).encode_with(&mut out, Protocol::V5);
        let _ = tokio::time::timeout(GOODBYE, write_all(&mut self.stream, &out)).await;
    }

    fn push_topic(&self) -> MqttStr {
        MqttStr::new(format!("push/{}", self.device_id()))
    }

    /// The next packet id not used by an in-flight delivery.
    fn advance_packet_id(&mut self) {
        loop {
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let id = self.next_packet_id;
            if !self.active.as_ref().is_some_and(|a| a.inflight.iter().any(|(used, _, _)| *used == id)) {
                return;
            }
        }
    }

    /// Writes as much of the output as the socket takes now (registering the waker when it
    /// takes no more); frees the delivery state once nothing is pending.
    fn flush(&mut self, cx: &mut Context<'_>) -> Result<(), Close> {
        if let Some(active) = self.active.as_mut() {
            while !active.outbuf.is_empty() {
                match Pin::new(&mut self.stream).poll_write(cx, &active.outbuf) {
                    Poll::Ready(Ok(0)) => return Err(Close::Eof),
                    Poll::Ready(Ok(n)) => {
                        let _ = active.outbuf.split_to(n);
                        self.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Err(Close::Io(e)),
                    Poll::Pending => return Ok(()),
                }
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(Close::Io(e)),
                Poll::Pending => {}
            }
        }
        if self.active.as_ref().is_some_and(|a| a.is_idle()) {
            self.active = None;
        }
        Ok(())
    }
}

/// The MQTT 5 properties of a delivery: how long it stays valid (Message Expiry
/// Interval, rounded up to a second), and the message's type and ids as user properties
/// (`type`, `messageId`, and `taskId` / `revokeId` when the payload has them), so that
/// a client can sort and deduplicate without parsing the payload. The user properties are
/// read from the payload once per message and shared by every connection.
fn delivery_properties(message: &Message, now: i64) -> Properties {
    let secs = (message.expires_at.saturating_sub(now) + 999) / 1000;
    let head = message.v5_head.get_or_init(|| head_of(&message.payload));
    let mut props = Properties(Vec::with_capacity(1 + head.0.len()));
    props.push(Property::MessageExpiryInterval(u32::try_from(secs.max(1)).unwrap_or(u32::MAX)));
    props.0.extend(head.0.iter().cloned());
    props
}

/// The user properties of a payload's type and ids (none of what it lacks).
fn head_of(payload: &[u8]) -> Properties {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        #[serde(rename = "type")]
        kind: Option<String>,
        message_id: Option<String>,
        task_id: Option<String>,
        revoke_id: Option<String>,
    }
    let head: Head = serde_json::from_slice(payload).unwrap_or_default();
    let ids =
        [("type", head.kind), ("messageId", head.message_id), ("taskId", head.task_id), ("revokeId", head.revoke_id)];
    let mut props = Properties::new();
    for (name, value) in ids {
        if let Some(value) = value.filter(|v| v.len() <= 256 && !v.contains('\0')) {
            props.push(Property::UserProperty(MqttStr::new(name), MqttStr::new(value)));
        }
    }
    props
}

/// Reads what the socket has into `inbuf` (allocated when bytes came); the byte count, or
/// `Pending` with the waker registered.
pub(super) fn poll_read_into(
    stream: &mut Transport,
    cx: &mut Context<'_>,
    inbuf: &mut Option<BytesMut>,
    max_packet: usize,
) -> Poll<Result<usize, Close>> {
    // Not zeroed: the socket writes before anything is read from it.
    let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_STACK];
    let mut read = ReadBuf::uninit(&mut chunk);
    match Pin::new(stream).poll_read(cx, &mut read) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => Poll::Ready(Err(Close::Io(e))),
        Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Err(Close::Eof)),
        Poll::Ready(Ok(())) => {
            let got = read.filled();
            let buf = inbuf.get_or_insert_with(|| BytesMut::with_capacity(READ_CHUNK.max(got.len())));
            if buf.capacity() - buf.len() < got.len() {
                buf.reserve(buf.capacity().max(got.len()).min(max_packet.max(got.len())));
            }
            buf.extend_from_slice(got);
            Poll::Ready(Ok(got.len()))
        }
    }
}

pub(super) async fn write_all(stream: &mut Transport, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(data).await?;
    stream.flush().await
}
