//! MQTT over WebSocket: `GET /mqtt` on the HTTP and HTTPS listeners upgrades to a WebSocket
//! (subprotocol `mqtt` when the client offers it) whose binary messages carry the MQTT
//! byte stream, in any cut: a message may hold several packets or part of one (MQTT 5.0
//! §6). From there the connection is the gateway's like any other: the same limits per
//! source address, CONNECT timeout, session and deliveries.
//!
//! The HTTP threads accept the upgrade; the connection task runs on the gateway's runtime.
//! tungstenite keeps a read buffer per connection for its whole life: it is sized to a
//! device's usual packets ([`READ_BUFFER`]), not tungstenite's 128 KiB default; a larger
//! message is read in more steps. Measured (docs/PERFORMANCE.md): 4 KiB made an idle
//! WebSocket connection cost 5.9 KB, 256 bytes 2.1 KB (plain TCP: 1.0-1.1 KB).

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use herald_core::error::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Gateway;
use super::transport::Transport;
use crate::api::Refusal;
use crate::http::Peer;

/// Bytes tungstenite reads at a time and keeps allocated per connection: a CONNECT, a
/// PUBACK, an event fit.
const READ_BUFFER: usize = 256;

/// The `/mqtt` route, for the HTTP router of the node.
pub fn router(gateway: Arc<Gateway>) -> axum::Router {
    axum::Router::new().route("/mqtt", axum::routing::get(upgrade)).with_state(gateway)
}

async fn upgrade(
    State(gateway): State<Arc<Gateway>>,
    peer: Option<Extension<Peer>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return Refusal::new(
            ErrorCode::InvalidParam,
            "this is MQTT over WebSocket: connect with a WebSocket client (subprotocol mqtt)",
        )
        .into_response();
    };
    let ip = peer.map(|Extension(peer)| peer.addr.ip().to_canonical());
    let max_packet = gateway.cfg.max_packet_bytes;
    ws.protocols(["mqtt"])
        .read_buffer_size(READ_BUFFER)
        // Written as the connection flushes; the gateway bounds what waits unsent.
        .write_buffer_size(0)
        .max_write_buffer_size(gateway.cfg.max_write_buffer_bytes.saturating_mul(2))
        // A message over the largest packet (plus its framing) is no device's.
        .max_message_size(max_packet + 16)
        .max_frame_size(max_packet + 16)
        .on_upgrade(move |socket| async move {
            gateway.websocket(socket, ip);
        })
}

impl Gateway {
    /// Takes an upgraded WebSocket from the HTTP listener as a device connection from `ip`
    /// (unknown: not limited per address, as when a proxy's address is exempt).
    fn websocket(self: &Arc<Self>, socket: WebSocket, ip: Option<IpAddr>) {
        let stream = Transport::Ws(Box::new(WsStream { ws: socket, pending: Bytes::new() }));
        self.start(ip, Box::pin(async move { Some(stream) }));
    }
}

/// A WebSocket read and written as the MQTT byte stream it carries.
pub(super) struct WsStream {
    ws: WebSocket,
    /// What is left of the last binary message read.
    pending: Bytes,
}

impl AsyncRead for WsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                // The end of the stream: a read of nothing.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(bytes))) => this.pending = bytes,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a text message on MQTT over WebSocket (binary only)",
                    )));
                }
                // Pings are answered by tungstenite.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let ws = &mut self.get_mut().ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(std::io::Error::other)?;
        Pin::new(ws).start_send(Message::Binary(Bytes::copy_from_slice(data))).map_err(std::io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx).map_err(std::io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_close(cx).map_err(std::io::Error::other)
    }
}
