//! The byte streams a device talks over: TCP, TLS, and MQTT over WebSocket (binary messages
//! carrying the MQTT bytes, subprotocol `mqtt`), plain or over TLS.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Error;

/// A stream a device reads and writes.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where to connect, from a URL: `tcp://`, `tls://` (also `mqtt://`, `mqtts://`), `ws://`,
/// `wss://` for MQTT; `http://`, `https://` for the device API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub websocket: bool,
    pub host: String,
    pub port: u16,
    /// The path of a WebSocket (`/mqtt` when the URL has none).
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = || Error::Config(format!("not a URL Herald's client takes: {url}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let (tls, websocket, default_port) = match scheme {
            "tcp" | "mqtt" => (false, false, 1883),
            "tls" | "mqtts" | "ssl" => (true, false, 8883),
            "ws" => (false, true, 8080),
            "wss" => (true, true, 8443),
            "http" => (false, false, 80),
            "https" => (true, false, 443),
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // `[v6 address]:port`, `host:port`, or either without the port.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => default_port,
        };
        if host.is_empty() {
            return Err(bad());
        }
        let host = host.to_string();
        let path = if websocket && path.is_empty() { "/mqtt".into() } else { path.trim_end_matches('/').into() };
        Ok(Endpoint { tls, websocket, host, port, path })
    }
}

/// The TLS settings of a client: the system's usual web roots (webpki-roots) and any the
/// app adds (a private CA).
pub(crate) fn tls_connector(extra_roots: &[CertificateDer<'static>]) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| Error::Config(format!("a root certificate does not load: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Opens `endpoint` (TCP, then TLS when asked), within `timeout`.
pub(crate) async fn open(
    endpoint: &Endpoint,
    tls: &tokio_rustls::TlsConnector,
    timeout: Duration,
) -> Result<Box<dyn Io>, Error> {
    let work = async {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = if endpoint.tls {
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| Error::Config(e.to_string()))?;
            Box::new(tls.connect(name, tcp).await?)
        } else {
            Box::new(tcp)
        };
        if !endpoint.websocket {
            return Ok(stream);
        }
        let scheme = if endpoint.tls { "wss" } else { "ws" };
        let url = format!("{scheme}://{}:{}{}", endpoint.host, endpoint.port, endpoint.path);
        Ok(Box::new(websocket_at(&url, stream).await?) as Box<dyn Io>)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| Error::Timeout("connecting"))?
}

/// A WebSocket read and written as the MQTT byte stream it carries.
pub struct WsBytes<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WsBytes<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsBytes { ws, pending: Bytes::new() }
    }
}

/// Opens `ws://addr/mqtt` over `stream`, offering the `mqtt` subprotocol.
pub async fn websocket<S: AsyncRead + AsyncWrite + Unpin>(addr: &str, stream: S) -> Result<WsBytes<S>, Error> {
    websocket_at(&format!("ws://{addr}/mqtt"), stream).await
}

/// The WebSocket handshake for `url` over `stream` (already TLS for `wss://`).
async fn websocket_at<S: AsyncRead + AsyncWrite + Unpin>(url: &str, stream: S) -> Result<WsBytes<S>, Error> {
    let mut request = url.into_client_request().map_err(|e| Error::Config(e.to_string()))?;
    request.headers_mut().insert("sec-websocket-protocol", hyper::header::HeaderValue::from_static("mqtt"));
    let (ws, _) =
        tokio_tungstenite::client_async(request, stream).await.map_err(|e| Error::Io(std::io::Error::other(e)))?;
    Ok(WsBytes::new(ws))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let ws = &mut self.get_mut().ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(std::io::Error::other)?;
        Pin::new(&mut *ws).start_send(Message::Binary(Bytes::copy_from_slice(data))).map_err(std::io::Error::other)?;
        // Taken: the bytes are queued whatever the flush says (the caller flushes after it).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_read_from_urls() {
        let e = Endpoint::parse("tcp://127.0.0.1:1884").unwrap();
        assert_eq!((e.tls, e.websocket, e.host.as_str(), e.port), (false, false, "127.0.0.1", 1884));
        let e = Endpoint::parse("wss://push.example.com").unwrap();
        assert_eq!((e.tls, e.websocket, e.port, e.path.as_str()), (true, true, 8443, "/mqtt"));
        let e = Endpoint::parse("https://[::1]:8443/").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port, e.path.as_str()), (true, "::1", 8443, ""));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("tcp://:1883").is_err());
        assert_eq!(Endpoint::parse("ws://[::1]").unwrap().host, "::1");
    }
}
