//! `herald bench`: the measurements behind docs/PERFORMANCE.md, run side by side with
//! Mosquitto (the reference broker) in one run.
//!
//! - `idle`: N authenticated, subscribed, idle MQTT connections; resident memory of the
//!   server process per connection (from /proc/PID/status).
//! - `push`: single-target Simple pushes end to end — signed HTTP request → committed →
//!   PUBLISH at the device → PUBACK — at full speed (closed loop) and at a fixed rate (open
//!   loop), with p50/p99 latency from sending the request to the device receiving it. The
//!   Mosquitto reference publishes QoS 1 to one subscriber topic per device.
//!
//! The load generator is this process: raw MQTT clients on the `herald-mqtt` codec and
//! keep-alive HTTP/1.1 connections. Servers run as child processes on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use herald_mqtt::{Connect, MqttStr, Packet, Protocol, PubAck, Publish, QoS, Subscribe, SubscribeFilter, decode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

mod broadcast;
mod cluster;

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Idle connections held for the memory measurement.
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// Connected devices that receive pushes in the push scenario.
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Seconds each push phase runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight in the full-speed phase.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Pushes per second of the fixed-rate phase.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// The Mosquitto binary measured as the reference.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// Skip the Mosquitto reference.
    #[arg(long)]
    no_reference: bool,
    /// Run Herald on this PostgreSQL database (each server in a fresh schema, dropped after)
    /// instead of SQLite.
    #[arg(long)]
    store_url: Option<String>,
    /// NATS of the cluster scenario.
    #[arg(long)]
    bus_url: Option<String>,
    /// Nodes of the unicast comparison of the cluster scenario.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Nodes of the scale part of the cluster scenario (each holds --connections).
    #[arg(long, default_value_t = 3)]
    scale_nodes: usize,
    /// Registered devices of the broadcast scenario.
    #[arg(long, default_value_t = 100_000)]
    registered: usize,
    /// Broadcasts sent back to back in the broadcast scenario.
    #[arg(long, default_value_t = 10)]
    broadcasts: usize,
    /// The rumqttd binary measured as the second reference (`cargo install rumqttd`).
    #[arg(long, default_value = "rumqttd")]
    rumqttd: PathBuf,
    /// `hold`: the node to connect to.
    #[arg(long, hide = true)]
    mqtt: Option<String>,
    /// `hold`: lines of `appId deviceId token`.
    #[arg(long, hide = true)]
    devices_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    Idle,
    Push,
    /// One SQLite node vs nodes on PostgreSQL + NATS; then three nodes holding
    /// `--connections` each (needs --store-url and --bus-url).
    Cluster,
    All,
    /// Broadcast answer time by registered devices, and fan-out to `--connections`
    /// connected devices next to Mosquitto and rumqttd.
    Broadcast,
    /// A helper process of `cluster`: holds the devices of `--devices-file` on `--mqtt`.
    #[value(hide = true)]
    Hold,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let herald_bin = std::env::current_exe()?;
    // Every bench connection is a file descriptor.
    crate::cli::raise_fd_limit();
    if args.scenario == Scenario::Hold {
        return cluster::hold(&args).await;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -p herald -- bench …` for figures");
    }
    println!("# herald bench ({} cores)\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if matches!(args.scenario, Scenario::Idle | Scenario::All) {
        idle(&args, &herald_bin).await?;
    }
    if matches!(args.scenario, Scenario::Push | Scenario::All) {
        push(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Cluster {
        cluster::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Broadcast {
        broadcast::run(&args, &herald_bin).await?;
    }
    Ok(())
}

/// A server under test: a child process and where it listens.
struct Server {
    child: Child,
    http: String,
    mqtt: String,
    _dir: tempfile_dir::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_kb(&self) -> anyhow::Result<u64> {
        rss_kb(self.child.id())
    }

    /// CPU seconds (user + system) the server process used so far.
    fn cpu_secs(&self) -> anyhow::Result<f64> {
        cpu_secs(self.child.id())
    }
}

/// CPU seconds (user + system) process `pid` used so far, from /proc/PID/stat.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which may hold spaces, start after its ')'.
    let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime missing")?.parse::<u64>()?
        + fields.get(12).context("stime missing")?.parse::<u64>()?;
    // SAFETY: sysconf only reads a constant of the system.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / per_sec)
}

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}

/// A directory removed on drop, without a dependency for it.
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!("{prefix}-{}", crate::crypto::random_alnum(10)));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const ADMIN_TOKEN: &str = "bench-admin-token";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A PostgreSQL schema made for one bench server, dropped with it.
struct BenchSchema {
    url: String,
    name: String,
}

impl BenchSchema {
    async fn create(url: &str) -> anyhow::Result<Self> {
        let name = format!("herald_bench_{}", crate::crypto::random_alnum(10));
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await?;
        Ok(BenchSchema { url: url.to_string(), name })
    }

    /// The store URL that puts a server into this schema.
    fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    async fn drop_schema(self) -> anyhow::Result<()> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name)).await?;
        Ok(())
    }
}

async fn start_herald(bin: &PathBuf, store_url: Option<&str>) -> anyhow::Result<Server> {
    let extra = match store_url {
        Some(url) => vec!["--store-url".to_string(), url.to_string()],
        None => vec![],
    };
    start_herald_with(bin, &extra, &[]).await
}

/// Starts `herald serve` on loopback ports with `extra` arguments and `env` variables.
async fn start_herald_with(bin: &PathBuf, extra: &[String], env: &[(&str, &str)]) -> anyhow::Result<Server> {
    let dir = tempfile_dir::TempDir::new("herald-bench")?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "warn"]);
    cmd.args(extra).envs(env.iter().copied());
    let mut child = cmd
        .arg("--data-dir")
        .arg(dir.path())
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting herald serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.starts_with("herald ready "))
    })
    .await?
    .context("herald did not print its ready line")?;
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string);
    Ok(Server {
        child,
        http: field("http=").context("http address")?,
        mqtt: field("mqtt=").context("mqtt address")?,
        _dir: dir,
    })
}

async fn start_mosquitto(bin: &PathBuf) -> anyhow::Result<Server> {
    let dir = tempfile_dir::TempDir::new("mosquitto-bench")?;
    let port = free_port()?;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\npersistence false\n"),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mqtt = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&mqtt).await.is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on {mqtt}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { child, http: String::new(), mqtt, _dir: dir })
}

/// Keep-alive HTTP/1.1 connections to one server, one request at a time each.
struct HttpPool {
    senders: Vec<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
    next: AtomicUsize,
    addr: String,
}

impl HttpPool {
    async fn new(addr: &str, size: usize) -> anyhow::Result<Self> {
        let mut senders = Vec::with_capacity(size);
        for _ in 0..size {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            senders.push(tokio::sync::Mutex::new(sender));
        }
        Ok(HttpPool { senders, next: AtomicUsize::new(0), addr: addr.to_string() })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let mut sender = self.senders[i].lock().await;
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.addr);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        sender.ready().await?;
        let resp = sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }
}

struct BenchApp {
    app_id: String,
    app_key: String,
    key_id: String,
    secret: String,
}

async fn create_app(pool: &HttpPool) -> anyhow::Result<BenchApp> {
    let headers = vec![("authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
    let (status, body) =
        pool.send("POST", "/admin/v1/apps", &headers, Bytes::from(json!({"name": "bench"}).to_string())).await?;
    if status != 200 {
        bail!("creating the bench app: {status} {}", String::from_utf8_lossy(&body));
    }
    let j: Value = serde_json::from_slice(&body)?;
    let s = |k: &str| j[k].as_str().map(str::to_string).context("app field");
    Ok(BenchApp { app_id: s("appId")?, app_key: s("appKey")?, key_id: s("apiKeyId")?, secret: s("apiSecret")? })
}

/// Registers `n` devices (install ids from `first` on); returns (deviceId, deviceToken) pairs.
async fn register_devices(
    pool: Arc<HttpPool>,
    app: &BenchApp,
    n: usize,
    first: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let headers = Arc::new(vec![
        ("x-herald-app".to_string(), app.app_id.clone()),
        ("x-herald-app-key".to_string(), app.app_key.clone()),
    ]);
    let sem = Arc::new(Semaphore::new(pool.senders.len()));
    let mut tasks = Vec::with_capacity(n);
    for i in first..first + n {
        let (pool, headers, sem) = (pool.clone(), headers.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let body = json!({"platform": "android", "installId": format!("bench-{i}")}).to_string();
            let (status, body) = pool.send("POST", "/device/v1/register", &headers, Bytes::from(body)).await?;
            if status != 200 {
                bail!("register: {status}");
            }
            let j: Value = serde_json::from_slice(&body)?;
            Ok::<_, anyhow::Error>((
                j["deviceId"].as_str().context("deviceId")?.to_string(),
                j["deviceToken"].as_str().context("deviceToken")?.to_string(),
            ))
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// One bench device: identity, and what it should subscribe to (Mosquitto) or not (Herald
/// subscribes devices itself).
#[derive(Clone)]
struct DeviceSpec {
    client_id: String,
    username: Option<String>,
    password: Option<String>,
    subscribe: Option<String>,
}

/// What the receiving side of the push phases records. Each payload carries its send time
/// (`bench#SEQ@MICROS`, Unix µs): receivers in other processes measure latency too.
#[derive(Default)]
struct Receipts {
    latencies_us: Mutex<Vec<u64>>,
    received: AtomicU64,
}

impl Receipts {
    fn mark_received(&self, payload: &[u8]) {
        if let Some(sent_us) = sent_us_of(payload) {
            self.latencies_us.lock().push(now_us().saturating_sub(sent_us));
        }
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The title of bench message `seq`, stamped with the time it is sent.
fn bench_title(seq: usize) -> String {
    format!("bench#{seq}@{}", now_us())
}

/// Finds the send time of `bench#SEQ@MICROS` in a payload without parsing all of it.
fn sent_us_of(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let start = text.find("bench#")?;
    let at = start + text[start..].find('@')? + 1;
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Connects a device, keeps it open, acknowledges and reports every delivery.
async fn device_task(
    addr: String,
    spec: DeviceSpec,
    receipts: Option<Arc<Receipts>>,
    connected: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: 600,
        client_id: MqttStr::new(spec.client_id.clone()),
        will: None,
        username: spec.username.clone().map(MqttStr::new),
        password: spec.password.clone().map(Bytes::from),
    });
    stream.write_all(&connect.to_bytes()).await?;
    let mut buf = BytesMut::with_capacity(256);
    let mut subscribed = spec.subscribe.is_none();
    loop {
        while let Some(packet) = decode(&mut buf, 1 << 20)? {
            match packet {
                Packet::ConnAck(a) => {
                    if a.code != herald_mqtt::ConnectReturnCode::Accepted {
                        bail!("CONNACK {:?}", a.code);
                    }
                    if let Some(topic) = &spec.subscribe {
                        let sub = Packet::Subscribe(Subscribe {
                            packet_id: 1,
                            filters: vec![SubscribeFilter {
                                filter: MqttStr::new(topic.clone()),
                                qos: QoS::AtLeastOnce,
                            }],
                        });
                        stream.write_all(&sub.to_bytes()).await?;
                    } else {
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Packet::SubAck(_) if !subscribed => {
                    subscribed = true;
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                Packet::Publish(p) => {
                    if let Some(packet_id) = p.packet_id {
                        stream.write_all(&Packet::PubAck(PubAck { packet_id }).to_bytes()).await?;
                    }
                    if let Some(r) = &receipts {
                        r.mark_received(&p.payload);
                    }
                }
                _ => {}
            }
        }
        if buf.capacity() - buf.len() < 128 {
            buf.reserve(4096);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Opens connections for `specs` (at most `parallel` handshakes at once) and waits until
/// all are connected and subscribed.
async fn connect_all(
    addr: &str,
    specs: Vec<DeviceSpec>,
    receipts: Option<Arc<Receipts>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let connected = Arc::new(AtomicUsize::new(0));
    let n = specs.len();
    let mut handles = Vec::with_capacity(n);
    for (i, spec) in specs.into_iter().enumerate() {
        let (addr, receipts, up) = (addr.to_string(), receipts.clone(), connected.clone());
        handles.push(tokio::spawn(async move {
            if let Err(e) = device_task(addr, spec, receipts, up).await {
                eprintln!("bench device error: {e:#}");
            }
        }));
        // Pace the handshakes so the listen backlog never overflows (rumqttd resets
        // connections when a few hundred arrive at once).
        while i + 1 - connected.load(Ordering::Relaxed) > 128 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} connections came up", connected.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(handles)
}

fn herald_specs(app: &BenchApp, devices: &[(String, String)]) -> Vec<DeviceSpec> {
    devices
        .iter()
        .map(|(id, token)| DeviceSpec {
            client_id: id.clone(),
            username: Some(app.app_id.clone()),
            password: Some(token.clone()),
            subscribe: None,
        })
        .collect()
}

fn mosquitto_specs(n: usize) -> Vec<DeviceSpec> {
    (0..n)
        .map(|i| DeviceSpec {
            client_id: format!("bench-{i}"),
            username: None,
            password: None,
            subscribe: Some(format!("push/bench-{i}")),
        })
        .collect()
}

/// Connects `specs` to `server` and reports the server's resident memory per connection.
/// What holding idle connections costs a server: RSS before any, with half of them, and
/// with all (each 3 s after the last connection is up).
struct IdleMemory {
    before: u64,
    half: u64,
    after: u64,
    n: usize,
}

impl IdleMemory {
    /// Bytes per connection over all of them.
    fn per_connection(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 * 1024.0 / self.n as f64
    }

    /// Bytes per connection of the second half only: what one more connection costs once the
    /// server runs, without what the first connections took from memory left free earlier.
    fn marginal(&self) -> f64 {
        self.after.saturating_sub(self.half) as f64 * 1024.0 / (self.n - self.n / 2) as f64
    }
}

async fn measure_idle(server: &Server, mut specs: Vec<DeviceSpec>) -> anyhow::Result<IdleMemory> {
    let n = specs.len();
    let second = specs.split_off(n / 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kb()?;
    let mut handles = connect_all(&server.mqtt, specs, None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let half = server.rss_kb()?;
    handles.extend(connect_all(&server.mqtt, second, None).await?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kb()?;
    for h in handles {
        h.abort();
    }
    Ok(IdleMemory { before, half, after, n })
}

async fn idle(args: &BenchArgs, herald_bin: &PathBuf) -> anyhow::Result<()> {
    let n = args.connections;
    println!("## Idle connections: {n} authenticated, subscribed, idle\n");
    println!(
        "| server | RSS before (KiB) | RSS with {} connections (KiB) | RSS with {n} connections (KiB) | bytes per connection | bytes per connection, second half |",
        n / 2
    );
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, m: &IdleMemory| {
        println!(
            "| {name} | {} | {} | {} | {:.0} | {:.0} |",
            m.before,
            m.half,
            m.after,
            m.per_connection(),
            m.marginal()
        )
    };
    let schema = match &args.store_url {
        Some(url) => Some(BenchSchema::create(url).await?),
        None => None,
    };
    let herald = start_herald(herald_bin, schema.as_ref().map(BenchSchema::store_url).as_deref()).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 32).await?);
    let app = create_app(&pool).await?;
    let devices = register_devices(pool.clone(), &app, n, 0).await?;
    drop(pool);
    let mem = measure_idle(&herald, herald_specs(&app, &devices)).await?;
    row("herald", &mem);
    drop(herald);
    if let Some(schema) = schema {
        schema.drop_schema().await?;
    }
    if !args.no_reference {
        let mosquitto = start_mosquitto(&args.mosquitto).await?;
        let reference = measure_idle(&mosquitto, mosquitto_specs(n)).await?;
        row("mosquitto", &reference);
        println!(
            "\nherald / mosquitto memory per connection: {:.2} (all), {:.2} (second half)\n",
            mem.per_connection() / reference.per_connection(),
            mem.marginal() / reference.marginal()
        );
    }
    Ok(())
}

/// Where deliveries are counted: in this process, or in `bench hold` worker processes
/// (one process cannot open more than about 20,000 files here).
enum Collector {
    Local(Arc<Receipts>),
    Workers(Vec<cluster::Worker>),
}

impl Collector {
    async fn received(&self) -> anyhow::Result<u64> {
        match self {
            Collector::Local(r) => Ok(r.received.load(Ordering::Relaxed)),
            Collector::Workers(ws) => {
                let mut n = 0;
                for w in ws {
                    n += w.received().await?;
                }
                Ok(n)
            }
        }
    }

    /// The latencies recorded so far (µs), and a fresh start for the next phase.
    async fn take_latencies(&self) -> anyhow::Result<Vec<u64>> {
        match self {
            Collector::Local(r) => {
                r.received.store(0, Ordering::Relaxed);
                Ok(std::mem::take(&mut *r.latencies_us.lock()))
            }
            Collector::Workers(ws) => {
                let mut all = Vec::new();
                for w in ws {
                    all.extend(w.take_latencies().await?);
                }
                Ok(all)
            }
        }
    }
}

struct PhaseResult {
    sent: u64,
    received: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl PhaseResult {
    fn rate(&self) -> f64 {
        self.received as f64 / self.seconds
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Sends for `seconds` with `send(seq, target)`: closed loop with `concurrency` in flight
/// when `rate` is None, else open loop at `rate` per second. Waits for the deliveries.
async fn drive<F, Fut>(
    targets: usize,
    seconds: u64,
    concurrency: usize,
    rate: Option<u64>,
    receipts: &Collector,
    send: F,
) -> anyhow::Result<PhaseResult>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let send = Arc::new(send);
    let seq = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    match rate {
        None => {
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let (send, seq, errors) = (send.clone(), seq.clone(), errors.clone());
                workers.push(tokio::spawn(async move {
                    while Instant::now() < stop_at {
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        if send(s, s % targets).await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for w in workers {
                w.await?;
            }
        }
        Some(rate) => {
            let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
            let sem = Arc::new(Semaphore::new(concurrency));
            let mut next = Instant::now();
            while Instant::now() < stop_at {
                next += interval;
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                }
                let s = seq.fetch_add(1, Ordering::Relaxed);
                let permit = sem.clone().acquire_owned().await?;
                let (send, errors) = (send.clone(), errors.clone());
                tokio::spawn(async move {
                    if send(s, s % targets).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
            // The requests still in flight: wait for their answers.
            let _ = sem.acquire_many(concurrency as u32).await?;
        }
    }
    let errors = errors.load(Ordering::Relaxed);
    let sent = (seq.load(Ordering::Relaxed) as u64).saturating_sub(errors);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receipts.received().await? < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if errors > 0 {
        eprintln!("warning: {errors} sends failed");
    }
    let received = receipts.received().await?;
    let mut lat = receipts.take_latencies().await?;
    lat.sort_unstable();
    Ok(PhaseResult {
        sent,
        received,
        seconds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(f64::NAN),
    })
}

fn print_phase(name: &str, r: &PhaseResult) {
    println!(
        "| {name} | {} | {} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} |",
        r.sent,
        r.received,
        r.seconds,
        r.rate(),
        r.p50_ms,
        r.p99_ms,
        r.max_ms
    );
}

async fn herald_push_phase(args: &BenchArgs, herald_bin: &PathBuf, rate: Option<u64>) -> anyhow::Result<PhaseResult> {
    herald_push_phase_on(args, herald_bin, rate, args.store_url.as_deref()).await
}

/// The unicast phase on one node, on SQLite or on the PostgreSQL of `store_url`.
async fn herald_push_phase_on(
    args: &BenchArgs,
    herald_bin: &PathBuf,
    rate: Option<u64>,
    store_url: Option<&str>,
) -> anyhow::Result<PhaseResult> {
    let schema = match store_url {
        Some(url) => Some(BenchSchema::create(url).await?),
        None => None,
    };
    let herald = start_herald(herald_bin, schema.as_ref().map(BenchSchema::store_url).as_deref()).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, args.concurrency.max(8)).await?);
    let app = Arc::new(create_app(&pool).await?);
    let devices = Arc::new(register_devices(pool.clone(), &app, args.devices, 0).await?);
    let receipts = Arc::new(Receipts::default());
    let handles = connect_all(&herald.mqtt, herald_specs(&app, &devices), Some(receipts.clone())).await?;
    let targets = devices.len();
    // Message keys unique to this run: a repeated key would be an idempotent no-op.
    let run = crate::crypto::random_alnum(8);
    let collector = Collector::Local(receipts);
    let result = drive(targets, args.seconds, args.concurrency, rate, &collector, move |seq, target| {
        cluster::push_one(pool.clone(), app.clone(), devices[target].0.clone(), format!("{run}-{seq}"), seq)
    })
    .await?;
    for h in handles {
        h.abort();
    }
    drop(herald);
    if let Some(schema) = schema {
        schema.drop_schema().await?;
    }
    Ok(result)
}

async fn mosquitto_push_phase(args: &BenchArgs, rate: Option<u64>) -> anyhow::Result<PhaseResult> {
    let mosquitto = start_mosquitto(&args.mosquitto).await?;
    let receipts = Arc::new(Receipts::default());
    let handles = connect_all(&mosquitto.mqtt, mosquitto_specs(args.devices), Some(receipts.clone())).await?;
    // Publishers: one connection per concurrent sender, each waiting for its PUBACK, the
    // counterpart of an HTTP request answered after commit.
    let mut publishers = Vec::new();
    for i in 0..args.concurrency {
        publishers.push(tokio::sync::Mutex::new(Publisher::connect(&mosquitto.mqtt, &format!("publisher-{i}")).await?));
    }
    let publishers = Arc::new(publishers);
    let next = Arc::new(AtomicUsize::new(0));
    let collector = Collector::Local(receipts);
    let result = drive(args.devices, args.seconds, args.concurrency, rate, &collector, move |seq, target| {
        let (publishers, next) = (publishers.clone(), next.clone());
        async move {
            let i = next.fetch_add(1, Ordering::Relaxed) % publishers.len();
            let mut p = publishers[i].lock().await;
            let payload = json!({"title": bench_title(seq), "content": "benchmark message"}).to_string();
            p.publish(&format!("push/bench-{target}"), Bytes::from(payload)).await
        }
    })
    .await?;
    for h in handles {
        h.abort();
    }
    Ok(result)
}

struct Publisher {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u16,
}

impl Publisher {
    async fn connect(addr: &str, client_id: &str) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let connect = Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 600,
            client_id: MqttStr::new(client_id),
            will: None,
            username: None,
            password: None,
        });
        stream.write_all(&connect.to_bytes()).await?;
        let mut p = Publisher { stream, buf: BytesMut::with_capacity(1024), next_id: 1 };
        match p.read().await? {
            Packet::ConnAck(_) => Ok(p),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    async fn read(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, 1 << 20)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("publisher connection closed");
            }
        }
    }

    async fn publish(&mut self, topic: &str, payload: Bytes) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: MqttStr::new(topic),
            packet_id: Some(id),
            payload,
        });
        self.stream.write_all(&publish.to_bytes()).await?;
        loop {
            if let Packet::PubAck(a) = self.read().await?
                && a.packet_id == id
            {
                return Ok(());
            }
        }
    }
}

async fn push(args: &BenchArgs, herald_bin: &PathBuf) -> anyhow::Result<()> {
    println!(
        "## Unicast pushes: {} connected devices, one target per request, {} s per phase, Herald on {}\n",
        args.devices,
        args.seconds,
        if args.store_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    println!(
        "Latency: request sent → delivery received by the device (Herald: signed HTTP push, committed, MQTT QoS 1;"
    );
    println!("Mosquitto: QoS 1 PUBLISH from a publisher connection to the device's topic).\n");
    println!("| phase | sent | delivered | seconds | delivered/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let full = herald_push_phase(args, herald_bin, None).await?;
    print_phase(&format!("herald, full speed ({} in flight)", args.concurrency), &full);
    let fixed = herald_push_phase(args, herald_bin, Some(args.rate)).await?;
    print_phase(&format!("herald, {}/s", args.rate), &fixed);
    if !args.no_reference {
        let ref_full = mosquitto_push_phase(args, None).await?;
        print_phase(&format!("mosquitto, full speed ({} in flight)", args.concurrency), &ref_full);
        let ref_fixed = mosquitto_push_phase(args, Some(args.rate)).await?;
        print_phase(&format!("mosquitto, {}/s", args.rate), &ref_fixed);
        println!("\nherald / mosquitto delivered per second at full speed: {:.2}", full.rate() / ref_full.rate());
        println!("herald / mosquitto p99 at {}/s: {:.2}\n", args.rate, fixed.p99_ms / ref_fixed.p99_ms);
    }
    Ok(())
}
