//! `herald-bench lists`: how fast the list APIs the console pages on answer (`GET /v1/devices`,
//! `GET /v1/tasks`) with `--registered` devices and `--tasks` tasks in one app on SQLite:
//! the first page, a deep page and each filter, 50 requests each, one at a time.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::BenchArgs;
use crate::load::*;
use crate::servers::*;

/// Requests per query.
const SAMPLES: usize = 50;

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let (registered, tasks) = (args.registered, args.tasks);
    println!("## List APIs: {registered} devices and {tasks} tasks in one app (SQLite)\n");
    let herald = start_herald(bin, None).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 32).await?);
    let app = Arc::new(create_app(&pool).await?);
    let started = Instant::now();
    let devices = register_devices(pool.clone(), &app, registered, 0).await?;
    println!("registered {registered} devices in {:.1} s", started.elapsed().as_secs_f64());
    let bound = &devices[registered / 2].0;
    let (status, _) = pool
        .send_signed(&app, "POST", &format!("/v1/devices/{bound}/bind"), json!({"userId": "user-1"}).to_string())
        .await?;
    if status != 200 {
        bail!("bind: {status}");
    }
    let started = Instant::now();
    push_tasks(&pool, &app, &devices, tasks).await?;
    println!("pushed {tasks} tasks in {:.1} s\n", started.elapsed().as_secs_f64());

    let deep_devices = (registered / 2 / 20).max(1);
    let deep_tasks = (tasks / 2 / 20).max(1);
    let queries = [
        "/v1/devices?pageSize=20".to_string(),
        format!("/v1/devices?pageSize=20&pageNumber={deep_devices}"),
        format!("/v1/devices?installId=bench-{}", registered / 3),
        "/v1/devices?userId=user-1".to_string(),
        format!("/v1/devices?deviceId={}", devices[registered / 4].0),
        "/v1/devices?platform=android&pageSize=100".to_string(),
        "/v1/tasks?pageSize=20".to_string(),
        format!("/v1/tasks?pageSize=20&pageNumber={deep_tasks}"),
        "/v1/tasks?type=simple&status=active".to_string(),
    ];
    println!("| request | median (ms) | p99 (ms) | max (ms) |");
    println!("|---|---|---|---|");
    for query in &queries {
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let (status, body) = pool.send_signed(&app, "GET", query, String::new()).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("{query}: {status} {}", String::from_utf8_lossy(&body));
            }
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!("| `{query}` | {:.2} | {:.2} | {:.2} |", at(0.5), at(0.99), times[times.len() - 1]);
    }
    println!();
    Ok(())
}

/// `n` Simple pushes, one device each (the devices in turn), 32 at a time.
async fn push_tasks(
    pool: &Arc<HttpPool>,
    app: &Arc<BenchApp>,
    devices: &[(String, String)],
    n: usize,
) -> anyhow::Result<()> {
    let sem = Arc::new(Semaphore::new(32));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let device = devices[i % devices.len()].0.clone();
        let (pool, app, sem) = (pool.clone(), app.clone(), sem.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let body = json!({"deliveryType": 1, "targetMsgkey": {device: format!("k{i}")}, "title": "t", "content": "c",
                "expiredSeconds": 3600});
            let (status, answer) = pool.send_signed(&app, "POST", "/v1/push/simple", body.to_string()).await?;
            if status != 200 {
                bail!("push: {status} {}", String::from_utf8_lossy(&answer));
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}
