//! [`TcpProxy`]: a TCP forwarder a test can cut, to make a partition between one node and a
//! service (its NATS, its PostgreSQL) while the others keep theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    addr: String,
    cut: Arc<AtomicBool>,
    /// Bumped at each cut: the live connections end.
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to `target`
    /// (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("its address").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (is_cut, generations, target) = (cut.clone(), generation.clone(), target.to_string());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    // Refused as a dead host's would be: closed at once.
                    continue;
                }
                let mut ended = generations.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        TcpProxy { addr, cut, generation, task }
    }

    /// `host:port` to connect to instead of the target.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Closes every connection through it and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}
