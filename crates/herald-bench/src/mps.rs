//! `herald-bench mps`: the cost of the MPS-compatible endpoint next to `/v1`. One node
//! (SQLite), `--devices` connected devices; Simple pushes at full speed (`--concurrency` in
//! flight, `--seconds` each phase) through `/v1/push/simple` and through `POST /` with
//! `x-acs-action: PushSimple` (an `ACS3-HMAC-SHA256`-signed form, as the official SDKs send
//! it), the phases alternating `--rounds` times. Each push counts when its device received it.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use bytes::Bytes;
use serde_json::json;

use crate::BenchArgs;
use crate::cluster;
use crate::load::*;
use crate::push::*;
use crate::servers::*;

/// One Simple push through the MPS endpoint, as the SDKs send it.
async fn push_one_mps(
    pool: Arc<HttpPool>,
    app: Arc<BenchApp>,
    device: String,
    msg_key: String,
    seq: usize,
) -> anyhow::Result<()> {
    let target = json!({device: msg_key}).to_string();
    let seq_title = bench_title(seq);
    let form = serde_urlencoded::to_string([
        ("AppId", app.app_id.as_str()),
        ("Content", "benchmark message"),
        ("DeliveryType", "1"),
        ("ExpiredSeconds", "3600"),
        ("TargetMsgkey", target.as_str()),
        ("Title", seq_title.as_str()),
        ("WorkspaceId", "default"),
    ])?;
    let headers = herald_core::acs3::sign_rpc(
        &app.key_id,
        &app.secret,
        &pool.addr,
        "PushSimple",
        "2020-10-28",
        form.as_bytes(),
        herald_core::now_ms(),
    );
    // The pool sends `host` (the same value) itself.
    let headers: Vec<(String, String)> = headers.into_iter().filter(|(k, _)| k != "host").collect();
    let (status, answer) = pool.send("POST", "/", &headers, Bytes::from(form)).await?;
    // A refusal of what was asked comes with 200 too: its ResultCode says. A search, not a
    // parse: the /v1 phase reads only the status, and the bench shares the node's cores.
    let ok = answer.windows(17).any(|w| w == br#""ResultCode":"OK""#);
    if status != 200 || !ok {
        bail!("MPS push answered {status}: {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let rounds = args.rounds.max(1);
    println!(
        "## MPS endpoint vs /v1: Simple pushes at full speed\n\n\
         One node (SQLite), {} connected devices, {} requests in flight, {} s per phase, {rounds} rounds \
         (the order alternating); a push counts when its device received it.\n",
        args.devices, args.concurrency, args.seconds
    );
    let herald = start_herald(bin, None).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, args.concurrency.max(8)).await?);
    let app = Arc::new(create_app(&pool).await?);
    let devices = Arc::new(register_devices(pool.clone(), &app, args.devices, 0).await?);
    let receipts = Arc::new(Receipts::default());
    let handles = connect_all(&herald.mqtt, herald_specs(&app, &devices), Some(receipts.clone())).await?;
    let collector = Collector::Local(receipts);
    println!(
        "| round | endpoint | pushes received/s | p50 ms | p99 ms | Herald CPU µs per push | bench CPU µs per push |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut v1_rates, mut mps_rates) = (Vec::new(), Vec::new());
    // CPU seconds per push, Herald's and the bench's (its devices and HTTP client, which sign
    // the requests), each endpoint's summed over the rounds.
    let (mut v1_cpu, mut mps_cpu) = (Cpu::default(), Cpu::default());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for mps in order {
            let run = herald_core::crypto::random_alnum(8);
            let before = Cpu::now(&herald)?;
            let (pool, app, devices) = (pool.clone(), app.clone(), devices.clone());
            let result = drive(devices.len(), args.seconds, args.concurrency, None, &collector, move |seq, target| {
                let (pool, app, device, key) =
                    (pool.clone(), app.clone(), devices[target].0.clone(), format!("{run}-{seq}"));
                async move {
                    if mps {
                        push_one_mps(pool, app, device, key, seq).await
                    } else {
                        cluster::push_one(pool, app, device, key, seq).await
                    }
                }
            })
            .await?;
            let used = Cpu::now(&herald)?.minus(&before, result.received);
            let name = if mps { "MPS `POST /`" } else { "`/v1/push/simple`" };
            println!(
                "| {} | {name} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
                round + 1,
                result.rate(),
                result.p50_ms,
                result.p99_ms,
                used.server / used.pushes * 1e6,
                used.bench / used.pushes * 1e6
            );
            if mps {
                mps_rates.push(result.rate());
                mps_cpu.add(&used);
            } else {
                v1_rates.push(result.rate());
                v1_cpu.add(&used);
            }
        }
    }
    for h in handles {
        h.abort();
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratios: Vec<f64> = mps_rates.iter().zip(&v1_rates).map(|(m, v)| m / v).collect();
    println!(
        "\nMPS / v1, pushes per second: {:.3} on the means ({:.0} / {:.0}); per round {}",
        mean(&mps_rates) / mean(&v1_rates),
        mean(&mps_rates),
        mean(&v1_rates),
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ")
    );
    let per_push = |c: &Cpu| (c.server / c.pushes * 1e6, c.bench / c.pushes * 1e6);
    let ((mps_server, mps_bench), (v1_server, v1_bench)) = (per_push(&mps_cpu), per_push(&v1_cpu));
    println!(
        "CPU per push, all rounds: Herald {mps_server:.1} µs (MPS) vs {v1_server:.1} µs (v1), v1 / MPS {:.3}; \
         the bench {mps_bench:.1} vs {v1_bench:.1} µs",
        v1_server / mps_server
    );
    Ok(())
}

/// CPU seconds used by Herald and by the bench, and the pushes they carried.
#[derive(Default)]
struct Cpu {
    server: f64,
    bench: f64,
    pushes: f64,
}

impl Cpu {
    fn now(herald: &Server) -> anyhow::Result<Cpu> {
        Ok(Cpu { server: herald.cpu_secs()?, bench: cpu_secs(std::process::id())?, pushes: 0.0 })
    }

    /// What was used since `before`, for `pushes` pushes.
    fn minus(&self, before: &Cpu, pushes: u64) -> Cpu {
        Cpu { server: self.server - before.server, bench: self.bench - before.bench, pushes: pushes.max(1) as f64 }
    }

    fn add(&mut self, other: &Cpu) {
        self.server += other.server;
        self.bench += other.bench;
        self.pushes += other.pushes;
    }
}
