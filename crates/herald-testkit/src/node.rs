//! [`TestServer`]: a Herald node in the test process. It runs `herald::node::run` on
//! listeners bound to port 0, on a runtime of its own thread (a test blocking its own
//! thread does not stall the node), with a store of its own (a SQLite file in a temporary
//! directory, or a fresh PostgreSQL schema) and a log of its own. Dropping it stops the node
//! as SIGTERM would, and removes its data.

use std::sync::mpsc;
use std::time::Duration;

use herald::config::Config;
use herald::node::Listeners;
use herald::shutdown::{self, Trigger};
use herald_store::scratch::ScratchSchema;

use crate::client::Endpoint;
use crate::logs::Log;
use crate::{ADMIN_TOKEN, Backend, WAIT};

pub struct TestServer {
    endpoint: Endpoint,
    stop: Trigger,
    stopped: mpsc::Receiver<Result<(), String>>,
    /// The node's data directory (its SQLite file and master key).
    pub dir: tempfile::TempDir,
    /// Dropped after the node: its connections are closed by then.
    schema: Option<ScratchSchema>,
}

impl std::ops::Deref for TestServer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl TestServer {
    /// A node on `backend`; `None` (the test is skipped, and says why) when PostgreSQL is
    /// asked for and `HERALD_TEST_POSTGRES_URL` is unset.
    pub async fn start(backend: Backend) -> Option<TestServer> {
        Self::start_with(backend, |_| {}).await
    }

    /// A node on `backend` whose configuration `configure` adjusts.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestServer> {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(ScratchSchema::for_test().await?),
        };
        let store_url = schema.as_ref().map(ScratchSchema::store_url);
        let mut node = Self::run(|cfg| {
            cfg.store_url = store_url;
            configure(cfg);
        })
        .await
        .unwrap_or_else(|e| panic!("the node did not start: {e}"));
        node.schema = schema;
        Some(node)
    }

    /// Starts a node configured by `configure` (data in a fresh temporary directory, the
    /// kit's admin token); `Err` with the reason when it stops before it serves.
    pub async fn run(configure: impl FnOnce(&mut Config)) -> Result<TestServer, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg =
            Config { data_dir: dir.path().to_path_buf(), admin_token: Some(ADMIN_TOKEN.into()), ..Config::default() };
        // Many nodes run at once, each with a pool of its own: PostgreSQL's connections
        // (100 by default) must go round.
        cfg.store.postgres_connections = 2;
        configure(&mut cfg);
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
            l.set_nonblocking(true).expect("nonblocking listener");
            l
        };
        let (http, mqtt) = (bind(), bind());
        let log = Log::default();
        let endpoint = Endpoint {
            http: http.local_addr().unwrap().to_string(),
            mqtt: mqtt.local_addr().unwrap().to_string(),
            log: log.clone(),
        };
        let (stop, signal) = shutdown::channel();
        let (stopped_tx, stopped) = mpsc::channel();
        let dispatch = log.dispatch();
        std::thread::Builder::new()
            .name("test-node".into())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("test-node")
                    .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dispatch)))
                    .enable_all()
                    .build()
                    .expect("node runtime");
                let ran = runtime.block_on(async move {
                    let listeners = Listeners {
                        http: Some(tokio::net::TcpListener::from_std(http)?),
                        mqtt: Some(tokio::net::TcpListener::from_std(mqtt)?),
                        ..Listeners::default()
                    };
                    herald::node::run(cfg, listeners, signal).await
                });
                // Tasks the node left (connections of the store's pool) end with the runtime.
                drop(runtime);
                let _ = stopped_tx.send(ran.map_err(|e| format!("{e:#}")));
            })
            .expect("node thread");
        let node = TestServer { endpoint, stop, stopped, dir, schema: None };
        node.ready().await?;
        Ok(node)
    }

    /// Waits until the node answers `/healthz` (or has stopped: its error).
    async fn ready(&self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(ended) = self.stopped.try_recv() {
                return Err(ended.err().unwrap_or_else(|| "stopped before serving".into()));
            }
            let probe = herald::http_client::request(&self.http, "GET", "/healthz", &[], Default::default());
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(500), probe).await
                && r.status == 200
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("no answer to /healthz; log:\n{}", self.log.tail(40).join("\n")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the node as SIGTERM would and waits until it has: every accepted write is
    /// committed when this returns.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.log.print_if_panicking("herald (in-process node)");
        self.stop.fire();
        match self.stopped.recv_timeout(Duration::from_secs(15)) {
            Ok(Err(e)) => eprintln!("the node stopped with an error: {e}"),
            Err(_) => eprintln!("the node did not stop within 15 s"),
            Ok(Ok(())) => {}
        }
        self.schema.take();
    }
}
