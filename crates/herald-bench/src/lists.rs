//! `herald-bench lists`: how fast the list APIs the console pages on answer (`GET /v1/devices`,
//! `GET /v1/tasks`) with `--registered` devices and `--tasks` tasks in one app on SQLite:
//! the first page, a deep page and each filter; then every console page (signed in as a
//! browser is), 50 requests each, one at a time.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
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
    table_head("request");
    for query in &queries {
        measure(query, || pool.send_signed(&app, "GET", query, String::new())).await?;
    }
    println!();

    let cookie = console_sign_in(&herald.http).await?;
    let (_, tasks_page) = pool.send_signed(&app, "GET", "/v1/tasks?pageSize=1", String::new()).await?;
    let task: serde_json::Value = serde_json::from_slice(&tasks_page)?;
    let task = task["resultContent"]["data"]["list"][0]["taskId"].as_str().unwrap_or("").to_string();
    let a = format!("/console/apps/{}", app.app_id);
    let pages = [
        "/console/apps".to_string(),
        a.clone(),
        format!("{a}/templates"),
        format!("{a}/push"),
        format!("{a}/tasks"),
        format!("{a}/tasks?pageNumber={deep_tasks}"),
        format!("{a}/tasks?type=simple&status=active"),
        format!("{a}/tasks/{task}"),
        format!("{a}/devices"),
        format!("{a}/devices?pageNumber={deep_devices}"),
        format!("{a}/devices?platform=android"),
        format!("{a}/devices?installId=bench-{}", registered / 3),
        format!("{a}/analytics"),
        format!("{a}/analytics?granularity=hour&hours=24"),
        format!("{a}/channels"),
        format!("{a}/receipts"),
        format!("{a}/test-device"),
        "/console/node".to_string(),
    ];
    println!("Console pages, each a whole HTML page (signed in; the API calls it makes are in process):\n");
    table_head("page");
    let headers = [("cookie".to_string(), cookie)];
    for page in &pages {
        measure(page, || pool.send("GET", page, &headers, Bytes::new())).await?;
        // A page that shows a refusal in place of its data measured nothing.
        let (_, body) = pool.send("GET", page, &headers, Bytes::new()).await?;
        if String::from_utf8_lossy(&body).contains("class=\"notice error\"") {
            bail!("{page} shows an error:\n{}", String::from_utf8_lossy(&body));
        }
    }
    println!();
    Ok(())
}

fn table_head(what: &str) {
    println!("| {what} | median (ms) | p99 (ms) | max (ms) |");
    println!("|---|---|---|---|");
}

/// `SAMPLES` requests one at a time; a row of the table. Anything but 200 fails the run.
async fn measure<F, Fut>(label: &str, request: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u16, Bytes)>>,
{
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let (status, body) = request().await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("{label}: {status} {}", String::from_utf8_lossy(&body));
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!("| `{label}` | {:.2} | {:.2} | {:.2} |", at(0.5), at(0.99), times[times.len() - 1]);
    Ok(())
}

/// Signs in to the console as a browser does (the sign-in form's cookie and CSRF token,
/// then the admin token); the session cookie to send.
async fn console_sign_in(addr: &str) -> anyhow::Result<String> {
    let cookie_of = |r: &herald::http_client::Response, name: &str| {
        r.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|c| c.starts_with(name))
            .map(str::to_string)
    };
    let form = herald::http_client::request(addr, "GET", "/console/signin", &[], Bytes::new()).await?;
    let page = String::from_utf8_lossy(&form.body);
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("");
    let signin = cookie_of(&form, "herald_console_signin=").unwrap_or_default();
    let headers =
        [("cookie".to_string(), signin), ("content-type".to_string(), "application/x-www-form-urlencoded".to_string())];
    let body = format!("csrf={csrf}&token={ADMIN_TOKEN}&who=bench");
    let answer = herald::http_client::request(addr, "POST", "/console/signin", &headers, Bytes::from(body)).await?;
    match cookie_of(&answer, "herald_console=") {
        Some(c) if answer.status == 303 => Ok(c),
        _ => bail!("console sign-in: {}", answer.status),
    }
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
