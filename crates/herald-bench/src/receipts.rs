//! `receipts`: what receipts and analytics cost. The same unicast phase (full speed) and
//! broadcast burst run on a node with `analytics.enabled = false` and on one with analytics
//! on and every app's receipts posted to a local webhook that accepts everything (a real
//! HTTP server in this process, herald-testkit's `Receiver`), one after the other in one
//! run, `--rounds` times (odd rounds off first, even rounds on first), and the rates are
//! compared.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use herald_testkit::Receiver;
use serde_json::json;

use crate::BenchArgs;
use crate::broadcast::{broadcast_once, create_template, on_own_thread, wait_for};
use crate::load::*;
use crate::push::*;
use crate::servers::*;

/// A node with analytics on or off (`[analytics] enabled`).
async fn node(bin: &Path, on: bool, dir: &Path) -> anyhow::Result<Server> {
    let config = dir.join(if on { "on.toml" } else { "off.toml" });
    std::fs::write(&config, format!("[analytics]\nenabled = {on}\n"))?;
    start_herald_with(bin, &["--config".into(), config.to_string_lossy().into_owned()], &[]).await
}

async fn webhook(pool: &HttpPool, app: &BenchApp, url: &str) -> anyhow::Result<()> {
    let (status, answer) = pool.send_signed(app, "PUT", "/v1/receipts", json!({"url": url}).to_string()).await?;
    if status != 200 {
        bail!("setting the webhook: {status} {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// Deliveries per second of `count` broadcasts back to back to `n` connected devices, and
/// (on) the seconds until their receipts were all posted after the last delivery.
async fn fanout(
    bin: &Path,
    on: bool,
    dir: &Path,
    receiver: &Receiver,
    n: usize,
    count: usize,
) -> anyhow::Result<(f64, Option<f64>)> {
    let receipts_before = receiver.accepted_count();
    let herald = node(bin, on, dir).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 8).await?);
    let app = Arc::new(create_app(&pool).await?);
    create_template(&pool, &app).await?;
    if on {
        webhook(&pool, &app, receiver.url()).await?;
    }
    let devices = register_devices(pool.clone(), &app, n, 0).await?;
    let receipts = Arc::new(Receipts::default());
    let handles = connect_all(&herald.mqtt, herald_specs(&app, &devices), Some(receipts.clone())).await?;
    let started = Instant::now();
    let (http, sender) = (herald.http.clone(), app.clone());
    on_own_thread(move || async move {
        let pool = HttpPool::new(&http, 1).await?;
        for i in 0..count {
            broadcast_once(&pool, &sender, &format!("burst-{i}"), i, 3600).await?;
        }
        Ok(())
    })
    .await?;
    let expected = (n * count) as u64;
    wait_for("broadcast deliveries", expected, async || Ok(receipts.received.load(Ordering::Relaxed))).await?;
    let rate = expected as f64 / started.elapsed().as_secs_f64();
    // With receipts on, each acknowledgement's receipt reaches the webhook before the node
    // stops.
    let lag = match on {
        true => Some(receipts_in(receiver, receipts_before, expected).await?),
        false => None,
    };
    for h in handles {
        h.abort();
    }
    Ok((rate, lag))
}

/// Waits until the receiver holds `n` more receipts than `before`; the seconds it took.
async fn receipts_in(receiver: &Receiver, before: u64, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    while receiver.accepted_count() < before + n {
        if Instant::now() > deadline {
            bail!("only {} of {n} receipts reached the webhook", receiver.accepted_count() - before);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let (n, count) = (args.connections, args.broadcasts);
    println!(
        "## Receipts and analytics: off against on (a local webhook accepting every receipt)\n\n\
         Unicast: {} connected devices, full speed with {} requests in flight, {} s; broadcast: {count} \
         broadcasts back to back to {n} connected devices. Herald on SQLite. {} rounds, odd ones off then on, \
         even ones on then off.\n",
        args.devices, args.concurrency, args.seconds, args.rounds
    );
    let receiver = Receiver::start(0).await;
    receiver.forget_requests();
    let dir = tempfile::tempdir()?;
    println!(
        "| round | unicast off (delivered/s) | unicast on | on / off | last receipt after the phase (s) | \
         broadcast off (deliveries/s) | broadcast on | on / off | last receipt after the last delivery (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut unicast_ratios, mut broadcast_ratios) = (Vec::new(), Vec::new());
    let mut cpu_per_push: Vec<(f64, f64)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        // The SQLite writer's CPU over the whole phase (its set-up included), per delivered
        // push: what the unicast rate follows (the writer is busy most of the phase).
        let writer = |h: &Server| thread_cpu_secs(h.child.id(), "sqlite-writer");
        let unicast_off = async || {
            let herald = node(bin, false, dir.path()).await?;
            let cpu = writer(&herald)?;
            let off = push_phase_on_server(args, &herald, None, async |_, _| Ok(())).await?;
            let cpu = (writer(&herald)? - cpu) * 1e6 / off.received.max(1) as f64;
            anyhow::Ok((off, cpu))
        };
        let unicast_on = async || {
            let before = receiver.accepted_count();
            let herald = node(bin, true, dir.path()).await?;
            let url = receiver.url().to_owned();
            let cpu = writer(&herald)?;
            let on =
                push_phase_on_server(args, &herald, None, async |pool, app| webhook(pool, app, &url).await).await?;
            // Every delivery's receipt reaches the webhook before the node stops.
            let lag = receipts_in(&receiver, before, on.received).await?;
            let cpu = (writer(&herald)? - cpu) * 1e6 / on.received.max(1) as f64;
            anyhow::Ok((on, lag, cpu))
        };
        // Odd rounds run off first, even rounds on first: whatever the order does to the
        // second phase (the machine's caches, a disk still writing back the first node's
        // files) falls on each mode equally often.
        let off_first = round % 2 == 1;
        let ((off, cpu_off), (on, lag, cpu_on)) = match off_first {
            true => {
                let off = unicast_off().await?;
                (off, unicast_on().await?)
            }
            false => {
                let on = unicast_on().await?;
                (unicast_off().await?, on)
            }
        };
        cpu_per_push.push((cpu_off, cpu_on));
        let (b_off, b_on, b_lag) = match off_first {
            true => {
                let (b_off, _) = fanout(bin, false, dir.path(), &receiver, n, count).await?;
                let (b_on, b_lag) = fanout(bin, true, dir.path(), &receiver, n, count).await?;
                (b_off, b_on, b_lag)
            }
            false => {
                let (b_on, b_lag) = fanout(bin, true, dir.path(), &receiver, n, count).await?;
                let (b_off, _) = fanout(bin, false, dir.path(), &receiver, n, count).await?;
                (b_off, b_on, b_lag)
            }
        };
        let b_lag = b_lag.unwrap_or(f64::NAN);
        let (u, b) = (on.rate() / off.rate(), b_on / b_off);
        unicast_ratios.push(u);
        broadcast_ratios.push(b);
        println!(
            "| {round} | {:.0} | {:.0} | {u:.3} | {lag:.2} | {b_off:.0} | {b_on:.0} | {b:.3} | {b_lag:.2} |",
            off.rate(),
            on.rate()
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    };
    println!(
        "\non / off, mean (median): unicast {:.3} ({:.3}), broadcast {:.3} ({:.3}); receipts posted in all: {}\n",
        mean(&unicast_ratios),
        median(&mut unicast_ratios),
        mean(&broadcast_ratios),
        median(&mut broadcast_ratios),
        receiver.accepted_count()
    );
    // Less sensitive to the machine's other load than the rates: what a push costs the
    // writer, which the unicast rate follows.
    let cpu: Vec<String> = cpu_per_push.iter().map(|(off, on)| format!("{off:.1} / {on:.1}")).collect();
    println!(
        "SQLite writer CPU per delivered unicast push, off / on (us, each round, the phase's set-up included): {}\n",
        cpu.join(", ")
    );
    Ok(())
}
