//! `herald-bench scale`: as many connections as this machine holds, over the nodes of one
//! cluster (PostgreSQL + NATS), each node a process of its own holding `--connections`
//! devices, the devices connecting from source addresses spread over 127.0.0.0/8
//! (`--per-address` devices per address), so that the per-address limits apply as they
//! would to devices on the internet. Reports the connections each node counts, its resident
//! memory per connection, and the time from sending a broadcast to every device holding it.
//!
//! One process may open about 20,000 files here: the devices of each node are held by a
//! `herald-bench hold` helper process of their own.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::Value;

use crate::BenchArgs;
use crate::broadcast::{broadcast_once, create_template, sorted, wait_for};
use crate::cluster::Nodes;
use crate::load::*;
use crate::push::*;
use crate::servers::*;

/// PostgreSQL connections of all nodes together (the server here allows 100).
const POSTGRES_CONNECTIONS: usize = 80;

/// The source address of the `i`-th address of the run: 127.x.y.z with every octet in
/// 1..=250, never 127.0.0.1 (a loopback address the limits exempt by default).
pub(crate) fn source_address(i: usize) -> Ipv4Addr {
    let x = 2 + i / (250 * 250);
    assert!(x <= 250, "more source addresses than 127.0.0.0/8 has");
    Ipv4Addr::new(127, x as u8, ((i / 250) % 250 + 1) as u8, (i % 250 + 1) as u8)
}

/// Bytes of the kernel's slab caches (`Slab:` of /proc/meminfo): where a socket's own
/// structures live (an idle socket's buffers are empty). Machine-wide, so read around a
/// change large enough to stand out.
fn kernel_slab_bytes() -> anyhow::Result<u64> {
    Ok(kb_field("/proc/meminfo", "Slab:")? * 1024)
}

/// CPU seconds the nodes and PostgreSQL used so far.
fn cpu(nodes: &Nodes) -> anyhow::Result<(f64, f64)> {
    Ok((nodes.cpu_secs()?, postgres_cpu_secs()?))
}

/// A client in the nodes' schema.
async fn store_client(nodes: &Nodes) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&nodes.schema().store_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Journal entries not counted yet.
async fn journal_len(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client.query_one("SELECT count(*) FROM delivery_events", &[]).await?.get(0))
}

/// Rows and bytes per row PostgreSQL stores of registered devices and of broadcast
/// acknowledgements (each table with its indexes and TOAST).
async fn store_bytes(client: &tokio_postgres::Client) -> anyhow::Result<[(u64, f64); 2]> {
    let mut out = [(0, 0.0); 2];
    for (i, table) in ["devices", "broadcast_acks"].into_iter().enumerate() {
        let sql = format!("SELECT count(*), pg_total_relation_size('{table}')::bigint FROM {table}");
        let row = client.query_one(&sql, &[]).await?;
        let (rows, bytes): (i64, i64) = (row.get(0), row.get(1));
        out[i] = (rows as u64, bytes as f64 / rows.max(1) as f64);
    }
    Ok(out)
}

/// Connections the node itself counts (`GET /admin/v1/node`).
async fn counted(pool: &HttpPool) -> anyhow::Result<u64> {
    let headers = vec![("authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
    let (status, body) = pool.send("GET", "/admin/v1/node", &headers, Bytes::new()).await?;
    if status != 200 {
        bail!("GET /admin/v1/node answered {status}");
    }
    let node: Value = serde_json::from_slice(&body)?;
    node["connections"].as_u64().context("no connections in /admin/v1/node")
}

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let (Some(store_url), Some(bus_url)) = (args.store_url.as_deref(), args.bus_url.as_deref()) else {
        bail!("the scale scenario needs --store-url postgres://… and --bus-url nats://…");
    };
    let (n, per, per_address) = (args.scale_nodes.max(1), args.connections, args.per_address.max(1));
    let total = n * per;
    println!(
        "## Scale: {n} nodes × {per} connections = {total}, from {} source addresses in 127.0.0.0/8\n",
        total.div_ceil(per_address)
    );
    let pg = (POSTGRES_CONNECTIONS / n).clamp(1, 8);
    let nodes =
        Nodes::start(bin, n, store_url, bus_url, 16, &format!("[store]\npostgres_connections = {pg}\n")).await?;
    let app = Arc::new(create_app(&nodes.pools[0]).await?);
    create_template(&nodes.pools[0], &app).await?;
    let started = Instant::now();
    let by_node = nodes.register(&app, per).await?;
    let register_secs = started.elapsed().as_secs_f64();
    let rss_before: Vec<u64> = nodes.servers.iter().map(Server::rss_kb).collect::<Result<_, _>>()?;
    let (kernel_before, cpu_before) = (kernel_slab_bytes()?, cpu(&nodes)?);
    // Device g (over all nodes) connects from address g / per_address.
    let started = Instant::now();
    let workers = nodes.hold(&app, &by_node, |k, i| Some(source_address((k * per + i) / per_address))).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let cpu_after = cpu(&nodes)?;
    drop(by_node);
    // Let the nodes settle (presence writes, allocator) before reading their memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kernel = kernel_slab_bytes()?.saturating_sub(kernel_before);
    // The registration's HTTP connections have idled past the nodes' keep-alive by now.
    let mut pools = Vec::with_capacity(n);
    for server in &nodes.servers {
        pools.push(HttpPool::new(&server.http, 1).await?);
    }
    println!(
        "Registered {total} devices in {register_secs:.1} s ({:.0}/s); connected them in {connect_secs:.1} s \
         ({:.0}/s, {n} processes connecting at once), CPU per connect: nodes {:.0} µs, PostgreSQL {:.0} µs. \
         The kernel's slab grew by {:.0} bytes per connection (both ends' sockets, on loopback).\n",
        total as f64 / register_secs,
        total as f64 / connect_secs,
        (cpu_after.0 - cpu_before.0) * 1e6 / total as f64,
        (cpu_after.1 - cpu_before.1) * 1e6 / total as f64,
        kernel as f64 / total as f64,
    );
    println!("| node | connections it counts | RSS before (KiB) | RSS with connections (KiB) | bytes per connection |");
    println!("|---|---|---|---|---|");
    let (mut all_counted, mut all_growth) = (0, 0);
    for (k, server) in nodes.servers.iter().enumerate() {
        let held = counted(&pools[k]).await?;
        let after = server.rss_kb()?;
        let growth = after.saturating_sub(rss_before[k]);
        println!(
            "| node-{} | {held} | {} | {after} | {:.0} |",
            k + 1,
            rss_before[k],
            growth as f64 * 1024.0 / held.max(1) as f64
        );
        all_counted += held;
        all_growth += growth;
    }
    println!("| all | {all_counted} | | | {:.0} |\n", all_growth as f64 * 1024.0 / all_counted.max(1) as f64);
    if all_counted != total as u64 {
        bail!("the nodes count {all_counted} connections, {total} were held");
    }
    let collector = Collector::Workers(workers);
    println!(
        "| broadcast | through | answer ms | every device has it after (s) | deliveries/s | p50 ms | p99 ms | \
         node CPU µs per delivery | PostgreSQL CPU µs per delivery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut last_sent = Instant::now();
    for b in 0..args.broadcasts {
        let through = b % n;
        let (started, before) = (Instant::now(), cpu(&nodes)?);
        let (answer, _) = broadcast_once(&pools[through], &app, &format!("scale-{b}"), b, 3600).await?;
        last_sent = Instant::now();
        wait_for("scale broadcast", total as u64, async || collector.received().await).await?;
        let secs = started.elapsed().as_secs_f64();
        // The acknowledgements are written after the last copy arrived: give them a moment
        // to land in the CPU figures.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = cpu(&nodes)?;
        let lat = sorted(collector.take_latencies().await?);
        println!(
            "| {} | node-{} | {:.1} | {secs:.2} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
            b + 1,
            through + 1,
            answer.as_secs_f64() * 1000.0,
            total as f64 / secs,
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            (after.0 - before.0) * 1e6 / total as f64,
            (after.1 - before.1) * 1e6 / total as f64,
        );
    }
    // The analytics count the journal (two entries per copy) behind the deliveries: wait
    // until it is empty, so that what follows is the cost at rest.
    let client = store_client(&nodes).await?;
    let started = Instant::now();
    let backlog = journal_len(&client).await?;
    while journal_len(&client).await? > 0 {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the analytics did not count the journal within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "\nThe analytics counted the {backlog} journal entries left after the last broadcast in {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    // What the cluster costs at rest with these broadcasts live, once the resync sweeps no
    // longer look for them (a minute after their cut).
    tokio::time::sleep(Duration::from_secs(90).saturating_sub(last_sent.elapsed())).await;
    let quiet = Duration::from_secs(30);
    let (before, started) = (cpu(&nodes)?, Instant::now());
    tokio::time::sleep(quiet).await;
    let (after, secs) = (cpu(&nodes)?, started.elapsed().as_secs_f64());
    println!(
        "At rest for {secs:.0} s, from 90 s after the last broadcast, {} broadcasts live: nodes {:.3} CPU s/s, PostgreSQL {:.3} CPU s/s.",
        args.broadcasts,
        (after.0 - before.0) / secs,
        (after.1 - before.1) / secs
    );
    let sizes = store_bytes(&client).await?;
    println!(
        "PostgreSQL holds {} registered devices in {:.0} bytes each and {} broadcast acknowledgements in {:.0} \
         bytes each (table, indexes, TOAST).\n",
        sizes[0].0, sizes[0].1, sizes[1].0, sizes[1].1
    );
    drop(collector);
    nodes.stop().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_distinct_and_never_the_exempt_loopback() {
        let addrs: std::collections::HashSet<Ipv4Addr> = (0..200_000).map(source_address).collect();
        assert_eq!(addrs.len(), 200_000);
        assert!(!addrs.contains(&Ipv4Addr::LOCALHOST));
        assert!(addrs.iter().all(|a| a.octets()[0] == 127 && a.octets()[1..].iter().all(|&o| (1..=250).contains(&o))));
    }
}
