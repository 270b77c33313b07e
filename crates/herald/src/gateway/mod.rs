//! The device gateway: MQTT 3.1.1 and 5 over TCP, over TLS and over WebSocket ([`transport`],
//! [`websocket`]).
//!
//! One tokio task per connection ([`connection`]), no per-connection buffers of Herald's
//! while idle (TLS and WebSocket keep their libraries' state): bytes are read through a
//! stack buffer and kept only while a packet is partly received; the write buffer is
//! given back once written. Deliveries arrive through
//! the connection's [`crate::dispatch::Session`] queue, and whatever a connection cannot
//! take stays in the store, so a slow or dead client holds back nobody else.

mod admission;
mod connection;
mod handshake;
mod transport;
pub mod websocket;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use transport::Transport;

use herald_store::Store;

use crate::config::MqttConfig;
use crate::dispatch::{Dispatcher, Hub};
use crate::shutdown::Signal;

/// How often keepalive deadlines are checked: the precision of the 1.5× rule.
const KEEPALIVE_SWEEP: Duration = Duration::from_millis(250);
/// Keepalive sweeps between two sweeps of the per-address counts (10 s).
const ADMISSION_SWEEP_EVERY: u32 = 40;

pub struct Gateway {
    store: Arc<dyn Store>,
    /// Where deliveries come from (its hub), and whom to tell when a connection replaces
    /// one on another node.
    dispatcher: Arc<Dispatcher>,
    cfg: MqttConfig,
    /// Open connection tasks, so that shutdown can wait for them.
    open: AtomicUsize,
    /// Connections per source address.
    admission: admission::Admission,
    /// The runtime the connection tasks run on (WebSockets arrive on the HTTP threads).
    runtime: tokio::runtime::Handle,
    /// Refused connections being answered (see [`Gateway::refuse`]).
    refusals: Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    pub fn new(store: Arc<dyn Store>, dispatcher: Arc<Dispatcher>, cfg: MqttConfig) -> Arc<Self> {
        let admission = admission::Admission::new(&cfg);
        let runtime = tokio::runtime::Handle::current();
        let refusals = Arc::new(tokio::sync::Semaphore::new(handshake::ANSWERED_REFUSALS));
        Arc::new(Gateway { store, dispatcher, cfg, open: AtomicUsize::new(0), admission, runtime, refusals })
    }

    fn hub(&self) -> &Hub {
        self.dispatcher.hub()
    }

    /// Accepts connections on every listener (with its TLS acceptor, if it is a TLS one)
    /// until `shutdown`, then closes every connection and waits up to `drain` for their
    /// tasks to finish.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<(TcpListener, Option<TlsAcceptor>)>,
        shutdown: Signal,
        drain: Duration,
    ) {
        let keepalive_sweeps = tokio::spawn(self.clone().sweep_keepalives(shutdown.clone()));
        let accepting: Vec<_> = listeners
            .into_iter()
            .map(|(listener, tls)| tokio::spawn(self.clone().accept(listener, tls, shutdown.clone())))
            .collect();
        for task in accepting {
            let _ = task.await;
        }
        let _ = keepalive_sweeps.await;
        self.hub().close_all();
        let deadline = tokio::time::Instant::now() + drain;
        while self.open.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Accepts connections on one listener until `shutdown`.
    async fn accept(self: Arc<Self>, listener: TcpListener, tls: Option<TlsAcceptor>, shutdown: Signal) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) if self.cfg.proxy_protocol => {
                        // The client's address is in the header: the limits wait for it.
                        tokio::spawn(self.clone().behind_proxy(stream, peer, tls.clone()));
                    }
                    Ok((stream, peer)) => {
                        // Boxed, and made here: neither the TLS handshake's state nor the
                        // socket and acceptor it takes enlarge the connection's task for its
                        // whole life.
                        self.start(Some(peer.ip()), Box::pin(self.clone().transport(stream, tls.clone())));
                    }
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "MQTT accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.wait() => break,
            }
        }
    }

    /// Runs a connection from `ip` (unknown: not limited) over what `setup` yields, if the
    /// per-address limits admit it; refused, it is told when to come back while fewer than
    /// [`handshake::ANSWERED_REFUSALS`] refusals are being answered, and closed unread
    /// otherwise.
    fn start(self: &Arc<Self>, ip: Option<IpAddr>, setup: Pin<Box<dyn Future<Output = Option<Transport>> + Send>>) {
        let ip = ip.map(|ip| ip.to_canonical());
        let counted = match ip.map(|ip| self.admission.admit(ip, std::time::Instant::now())) {
            None => false,
            Some(Ok(counted)) => counted,
            Some(Err(why)) => {
                tracing::debug!(ip = ?ip, ?why, "connection refused by the per-address limits");
                if let Ok(permit) = self.refusals.clone().try_acquire_owned() {
                    let gw = self.clone();
                    self.runtime.spawn(async move {
                        if let Some(stream) = setup.await {
                            gw.refuse(stream, why).await;
                        }
                        drop(permit);
                    });
                }
                return;
            }
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        let gw = self.clone();
        self.runtime.spawn(async move {
            if let Some(stream) = setup.await {
                gw.clone().connection(stream).await;
            }
            if let Some(ip) = ip.filter(|_| counted) {
                gw.admission.release(ip);
            }
            gw.open.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Reads the PROXY header of a connection from a load balancer (within the CONNECT
    /// timeout), then runs it as the client's whose address the header gives.
    async fn behind_proxy(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: std::net::SocketAddr,
        tls: Option<TlsAcceptor>,
    ) {
        let within = Duration::from_secs(self.cfg.connect_timeout_secs);
        if let Some(client) = crate::proxy::client_of(&mut stream, peer, within, "MQTT").await {
            self.start(Some(client.ip()), Box::pin(self.clone().transport(stream, tls)));
        }
    }

    /// The accepted socket as the connection runs over it: TLS after a handshake that has
    /// the CONNECT timeout to complete (`None`: it failed or took too long).
    async fn transport(self: Arc<Self>, stream: TcpStream, tls: Option<TlsAcceptor>) -> Option<Transport> {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return Some(Transport::Tcp(stream));
        };
        let limit = Duration::from_secs(self.cfg.connect_timeout_secs);
        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(Transport::Tls(Box::new(tls))),
            Ok(Err(e)) => {
                // rustls describes the failure in its own words, never with client bytes.
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!("no TLS handshake within the CONNECT timeout");
                None
            }
        }
    }

    /// Closes connections silent for longer than 1.5 times their keepalive.
    async fn sweep_keepalives(self: Arc<Self>, shutdown: Signal) {
        let mut ticks = crate::shutdown::ticks(KEEPALIVE_SWEEP);
        let mut sweeps = 0u32;
        while shutdown.every(&mut ticks).await {
            sweeps = sweeps.wrapping_add(1);
            if sweeps.is_multiple_of(ADMISSION_SWEEP_EVERY) {
                self.admission.sweep(std::time::Instant::now());
            }
            let closed = self.hub().close_idle(herald_core::now_ms());
            if closed > 0 {
                tracing::debug!(closed, "closed connections whose keepalive expired");
            }
        }
    }
}
