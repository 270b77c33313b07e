//! `apns`: notifications per second to APNs, Herald next to `@parse/node-apn`, both sending
//! to one fake APNs (the test kit's: HTTP/2 over TLS with ALPN h2, checking each provider
//! token, header and body as APNs does) that runs in this process on loopback and shares the
//! machine's cores with the senders.
//!
//! Two shapes, each sender both ways, in one run:
//!
//! - one notification to every token: Herald, one Broadcast push to `--devices` iOS devices
//!   with APNs tokens and no MQTT connection; node-apn, one `Notification` sent to each token;
//! - a notification of its own per token: Herald, Multiple pushes (100 targets a request, 16
//!   requests in flight); node-apn, a `Notification` per token.
//!
//! Herald is measured from its first API request until the fake has answered 200 to every
//! notification; node-apn (`bench/node-apn/send.js`, `--node-apn-window` sends in flight on
//! one Provider) by the script, from its first send to its last answer (Node's start-up is
//! not counted).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_testkit::fakes::{self, FakeVendor, TestCa, Vendor};
use serde_json::{Value, json};

use crate::BenchArgs;
use crate::broadcast::create_template;
use crate::load::*;
use crate::servers::*;

/// Targets per Multiple push, and Multiple pushes in flight.
const PER_REQUEST: usize = 100;
const IN_FLIGHT: usize = 16;

/// The APNs device token of bench device `i`.
fn token(i: usize) -> String {
    format!("{:064x}", i + 1)
}

/// Waits until the fake has answered `want` requests in all; the time it took from `since`.
async fn answered(fake: &FakeVendor, want: usize, since: Instant) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while fake.received_count() < want {
        if Instant::now() > deadline {
            bail!("the fake APNs got {} of {want} notifications in 300 s", fake.received_count());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(since.elapsed())
}

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let n = args.devices;
    println!(
        "## APNs: {n} notifications, one per device token, to a fake APNs on loopback (HTTP/2, TLS, ES256 provider \
         token checked)\n"
    );
    let ca = TestCa::new();
    let (channel, expect) = fakes::apns_token_channel("production");
    let fake = FakeVendor::start(Vendor::Apns, &ca, expect, false).await;
    let dir = tempfile::Builder::new().prefix("herald-bench-apns").tempdir()?;
    let ca_file = ca.write_pem(dir.path());
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[channels]\nca_file = {:?}\napns_url = {:?}\napns_sandbox_url = {:?}\n",
            ca_file.to_str().context("path")?,
            fake.url(),
            fake.url()
        ),
    )?;

    // Herald: the devices, then the pushes.
    let herald = start_herald_with(bin, &["--config".into(), config.to_str().context("path")?.into()], &[]).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 16).await?);
    let app = Arc::new(create_app(&pool).await?);
    let (status, answer) = pool.send_signed(&app, "PUT", "/v1/channels/apns", channel.to_string()).await?;
    if status != 200 {
        bail!("setting the APNs channel: {status} {}", String::from_utf8_lossy(&answer));
    }
    create_template(&pool, &app).await?;
    let bodies = (0..n)
        .map(|i| json!({"platform": "ios", "installId": format!("apns-{i}"), "vendorTokens": {"apns": token(i)}}));
    let devices = register_each(pool.clone(), &app, bodies.collect()).await?;
    println!(
        "| sender | notifications | seconds | notifications/s | sender CPU s | sender CPU µs per notification | \
         bench process CPU s (fake APNs, API client) |"
    );
    println!("|---|---|---|---|---|---|---|");
    // One notification to every token: one Broadcast push.
    let broadcast = json!({"deliveryType": 2, "templateName": "bench", "templateKeyValue": {"title": "Hello"},
        "msgkey": "apns-bench", "pushStatus": 1, "expiredSeconds": 300})
    .to_string();
    let same = herald_phase(&herald, &pool, &app, &fake, "/v1/push/broadcast", vec![broadcast], n).await?;
    println!("| Herald: one Broadcast push (signed API → store → APNs) | {n} | {same} |");
    // A notification of its own per token: Multiple pushes of 100 targets.
    let requests: Vec<String> = devices
        .chunks(PER_REQUEST)
        .enumerate()
        .map(|(r, chunk)| {
            let targets: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (device, _))| {
                    json!({"target": device, "msgKey": format!("a{r}-{i}"), "templateKeyValue": {"title": "Hello"}})
                })
                .collect();
            json!({"deliveryType": 2, "templateName": "bench", "targetMsg": targets, "expiredSeconds": 300}).to_string()
        })
        .collect();
    let own = herald_phase(&herald, &pool, &app, &fake, "/v1/push/multiple", requests, n).await?;
    println!(
        "| Herald: {} Multiple pushes of {PER_REQUEST} targets, {IN_FLIGHT} in flight | {n} | {own} |",
        n.div_ceil(PER_REQUEST)
    );
    drop(herald);
    if !fake.problems().is_empty() {
        bail!("the fake APNs refused Herald's requests: {:?}", fake.problems());
    }

    // node-apn: the same tokens to the same fake, the same two ways.
    if args.no_reference {
        return Ok(());
    }
    if !args.node_apn.join("node_modules/@parse/node-apn").exists() {
        bail!(
            "@parse/node-apn is not installed: run `npm ci --prefix {}` (or pass --no-reference)",
            args.node_apn.display()
        );
    }
    let key = dir.path().join("AuthKey.p8");
    std::fs::write(&key, channel["privateKey"].as_str().context("key")?)?;
    let tokens = dir.path().join("tokens.txt");
    std::fs::write(&tokens, (0..n).map(token).collect::<Vec<_>>().join("\n"))?;
    let node = NodeApn { args, fake: &fake, ca: &ca_file, key: &key, tokens: &tokens, channel: &channel, n };
    let node_same = node.run(true).await?;
    println!(
        "| @parse/node-apn 8.1.0 (Node {}): one notification to every token, {} in flight | {n} | {node_same} |",
        node_version().await,
        args.node_apn_window
    );
    let node_own = node.run(false).await?;
    println!(
        "| @parse/node-apn: a notification of its own per token, {} in flight | {n} | {node_own} |",
        args.node_apn_window
    );
    println!(
        "\nHerald / node-apn notifications per second: {:.2} (one to all), {:.2} (one each).\n\
         (node-apn's CPU is the whole Node process, start-up included; its seconds are from its first send to its \
         last answer. Herald's are from the first API request to the fake's last 200.)\n",
        same.rate / node_same.rate,
        own.rate / node_own.rate
    );
    Ok(())
}

/// A row's figures: seconds, rate, the sender's CPU, the bench process's CPU.
struct Phase {
    seconds: f64,
    rate: f64,
    sender_cpu: f64,
    bench_cpu: f64,
    n: usize,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = self.sender_cpu * 1e6 / self.n as f64;
        write!(f, "{:.3} | {:.0} | {:.2} | {per:.1} | {:.2}", self.seconds, self.rate, self.sender_cpu, self.bench_cpu)
    }
}

/// Sends the signed `requests` to `path` (at most `IN_FLIGHT` at once) and waits for the
/// fake to have answered `n` more notifications.
async fn herald_phase(
    herald: &Server,
    pool: &Arc<HttpPool>,
    app: &Arc<BenchApp>,
    fake: &FakeVendor,
    path: &'static str,
    requests: Vec<String>,
    n: usize,
) -> anyhow::Result<Phase> {
    let before = fake.received_count();
    let (cpu, bench) = (herald.cpu_secs()?, cpu_secs(std::process::id())?);
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut calls = Vec::new();
    for body in requests {
        let (pool, app, sem) = (pool.clone(), app.clone(), sem.clone());
        calls.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let (status, answer) = pool.send_signed(&app, "POST", path, body).await?;
            if status != 200 {
                bail!("{path}: {status} {}", String::from_utf8_lossy(&answer));
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let took = answered(fake, before + n, started).await?;
    let phase = Phase {
        seconds: took.as_secs_f64(),
        rate: n as f64 / took.as_secs_f64(),
        sender_cpu: herald.cpu_secs()? - cpu,
        bench_cpu: cpu_secs(std::process::id())? - bench,
        n,
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    if fake.received_count() != before + n {
        bail!("Herald: {} notifications for {n} devices", fake.received_count() - before);
    }
    Ok(phase)
}

/// The node-apn script's inputs.
struct NodeApn<'a> {
    args: &'a BenchArgs,
    fake: &'a FakeVendor,
    ca: &'a Path,
    key: &'a Path,
    tokens: &'a Path,
    channel: &'a Value,
    n: usize,
}

impl NodeApn<'_> {
    /// Runs `send.js` once: `same`, one notification object to every token.
    async fn run(&self, same: bool) -> anyhow::Result<Phase> {
        let script = self.args.node_apn.join("send.js");
        let port = self.fake.url().rsplit(':').next().context("port")?.to_string();
        let text = |k: &str| self.channel[k].as_str().map(str::to_string).context("channel field");
        let before = self.fake.received_count();
        let (children, bench) = (children_cpu_secs(), cpu_secs(std::process::id())?);
        let out = tokio::process::Command::new("node")
            .arg(&script)
            .env("APNS_HOST", "127.0.0.1")
            .env("APNS_PORT", port)
            .env("APNS_CA", self.ca)
            .env("APNS_KEY", self.key)
            .env("APNS_KEY_ID", text("keyId")?)
            .env("APNS_TEAM_ID", text("teamId")?)
            .env("APNS_TOPIC", text("bundleId")?)
            .env("APNS_TOKENS", self.tokens)
            .env("APNS_WINDOW", self.args.node_apn_window.to_string())
            .env("APNS_SAME", if same { "1" } else { "0" })
            .stderr(Stdio::inherit())
            .output()
            .await
            .context("running node (is Node.js installed?)")?;
        if !out.status.success() {
            bail!("{} failed", script.display());
        }
        let (node_cpu, bench_cpu) = (children_cpu_secs() - children, cpu_secs(std::process::id())? - bench);
        let result: Value = serde_json::from_slice(&out.stdout).context("node-apn's result line")?;
        let (sent, seconds) = (result["sent"].as_u64().unwrap_or(0), result["seconds"].as_f64().unwrap_or(f64::NAN));
        let took = self.fake.received_count() - before;
        if sent != self.n as u64 || took != self.n || !self.fake.problems().is_empty() {
            bail!("node-apn: {result}; the fake took {took}; problems: {:?}", self.fake.problems());
        }
        Ok(Phase { seconds, rate: self.n as f64 / seconds, sender_cpu: node_cpu, bench_cpu, n: self.n })
    }
}

/// CPU seconds (user + system) of this process's children that ended and were waited for.
fn children_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

async fn node_version() -> String {
    match tokio::process::Command::new("node").arg("--version").output().await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Err(_) => "?".into(),
    }
}
