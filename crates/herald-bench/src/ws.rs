//! The bench devices' MQTT over WebSocket: a tungstenite client whose binary messages are
//! read and written as the MQTT byte stream.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Opens `ws://addr/mqtt` over `tcp`, offering the `mqtt` subprotocol.
pub(crate) async fn connect(addr: &str, tcp: TcpStream) -> anyhow::Result<WsBytes> {
    let mut request = format!("ws://{addr}/mqtt").into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", "mqtt".parse()?);
    let (ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
    Ok(WsBytes { ws, pending: Bytes::new() })
}

pub(crate) struct WsBytes {
    ws: WebSocketStream<TcpStream>,
    pending: Bytes,
}

impl AsyncRead for WsBytes {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(bytes))) => this.pending = bytes,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for WsBytes {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let ws = &mut self.get_mut().ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(std::io::Error::other)?;
        Pin::new(&mut *ws).start_send(Message::Binary(Bytes::copy_from_slice(data))).map_err(std::io::Error::other)?;
        // Taken: the bytes are queued whatever the flush says (the device flushes after it).
        let _ = Pin::new(ws).poll_flush(cx);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx).map_err(std::io::Error::other)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_close(cx).map_err(std::io::Error::other)
    }
}
