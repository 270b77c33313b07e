//! [`Cluster`]: nodes sharing one PostgreSQL schema, one NATS (a subject prefix of their
//! own) and one master key: in the test process, or as processes when a test kills them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use herald::config::Config;
use herald_store::scratch::ScratchSchema;
use serde_json::Value;

use crate::client::Endpoint;
use crate::node::TestServer;
use crate::process::TestProcess;

/// Where the cluster tests find a NATS.
pub const NATS_URL: &str = "HERALD_TEST_NATS_URL";

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Every node gets a subject prefix of its own, so that no bus message reaches another
    /// node (each one is lost), and looks for unannounced work every second.
    pub deaf: bool,
    /// The cluster's NATS instead of `HERALD_TEST_NATS_URL`'s.
    pub nats: Option<String>,
    /// Runs the nodes as processes of this `herald` binary (to kill them).
    pub processes: Option<PathBuf>,
    /// The cluster's PostgreSQL (a scratch schema in it) instead of
    /// `HERALD_TEST_POSTGRES_URL`'s.
    pub postgres: Option<String>,
    /// `cluster.resync_secs` of the nodes (default: 1 for deaf nodes, else 3600, so that
    /// what arrives in a test came by the bus).
    pub resync_secs: Option<u64>,
}

/// One node of a cluster.
pub enum ClusterNode {
    InProcess(TestServer),
    Process(TestProcess),
}

impl std::ops::Deref for ClusterNode {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        match self {
            ClusterNode::InProcess(n) => n,
            ClusterNode::Process(n) => n,
        }
    }
}

impl ClusterNode {
    /// SIGKILL (a cluster of processes only).
    pub fn kill9(&mut self) {
        match self {
            ClusterNode::Process(p) => p.kill9(),
            ClusterNode::InProcess(_) => panic!("kill -9 needs a cluster of processes (ClusterOptions::processes)"),
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    nats: String,
    master_key: String,
    prefix: String,
    deaf: bool,
    resync_secs: Option<u64>,
    dirs: Vec<tempfile::TempDir>,
    // Dropped after the nodes (fields drop in order).
    schema: ScratchSchema,
}

impl Cluster {
    /// `n` nodes in the test process; `None` when PostgreSQL or NATS is not configured here.
    pub async fn start(n: usize) -> Option<Cluster> {
        Self::start_with(n, ClusterOptions::default()).await
    }

    pub async fn start_with(n: usize, opts: ClusterOptions) -> Option<Cluster> {
        let nats = match opts.nats {
            Some(url) => url,
            None => {
                let Ok(url) = std::env::var(NATS_URL) else {
                    eprintln!("skipped: {NATS_URL} is not set, so the cluster is not tested here");
                    return None;
                };
                tokio::time::timeout(Duration::from_secs(5), async_nats::connect(&url))
                    .await
                    .unwrap_or_else(|_| panic!("{NATS_URL} is set but NATS at {url} does not answer in time"))
                    .unwrap_or_else(|e| panic!("{NATS_URL} is set but NATS at {url} does not answer: {e}"));
                url
            }
        };
        let schema = match &opts.postgres {
            Some(url) => ScratchSchema::create(url, "herald_test")
                .await
                .unwrap_or_else(|e| panic!("the cluster's PostgreSQL at {url} does not answer: {e}")),
            None => ScratchSchema::for_test().await?,
        };
        let mut cluster = Cluster {
            nodes: Vec::new(),
            nats,
            master_key: herald_core::crypto::b64url(&herald_core::crypto::random_bytes::<32>()),
            prefix: format!("t{}", herald_core::crypto::random_alnum(10)),
            deaf: opts.deaf,
            resync_secs: opts.resync_secs,
            dirs: Vec::new(),
            schema,
        };
        for i in 1..=n {
            let node = match &opts.processes {
                Some(bin) => ClusterNode::Process(cluster.process(bin, i).await),
                None => ClusterNode::InProcess(
                    cluster.try_node(i, |_| {}).await.unwrap_or_else(|e| panic!("node-{i} did not start: {e}")),
                ),
            };
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    /// Kills node `i` (from 1) with SIGKILL and starts it again on the same data (new
    /// ports): a cluster of processes only.
    pub async fn kill9_and_restart(&mut self, i: usize) {
        let ClusterNode::Process(mut node) = self.nodes.remove(i - 1) else {
            panic!("kill -9 needs a cluster of processes (ClusterOptions::processes)")
        };
        node.kill9();
        let node = node.restart().await;
        self.nodes.insert(i - 1, ClusterNode::Process(node));
    }

    /// Node `i` (from 1).
    pub fn node(&self, i: usize) -> &Endpoint {
        &self.nodes[i - 1]
    }

    pub async fn node_info(&self, i: usize) -> Value {
        self.node(i).node_info().await
    }

    /// The configuration of node `i` of this cluster.
    fn config(&self, i: usize, cfg: &mut Config) {
        cfg.store_url = Some(self.schema.store_url());
        cfg.bus_url = Some(self.nats.clone());
        cfg.node_id = format!("node-{i}");
        cfg.master_key = Some(self.master_key.clone());
        cfg.store.expiry_sweep_secs = 1;
        cfg.cluster.subject_prefix = if self.deaf { format!("{}n{i}", self.prefix) } else { self.prefix.clone() };
        // Without deaf nodes the resync never runs in a test: what arrives came by the bus.
        cfg.cluster.resync_secs = self.resync_secs.unwrap_or(if self.deaf { 1 } else { 3600 });
    }

    /// Starts node `i` of this cluster in the test process, its configuration adjusted by
    /// `configure`; `Err` with the reason when it stops before it serves.
    pub async fn try_node(&self, i: usize, configure: impl FnOnce(&mut Config)) -> Result<TestServer, String> {
        TestServer::run(|cfg| {
            self.config(i, cfg);
            configure(cfg);
        })
        .await
    }

    async fn process(&mut self, bin: &Path, i: usize) -> TestProcess {
        let mut cfg = Config::default();
        self.config(i, &mut cfg);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("cluster.toml");
        std::fs::write(
            &file,
            format!(
                "store_url = \"{}\"\nbus_url = \"{}\"\nnode_id = \"{}\"\nmaster_key = \"{}\"\n\
                 [store]\nexpiry_sweep_secs = {}\npostgres_connections = 2\n[cluster]\nsubject_prefix = \"{}\"\nresync_secs = {}\n",
                cfg.store_url.unwrap_or_default(),
                cfg.bus_url.unwrap_or_default(),
                cfg.node_id,
                cfg.master_key.unwrap_or_default(),
                cfg.store.expiry_sweep_secs,
                cfg.cluster.subject_prefix,
                cfg.cluster.resync_secs
            ),
        )
        .expect("write cluster.toml");
        let node = TestProcess::start_in(bin, dir.path(), &["--config", file.to_str().unwrap()]).await;
        self.dirs.push(dir);
        node
    }
}
