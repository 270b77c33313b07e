//! The HTTP listener: HTTP/1.1 on hyper, serving the API router, with a bound on what a
//! client can hold.
//!
//! Every open connection is a file descriptor, shared with the device connections of the
//! MQTT listener: a client that opens connections and sends nothing must not take them all.
//! So the listener holds at most `max_connections` at once (more wait in the kernel's
//! accept queue), and closes a connection that
//! - sends no complete request head within `header_timeout` of opening, or of sending the
//!   first byte of its next request (slow headers);
//! - stays silent for `idle_timeout` between requests (keep-alive);
//! - (through the API's body extractors) sends a body slower than `body_timeout` (408).
//!
//! hyper times request heads from when it starts waiting for one, which on a kept-alive
//! connection is the end of the previous response: the header and idle timeouts would be
//! one number. A short header timeout protects against slow clients, a long idle timeout
//! keeps the connections of load balancers and API clients (who expect 60 s or more) open,
//! so they are kept apart here: each connection has a watch that knows whether a request is
//! being served and when the connection last started one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::HttpConfig;
use crate::shutdown::Signal;

/// Serves `router` on `listener` (HTTPS when `tls` is given: the handshake has the header
/// timeout to complete) until `shutdown`; then stops accepting, lets requests in progress
/// finish and returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    cfg: HttpConfig,
    shutdown: Signal,
) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let limits = Limits {
        header: Duration::from_secs(cfg.header_timeout_secs),
        idle: Duration::from_secs(cfg.idle_timeout_secs),
    };
    let proxy_protocol = cfg.proxy_protocol;
    let per_address = crate::rate::OpenPerAddress::new(cfg.max_connections_per_address, cfg.limits_exempt.clone());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.wait() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => break,
        };
        match accepted {
            Ok((mut stream, peer)) => {
                let (router, shutdown, tls) = (router.clone(), shutdown.clone(), tls.clone());
                let per_address = per_address.clone();
                tokio::spawn(async move {
                    // Held until the connection ends, however it ends.
                    let _slot = slot;
                    let _ = stream.set_nodelay(true);
                    // Behind a balancer the client's address comes first, within the header timeout.
                    let addr = match proxy_protocol {
                        true => crate::proxy::client_of(&mut stream, peer, limits.header, "HTTP").await,
                        false => Some(peer),
                    };
                    let Some(addr) = addr else { return };
                    // Closed unanswered when its address holds its share of the slots.
                    let Some(_counted) = per_address.open(addr.ip()) else {
                        tracing::debug!(peer = %addr, "HTTP connection closed: too many open from its address");
                        return;
                    };
                    let peer = Peer { addr, client_cert: false, https: false };
                    match tls {
                        None => connection(stream, peer, router, limits, shutdown).await,
                        Some(acceptor) => match tokio::time::timeout(limits.header, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                // A client certificate here passed the verifier of
                                // tls.admin_client_ca (the handshake refuses any other).
                                let peer = Peer {
                                    client_cert: stream.get_ref().1.peer_certificates().is_some(),
                                    https: true,
                                    ..peer
                                };
                                connection(stream, peer, router, limits, shutdown).await
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("no TLS handshake within the header timeout"),
                        },
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    // Every connection gives its slot back when it ends.
    let _ = slots.acquire_many(cfg.max_connections as u32).await;
}

#[derive(Clone, Copy)]
struct Limits {
    header: Duration,
    idle: Duration,
}

/// Where a connection is between requests, for its watch.
#[derive(Clone, Copy)]
enum Phase {
    /// Receiving a request head since then (a new connection starts here).
    Head(Instant),
    /// Requests are being served.
    Serving(usize),
    /// Silent since the end of its last request.
    Idle(Instant),
}

impl Phase {
    /// When the connection is to be closed, if it stays as it is.
    fn deadline(self, limits: Limits) -> Option<Instant> {
        match self {
            Phase::Head(since) => Some(since + limits.header),
            Phase::Idle(since) => Some(since + limits.idle),
            Phase::Serving(_) => None,
        }
    }
}

/// A connection's phase, shared by its socket, its service and its watch; the watch is
/// told of every change, so that its deadline follows.
struct Watch {
    phase: Mutex<Phase>,
    changed: tokio::sync::Notify,
}

impl Watch {
    fn phase(&self) -> Phase {
        *self.phase.lock()
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock();
        let next = f(*phase);
        *phase = next;
        drop(phase);
        self.changed.notify_one();
    }
}

/// Who is on the other end, in every request's extensions: the client's address (MQTT over
/// WebSocket is limited by it), and whether it presented a client certificate the HTTPS
/// listener verified (the admin API may require one).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    pub client_cert: bool,
    /// The request came over HTTPS (the console's cookie is then `Secure`).
    pub https: bool,
}

async fn connection<S>(stream: S, peer: Peer, router: axum::Router, limits: Limits, shutdown: Signal)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(Watch { phase: Mutex::new(Phase::Head(Instant::now())), changed: Default::default() });
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(peer);
            let (mut router, watch) = (router.clone(), watch.clone());
            watch.update(|phase| match phase {
                Phase::Serving(n) => Phase::Serving(n + 1),
                Phase::Head(_) | Phase::Idle(_) => Phase::Serving(1),
            });
            async move {
                // The router is always ready: no poll_ready needed.
                let response = tower_service::Service::call(&mut router, req).await;
                watch.update(|phase| match phase {
                    Phase::Serving(n) if n > 1 => Phase::Serving(n - 1),
                    _ => Phase::Idle(Instant::now()),
                });
                response
            }
        })
    };
    let io = TokioIo::new(Watched { inner: stream, watch: watch.clone() });
    // With upgrades: `/mqtt` turns the connection into MQTT over WebSocket, which then
    // leaves this watch (the gateway times it).
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = watch.phase().deadline(limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            // The phase changed: its deadline is read again.
            _ = watch.changed.notified() => {}
            _ = sleep_until(deadline) => {
                // Read again: a request may have begun in the meantime.
                if watch.phase().deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("HTTP connection closed: silent or slow past its timeout");
                    return;
                }
            }
            _ = shutdown.wait(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The connection's socket, telling its watch when a request head begins to arrive.
struct Watched<S> {
    inner: S,
    watch: Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before && matches!(this.watch.phase(), Phase::Idle(_)) {
            this.watch.update(|phase| match phase {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                other => other,
            });
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_timed_by_what_it_is_doing() {
        let limits = Limits { header: Duration::from_secs(10), idle: Duration::from_secs(60) };
        let t = Instant::now();
        assert_eq!(Phase::Head(t).deadline(limits), Some(t + Duration::from_secs(10)));
        assert_eq!(Phase::Idle(t).deadline(limits), Some(t + Duration::from_secs(60)));
        assert_eq!(Phase::Serving(1).deadline(limits), None);
    }
}
