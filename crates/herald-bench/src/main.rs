//! `herald-bench`: the measurements behind docs/PERFORMANCE.md, run side by side with
//! Mosquitto (the reference broker) in one run.
//!
//! - `idle`: N authenticated, subscribed, idle MQTT connections; resident memory of the
//!   server process per connection (from /proc/PID/status).
//! - `apns`: notifications per second to a fake APNs, next to @parse/node-apn.
//! - `push`: single-target Simple pushes end to end — signed HTTP request → committed →
//!   PUBLISH at the device → PUBACK — at full speed (closed loop) and at a fixed rate (open
//!   loop), with p50/p99 latency from sending the request to the device receiving it. The
//!   Mosquitto reference publishes QoS 1 to one subscriber topic per device.
//!
//! - `receipts`: the same unicast and broadcast load with receipts and analytics off, then
//!   on (a local webhook accepting every receipt).
//!
//! The load generator is this process: raw MQTT clients on the `herald-mqtt` codec and
//! keep-alive HTTP/1.1 connections. Servers run as child processes on loopback.

mod apns;
mod broadcast;
mod cluster;
mod idle;
mod lists;
mod load;
mod mps;
mod pgbench;
mod push;
mod receipts;
mod scale;
mod servers;

use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};

use push::*;

#[derive(Parser)]
#[command(name = "herald-bench", about = "Load generator and measurements behind docs/PERFORMANCE.md")]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.args)));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

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
    /// The `herald` binary measured (default: the one beside this program, as `cargo build
    /// --release` leaves them). Another build's binary measures that build with this load.
    #[arg(long)]
    herald: Option<PathBuf>,
    /// The Mosquitto binary measured as the reference.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// Skip the Mosquitto reference.
    #[arg(long)]
    no_reference: bool,
    /// Idle scenario: connect over TLS (Herald's MQTT over TLS listener; Mosquitto with a
    /// TLS listener on the same certificate).
    #[arg(long, conflicts_with = "ws")]
    tls: bool,
    /// Idle scenario: connect over WebSocket (Herald's `/mqtt` on its HTTP listener;
    /// Mosquitto with a websockets listener).
    #[arg(long)]
    ws: bool,
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
    /// Nodes of the scale part of the cluster scenario and of the scale scenario (each holds
    /// --connections).
    #[arg(long, default_value_t = 3)]
    scale_nodes: usize,
    /// Scale scenario: devices connecting from each source address in 127.0.0.0/8.
    #[arg(long, default_value_t = 100)]
    per_address: usize,
    /// Registered devices of the broadcast scenario.
    #[arg(long, default_value_t = 100_000)]
    registered: usize,
    /// Tasks pushed before the lists scenario measures.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Broadcasts sent back to back in the broadcast scenario.
    #[arg(long, default_value_t = 10)]
    broadcasts: usize,
    /// Broadcast scenario: when Herald's broadcasts are sent. `answer`: each as soon as the
    /// one before was answered; `rumqttd`: at the times rumqttd's publisher sent its
    /// messages (it waits for each PUBACK), measured first in the same run; a number: that
    /// many milliseconds apart.
    #[arg(long, default_value = "answer")]
    pace: String,
    /// Off/on pairs of the receipts scenario (the ratios' median is reported beside the mean:
    /// one pair's ratio scatters by ±10% on a shared 2-core machine).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// pgbench, the reference of the push scenario on `--store-url` (PostgreSQL's own
    /// transactions per second on the same server, in the same run).
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    /// The rumqttd binary measured as the second reference (`cargo install rumqttd`).
    #[arg(long, default_value = "rumqttd")]
    rumqttd: PathBuf,
    /// The directory of the node-apn reference (`npm ci --prefix bench/node-apn` installs it).
    #[arg(long, default_value = "bench/node-apn")]
    node_apn: PathBuf,
    /// Sends node-apn keeps in flight at once.
    #[arg(long, default_value_t = 512)]
    node_apn_window: usize,
    /// Fault cycles of the soak scenario (kill -9 and restart; in a cluster, in turn a node
    /// killed, one NATS server killed, every NATS server killed, PostgreSQL restarted).
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// `soak`: three nodes on a PostgreSQL and a NATS of the soak's own (needs PostgreSQL's
    /// programs and nats-server installed) instead of one node on SQLite.
    #[arg(long)]
    cluster: bool,
    /// `soak --cluster` and `cluster`: NATS servers, clustered with each other when more
    /// than one.
    #[arg(long, default_value_t = 3)]
    nats_servers: usize,
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
    /// One SQLite node vs nodes on PostgreSQL + NATS; with `--nats-servers` over 1, the
    /// same on one NATS server vs a cluster of them; then three nodes holding
    /// `--connections` each (needs --store-url and --bus-url).
    Cluster,
    All,
    /// Broadcast answer time by registered devices, and fan-out to `--connections`
    /// connected devices next to Mosquitto and rumqttd.
    Broadcast,
    /// Notifications per second to a fake APNs from the signed API, next to @parse/node-apn
    /// (`--devices` tokens; needs Node and `npm ci --prefix bench/node-apn`).
    Apns,
    /// Unicast rate and broadcast fan-out with receipts and analytics off and on (a local
    /// webhook accepting everything), `--rounds` times, the order alternating.
    Receipts,
    /// Durability: pushes at `--rate` (one at a time) to `--devices` connected devices while
    /// the node (SQLite) is killed with SIGKILL every 0.5-2 s and restarted, `--cycles`
    /// times (with `--cluster`: three nodes on PostgreSQL and `--nats-servers` NATS servers,
    /// and in turn a node killed, one NATS server killed, every NATS server killed,
    /// PostgreSQL restarted); then the ledger: lost, refused but delivered, misdelivered,
    /// duplicates, and with `--cluster` what each fault cost.
    Soak,
    /// The list APIs the console pages on (`/v1/devices`, `/v1/tasks`): first page, a deep
    /// page and each filter, with `--registered` devices and `--tasks` tasks.
    Lists,
    /// As many connections as the machine holds over `--scale-nodes` cluster nodes (each
    /// node a process holding `--connections`), from source addresses spread over
    /// 127.0.0.0/8; memory per connection and `--broadcasts` broadcasts to all of them, one
    /// at a time (needs --store-url and --bus-url).
    Scale,
    /// The MPS-compatible endpoint (`POST /`, ACS3-signed PushSimple) next to
    /// `/v1/push/simple`: Simple pushes at full speed, the phases alternating `--rounds` times.
    Mps,
    /// A helper process of `cluster` and `scale`: holds the devices of `--devices-file` on `--mqtt`.
    #[value(hide = true)]
    Hold,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let herald_bin = match &args.herald {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("herald"),
    };
    // Every bench connection is a file descriptor.
    herald::cli::raise_fd_limit();
    if args.scenario == Scenario::Hold {
        return cluster::hold(&args).await;
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo build --release` and target/release/herald-bench for figures"
        );
    }
    println!("# herald-bench ({} cores)\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if args.scenario == Scenario::Soak {
        return soak(&args, &herald_bin).await;
    }
    if matches!(args.scenario, Scenario::Idle | Scenario::All) {
        idle::idle(&args, &herald_bin).await?;
    }
    if matches!(args.scenario, Scenario::Push | Scenario::All) {
        push(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Cluster {
        cluster::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Scale {
        scale::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Broadcast {
        broadcast::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Receipts {
        receipts::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Apns {
        apns::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Lists {
        lists::run(&args, &herald_bin).await?;
    }
    if args.scenario == Scenario::Mps {
        mps::run(&args, &herald_bin).await?;
    }
    Ok(())
}

/// The soak scenario (herald_testkit::soak, which the test suite runs short).
async fn soak(args: &BenchArgs, herald_bin: &std::path::Path) -> anyhow::Result<()> {
    use herald_testkit::soak::Fault;
    let cfg = herald_testkit::soak::SoakConfig {
        cycles: args.cycles,
        devices: args.devices,
        push_every: std::time::Duration::from_secs_f64(1.0 / args.rate.max(1) as f64),
        run_ms: (500, 2000),
        settle: std::time::Duration::from_secs(60),
        down_ms: (500, 3000),
        faults: vec![Fault::NatsKillOne, Fault::NatsKillAll, Fault::PostgresRestart, Fault::NodeKill],
        nats_servers: args.nats_servers,
    };
    let started = std::time::Instant::now();
    let ledger = if args.cluster {
        println!(
            "## Soak: three nodes, {} NATS servers; in turn {}; {} cycles, {} devices, {} pushes/s\n",
            cfg.nats_servers,
            cfg.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "),
            cfg.cycles,
            cfg.devices,
            args.rate
        );
        // The production default of cluster.resync_secs.
        herald_testkit::soak::run_cluster(herald_bin, &cfg, 10)
            .await
            .ok_or_else(|| anyhow::anyhow!("the cluster soak needs PostgreSQL's programs and nats-server"))?
    } else {
        println!("## Soak: kill -9 and restart, {} cycles, {} devices, SQLite\n", cfg.cycles, cfg.devices);
        herald_testkit::soak::run(herald_bin, herald_testkit::Backend::Sqlite, &cfg)
            .await
            .ok_or_else(|| anyhow::anyhow!("SQLite needs no configuration"))?
    };
    println!("{ledger}\n\n({} s)\n", started.elapsed().as_secs());
    if args.cluster {
        println!("{}", ledger.fault_table());
        if !ledger.late.is_empty() {
            // HERALD_TEST_LOG_DIR keeps the nodes' logs, where these can be followed.
            println!(
                "\nDeliveries later than {} ms:\n\n{}",
                herald_testkit::soak::LATE.as_millis(),
                ledger.late_list()
            );
        }
    }
    if !ledger.holds() {
        anyhow::bail!(
            "the ledger does not hold: lost {:?}, refused but delivered {:?}",
            ledger.lost,
            ledger.refused_delivered
        );
    }
    Ok(())
}
