//! Wiring of one Herald node: store, dispatcher, gateway and HTTP API, started on
//! listeners that are already bound (tests bind port 0) and stopped by a signal. Nothing
//! here is process-wide: several nodes can run in one process (the tests run many).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use herald_core::crypto::{self, MasterKey};
use herald_store::Store;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, AppState, Inner, signing::Verifier};
use crate::bus::Bus;
use crate::config::Config;
use crate::dispatch::{Dispatcher, Hub};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::shutdown::Signal;

/// The node's listening sockets: the plain ones unless `tls.plain` is off, the TLS ones
/// when a certificate is configured.
#[derive(Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub mqtt: Option<TcpListener>,
    pub https: Option<TcpListener>,
    pub mqtts: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        async fn bind(what: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
            TcpListener::bind(addr).await.with_context(|| format!("binding {what} on {addr}"))
        }
        let tls = cfg.tls.files().is_some();
        let mut listeners = Listeners::default();
        if cfg.tls.plain || !tls {
            listeners.http = Some(bind("HTTP", cfg.http_addr).await?);
            listeners.mqtt = Some(bind("MQTT", cfg.mqtt_addr).await?);
        }
        if tls {
            listeners.https = Some(bind("HTTPS", cfg.tls.https_addr).await?);
            listeners.mqtts = Some(bind("MQTT over TLS", cfg.tls.mqtts_addr).await?);
        }
        Ok(listeners)
    }

    /// `http=ADDR mqtt=ADDR https=ADDR mqtts=ADDR`, for the listeners there are.
    fn describe(&self) -> anyhow::Result<String> {
        let mut words = Vec::new();
        for (name, l) in [("http", &self.http), ("mqtt", &self.mqtt), ("https", &self.https), ("mqtts", &self.mqtts)] {
            if let Some(l) = l {
                words.push(format!("{name}={}", l.local_addr()?));
            }
        }
        Ok(words.join(" "))
    }
}

/// How long shutdown waits for connections to close and requests to finish.
const DRAIN: Duration = Duration::from_secs(5);
const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";
/// A value sealed with the master key when a store is first used: a node whose key cannot
/// open it has another key than the one the store's secrets were sealed with.
const MASTER_KEY_CHECK_SETTING: &str = "master_key_check";
const MASTER_KEY_CHECK: &[u8] = b"herald master key check";

/// Runs a node until `shutdown` fires, then stops accepting, closes connections and
/// waits until every accepted write is committed.
pub async fn run(cfg: Config, listeners: Listeners, shutdown: Signal) -> anyhow::Result<()> {
    private_dir(&cfg.data_dir)?;
    let master = Arc::new(master_key(&cfg)?);
    let store = herald_store::open(cfg.store_url.as_deref(), &cfg.sqlite_path(), &cfg.store)
        .await
        .context("opening the store")?;
    check_master_key(store.as_ref(), &master).await?;
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
    let (bus, incoming) = match cfg.bus_url.as_deref().filter(|u| !u.is_empty()) {
        None => (Bus::local(&cfg.node_id), None),
        Some(url) => {
            let (bus, incoming) = Bus::connect(url, &cfg.cluster.subject_prefix, &cfg.node_id).await?;
            (bus, Some(incoming))
        }
    };
    let bus = Arc::new(bus);
    let dispatcher = Arc::new(Dispatcher::new(
        store.clone(),
        hub.clone(),
        bus.clone(),
        Arc::new(Metrics::default()),
        cfg.node_id.clone(),
        cfg.limits.clone(),
    ));
    let senders = herald_channels::Senders::new(cfg.channels.clone()).context("starting the vendor senders")?;
    let vendor_worker = crate::dispatch::vendors::VendorWorker::new(
        store.clone(),
        senders,
        master.clone(),
        dispatcher.metrics().clone(),
        cfg.channels.receipt_base_url.clone(),
    );
    dispatcher.set_vendor_worker(vendor_worker.clone());
    if let Some(incoming) = incoming {
        let v = verifier.clone();
        tokio::spawn(dispatcher.clone().serve_bus(incoming, move |key| v.forget(key)));
    }
    let cfg = Arc::new(cfg);
    let state = AppState(Arc::new(Inner {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        cfg: cfg.clone(),
        master,
        verifier,
        admin_token_hash,
    }));

    let addresses = listeners.describe()?;
    let (mqtt_tls, https_tls) = match cfg.tls.files() {
        Some((cert, key)) => {
            let certs = crate::tls::Certificates::load(cert, key).context("loading the TLS certificate")?;
            // The handler is in place before the node says it is ready.
            let hangups = crate::tls::hangups();
            tokio::spawn(certs.clone().watch(hangups, Duration::from_secs(cfg.tls.reload_secs), shutdown.clone()));
            let admin_roots = match &cfg.tls.admin_client_ca {
                Some(file) => Some(crate::tls::client_roots(file).context("loading tls.admin_client_ca")?),
                None => None,
            };
            (
                Some(TlsAcceptor::from(certs.server_config(&[], None)?)),
                Some(TlsAcceptor::from(certs.server_config(&[b"http/1.1"], admin_roots)?)),
            )
        }
        None => {
            // SIGHUP (a service manager's "reload") must not end a node that has nothing to
            // reload: its default action would.
            if let Some(hangups) = crate::tls::hangups() {
                tokio::spawn(crate::tls::ignore_hangups(hangups, shutdown.clone()));
            }
            (None, None)
        }
    };
    let gateway = Gateway::new(store.clone(), dispatcher.clone(), cfg.mqtt.clone());
    let mqtt_listeners = [(listeners.mqtt, None), (listeners.mqtts, mqtt_tls)];
    let gateway_task = tokio::spawn(gateway.clone().serve(
        mqtt_listeners.into_iter().filter_map(|(l, tls)| Some((l?, tls))).collect(),
        shutdown.clone(),
        DRAIN,
    ));
    let sweeps = tokio::spawn(
        dispatcher.clone().run_expiry_sweeps(Duration::from_secs(cfg.store.expiry_sweep_secs), shutdown.clone()),
    );
    let scheduler = tokio::spawn(
        dispatcher.clone().run_scheduler(Duration::from_millis(cfg.store.schedule_tick_ms), shutdown.clone()),
    );
    let resync = tokio::spawn(dispatcher.clone().run_resync(
        Duration::from_secs(cfg.cluster.resync_secs),
        Duration::from_millis(cfg.cluster.degraded_resync_ms),
        shutdown.clone(),
    ));
    let vendor_tasks = vendor_worker.spawn(shutdown.clone());
    store.set_journal(cfg.analytics.enabled);
    let webhook_client = herald_channels::HttpsClient::general(
        cfg.channels.ca_file.as_deref(),
        Duration::from_secs(cfg.receipts.timeout_secs),
    )
    .context("starting the receipt sender")?;
    let ledger_tasks = crate::ledger::spawn(
        store.clone(),
        state.master.clone(),
        dispatcher.metrics().clone(),
        &cfg,
        webhook_client,
        shutdown.clone(),
    );
    let http_listeners = [(listeners.http, None), (listeners.https, https_tls)];
    let http_listeners = http_listeners.into_iter().filter_map(|(l, tls)| Some((l?, tls))).collect();
    let api_router = api::router(state.clone());
    let router = api_router
        .clone()
        .merge(crate::console::router(state, api_router))
        .merge(crate::gateway::websocket::router(gateway.clone()));
    let http_task = serve_api(http_listeners, router, cfg.http.clone(), shutdown.clone())?;
    tracing::info!(listeners = %addresses, node = %cfg.node_id, bus = bus.kind(), "herald serving");
    // Tests and scripts wait for this line on standard output.
    println!("herald ready {addresses}");

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
    for t in vendor_tasks.into_iter().chain(ledger_tasks) {
        let _ = t.await;
    }
    store.flush().await.context("flushing the store")?;
    tracing::info!("stopped; every accepted write is committed");
    Ok(())
}

/// Serves the HTTP API on threads of its own (a runtime beside the one of the device
/// connections) until `shutdown`. A broadcast wakes every connection of the node at once;
/// on shared worker threads an API request would wait behind all of them, here it waits
/// only for the operating system to give its thread a turn. Resolves when the server has
/// stopped. The threads log where the node logs.
fn serve_api(
    listeners: Vec<(TcpListener, Option<TlsAcceptor>)>,
    router: axum::Router,
    cfg: crate::config::HttpConfig,
    shutdown: Signal,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<()>>> {
    let listeners: Vec<_> =
        listeners.into_iter().map(|(l, tls)| Ok((l.into_std()?, tls))).collect::<anyhow::Result<_>>()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let log = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::Builder::new()
        .name("herald-api".into())
        .spawn(move || {
            let _log = tracing::dispatcher::set_default(&log);
            let served = tokio::runtime::Builder::new_multi_thread()
                .thread_name("herald-api")
                .on_thread_start(move || {
                    // Held for the thread's life: its default is the node's log.
                    std::mem::forget(tracing::dispatcher::set_default(&log));
                })
                .enable_all()
                .build()
                .context("starting the API runtime")
                .and_then(|rt| {
                    rt.block_on(async move {
                        let mut serving = Vec::new();
                        for (listener, tls) in listeners {
                            let listener = TcpListener::from_std(listener)?;
                            let (router, cfg, shutdown) = (router.clone(), cfg.clone(), shutdown.clone());
                            serving.push(tokio::spawn(crate::http::serve(listener, tls, router, cfg, shutdown)));
                        }
                        for s in serving {
                            let _ = s.await;
                        }
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

/// Refuses to start with a master key other than the one the store's secrets are sealed
/// with: every signed request would fail later, each with a SYSTEM_ERROR. The first node to
/// use a store leaves a value sealed with its key; a store from before that check is held
/// to the key that opens its secrets.
async fn check_master_key(store: &dyn Store, master: &MasterKey) -> anyhow::Result<()> {
    let opens = |sealed: &str| master.open(sealed).as_deref() == Some(MASTER_KEY_CHECK);
    let refuse = || {
        anyhow::anyhow!(
            "the master key differs from the one this store was set up with: every node of a cluster, \
             and every restart, must use the same master_key (HERALD_MASTER_KEY, the config file, or \
             <data_dir>/master.key)"
        )
    };
    if let Some(sealed) = store.setting(MASTER_KEY_CHECK_SETTING).await? {
        return if opens(&sealed) { Ok(()) } else { Err(refuse()) };
    }
    if let Some(app) = store.apps().await?.first()
        && master.open(&app.bind_secret_sealed).is_none()
    {
        bail!(refuse());
    }
    // Two nodes starting at once: the check of whichever wrote first is the one in force.
    let kept = store.init_setting(MASTER_KEY_CHECK_SETTING, &master.seal(MASTER_KEY_CHECK)).await?;
    if opens(&kept) { Ok(()) } else { Err(refuse()) }
}

/// Creates the data directory if needed and makes it its owner's alone (0700): the store's
/// files, the master key and the tokens' hashes are in it. An existing directory is changed
/// only when it is Herald's (empty, or holding its database or master key): pointed at a
/// shared one by mistake (`/tmp`, a home), Herald warns and leaves it as it is (its own files
/// are 0600 anyway).
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let creating = || format!("creating data dir {}", dir.display());
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(creating)?;
    let mode = std::fs::metadata(dir).with_context(creating)?.permissions().mode() & 0o777;
    if mode == 0o700 {
        return Ok(());
    }
    let names: Vec<_> =
        std::fs::read_dir(dir).with_context(creating)?.filter_map(Result::ok).map(|e| e.file_name()).collect();
    if names.is_empty() || names.iter().any(|n| n == "herald.db" || n == "master.key") {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making data dir {} private (0700)", dir.display()))?;
        tracing::info!(dir = %dir.display(), was = format!("{mode:o}"), "data dir made private (0700)");
    } else {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "the data dir holds files that are not Herald's and others may read it: give Herald a directory of its own (0700)"
        );
    }
    Ok(())
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
