//! Wiring of one Herald node: store, dispatcher, gateway and HTTP API, started on
//! listeners that are already bound (tests bind port 0) and stopped by a signal.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState, Inner, signing::Verifier};
use crate::bus::{Bus, Event};
use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::dispatch::{self, Dispatcher, Hub};
use crate::gateway::Gateway;
use crate::shutdown::Signal;
use crate::store::Store;

pub struct Listeners {
    pub http: TcpListener,
    pub mqtt: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let http =
            TcpListener::bind(cfg.http_addr).await.with_context(|| format!("binding HTTP on {}", cfg.http_addr))?;
        let mqtt =
            TcpListener::bind(cfg.mqtt_addr).await.with_context(|| format!("binding MQTT on {}", cfg.mqtt_addr))?;
        Ok(Listeners { http, mqtt })
    }
}

/// How long shutdown waits for connections to close and requests to finish.
const DRAIN: Duration = Duration::from_secs(5);
const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// Runs a node until `shutdown` fires, then stops accepting, closes connections and
/// waits until every accepted write is committed.
pub async fn run(cfg: Config, listeners: Listeners, shutdown: Signal) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let master = Arc::new(master_key(&cfg)?);
    let store: Arc<dyn Store> = crate::store::open(&cfg).await.context("opening the store")?;
    let admin_token_hash = admin_token_hash(&cfg, store.as_ref()).await?;
    let hub = Arc::new(Hub::new(cfg.mqtt.max_queued));
    let verifier = Arc::new(Verifier::new(
        store.clone(),
        master.clone(),
        cfg.limits.signature_window_secs,
        Duration::from_secs(cfg.limits.key_cache_secs),
    ));
    // No connection is here yet: presence left by an earlier run of this node is stale.
    let stale = store.node_started(&cfg.node_id).await.context("clearing this node's old presence")?;
    if stale > 0 {
        tracing::info!(devices = stale, "cleared presence left by an earlier run of this node");
    }
    // Set once the dispatcher exists (it needs the bus): broadcasts are fanned out by it.
    let dispatcher_cell: Arc<std::sync::OnceLock<Arc<Dispatcher>>> = Arc::default();
    let bus = Arc::new(match cfg.bus_url.as_deref().filter(|u| !u.is_empty()) {
        None => Bus::local(&cfg.node_id),
        Some(url) => {
            let (h, v, d) = (hub.clone(), verifier.clone(), dispatcher_cell.clone());
            let handler = Arc::new(move |event: Event| match event {
                Event::KeyRevoked { key_id } => v.forget(&key_id),
                Event::Broadcast { message_id, expires_at, payload } => {
                    if let Some(d) = d.get() {
                        tokio::spawn(d.clone().fan_out(Event::message(message_id, expires_at, payload)));
                    }
                }
                other => dispatch::on_bus_event(&h, other),
            });
            let h = hub.clone();
            Bus::connect(url, &cfg.cluster.subject_prefix, &cfg.node_id, handler, Arc::new(move || h.refill_all()))
                .await?
        }
    });
    let dispatcher =
        Arc::new(Dispatcher::new(store.clone(), hub.clone(), bus.clone(), cfg.node_id.clone(), cfg.limits.clone()));
    let _ = dispatcher_cell.set(dispatcher.clone());
    let cfg = Arc::new(cfg);
    let state = AppState(Arc::new(Inner {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        cfg: cfg.clone(),
        master,
        verifier,
        admin_token_hash,
    }));

    let http_addr = listeners.http.local_addr()?;
    let mqtt_addr = listeners.mqtt.local_addr()?;
    let gateway = Gateway::new(store.clone(), hub.clone(), bus.clone(), cfg.mqtt.clone());
    let gateway_task = tokio::spawn(gateway.serve(listeners.mqtt, shutdown.clone(), DRAIN));
    let sweeps = tokio::spawn(
        dispatcher.clone().run_expiry_sweeps(Duration::from_secs(cfg.store.expiry_sweep_secs), shutdown.clone()),
    );
    let scheduler = tokio::spawn(
        dispatcher.clone().run_scheduler(Duration::from_millis(cfg.store.schedule_tick_ms), shutdown.clone()),
    );
    let resync =
        tokio::spawn(dispatcher.clone().run_resync(Duration::from_secs(cfg.cluster.resync_secs), shutdown.clone()));
    let http_task = serve_api(listeners.http, api::router(state), shutdown.clone())?;
    tracing::info!(%http_addr, %mqtt_addr, node = %cfg.node_id, bus = bus.kind(), "herald serving");
    // Tests and scripts wait for this line on standard output.
    println!("herald ready http={http_addr} mqtt={mqtt_addr}");

    shutdown.wait().await;
    tracing::info!("shutting down: no new connections or requests");
    match tokio::time::timeout(DRAIN, http_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP API ended with an error"),
        Ok(Err(_)) => tracing::warn!("the HTTP API thread ended without an answer"),
        Ok(Ok(Ok(()))) | Err(_) => {}
    }
    let _ = gateway_task.await;
    let _ = sweeps.await;
    let _ = resync.await;
    let _ = scheduler.await;
    store.flush().await.context("flushing the store")?;
    tracing::info!("stopped; every accepted write is committed");
    Ok(())
}

/// Serves the HTTP API on threads of its own (a runtime beside the one of the device
/// connections) until `shutdown`. A broadcast wakes every connection of the node at once;
/// on shared worker threads an API request would wait behind all of them, here it waits
/// only for the operating system to give its thread a turn. Resolves when the server has
/// stopped.
fn serve_api(
    listener: TcpListener,
    router: axum::Router,
    shutdown: Signal,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<()>>> {
    let listener = listener.into_std()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("herald-api".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_multi_thread()
                .thread_name("herald-api")
                .enable_all()
                .build()
                .context("starting the API runtime")
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        axum::serve(listener, router)
                            .with_graceful_shutdown(async move { shutdown.wait().await })
                            .await?;
                        Ok(())
                    })
                });
            let _ = done_tx.send(served);
        })
        .context("starting the API thread")?;
    Ok(done_rx)
}

/// The master key from the configuration, or the one kept in the data dir (created on
/// first start, readable by the owner only).
fn master_key(cfg: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &cfg.master_key {
        return MasterKey::from_base64(text).context("master_key must be base64 of 32 bytes");
    }
    let path = cfg.data_dir.join("master.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} must hold base64 of 32 bytes", path.display()));
    }
    let raw = crypto::random_bytes::<32>();
    write_private(&path, &crypto::b64url(&raw))?;
    tracing::info!(path = %path.display(), "generated a master key; back it up with the database");
    Ok(MasterKey::from_bytes(&raw))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The hash of the admin token: from the configuration, or generated once, printed once,
/// and kept (hashed) in the store.
async fn admin_token_hash(cfg: &Config, store: &dyn Store) -> anyhow::Result<String> {
    if let Some(token) = &cfg.admin_token {
        return Ok(crypto::sha256_hex(token.as_bytes()));
    }
    if let Some(hash) = store.setting(ADMIN_TOKEN_SETTING).await? {
        return Ok(hash);
    }
    let token = crypto::random_secret();
    let hash = crypto::sha256_hex(token.as_bytes());
    let kept = store.init_setting(ADMIN_TOKEN_SETTING, &hash).await?;
    if kept == hash {
        println!("herald admin token (shown once, keep it): {token}");
    }
    Ok(kept)
}
