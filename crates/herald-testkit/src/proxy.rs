//! [`TcpProxy`]: a TCP forwarder at a fixed address that a test can cut (a partition between
//! one node and a service, its NATS or its PostgreSQL, while the others keep theirs) or point
//! elsewhere (a load balancer in front of a node that restarted on new ports).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    addr: String,
    cut: Arc<AtomicBool>,
    /// Where new connections go.
    target: Arc<Mutex<String>>,
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
        let target = Arc::new(Mutex::new(target.to_string()));
        let (is_cut, generations, current) = (cut.clone(), generation.clone(), target.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    // Refused as a dead host's would be: closed at once.
                    continue;
                }
                let mut ended = generations.subscribe();
                let target = current.lock().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        TcpProxy { addr, cut, target, generation, task }
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

    /// Forwards new connections to `target` from now on (live ones stay where they are).
    pub fn retarget(&self, target: &str) {
        *self.target.lock() = target.to_string();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}
