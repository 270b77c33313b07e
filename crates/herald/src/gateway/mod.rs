//! The device gateway: MQTT 3.1.1 over TCP and over TLS ([`transport`]).
//!
//! One tokio task per connection ([`connection`]), no per-connection buffers while idle:
//! bytes are read into a buffer taken only when the socket is readable and given back as
//! soon as no partial packet is left; the write buffer likewise. Deliveries arrive through
//! the connection's [`crate::dispatch::Session`] queue, and whatever a connection cannot
//! take stays in the store, so a slow or dead client holds back nobody else.

mod admission;
mod connection;
mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

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
}

impl Gateway {
    pub fn new(store: Arc<dyn Store>, dispatcher: Arc<Dispatcher>, cfg: MqttConfig) -> Arc<Self> {
        let admission = admission::Admission::new(&cfg);
        Arc::new(Gateway { store, dispatcher, cfg, open: AtomicUsize::new(0), admission })
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
                    Ok((stream, peer)) => {
                        let ip = peer.ip().to_canonical();
                        let counted = match self.admission.admit(ip, std::time::Instant::now()) {
                            Ok(counted) => counted,
                            Err(why) => {
                                tracing::debug!(%ip, ?why, "connection refused by the per-address limits");
                                continue;
                            }
                        };
                        self.open.fetch_add(1, Ordering::Relaxed);
                        let gw = self.clone();
                        // Boxed, and made here: neither the TLS handshake's state nor the
                        // socket and acceptor it takes enlarge the connection's task for its
                        // whole life.
                        let transport = Box::pin(gw.clone().transport(stream, tls.clone()));
                        tokio::spawn(async move {
                            if let Some(stream) = transport.await {
                                gw.clone().connection(stream).await;
                            }
                            if counted {
                                gw.admission.release(ip);
                            }
                            gw.open.fetch_sub(1, Ordering::Relaxed);
                        });
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

    /// The accepted socket as the connection runs over it: TLS after a handshake that has
    /// the CONNECT timeout to complete (`None`: it failed or took too long).
    async fn transport(self: Arc<Self>, stream: TcpStream, tls: Option<TlsAcceptor>) -> Option<transport::Transport> {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls else {
            return Some(transport::Transport::Tcp(stream));
        };
        let limit = Duration::from_secs(self.cfg.connect_timeout_secs);
        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Some(transport::Transport::Tls(Box::new(tls))),
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
