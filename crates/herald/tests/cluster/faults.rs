//! The cluster under the failures its operators meet: the bus (one NATS server, all of
//! them, one node cut off from it), the store (PostgreSQL restarted, one node cut off from
//! it, a primary that moves). The promise: the store is the truth and the bus a doorbell,
//! so a bus outage costs latency and never a push; a store outage refuses pushes only while
//! it lasts; nothing accepted is lost.

use std::time::{Duration, Instant};

use herald_testkit::soak::{Fault, SoakConfig};
use herald_testkit::*;
use serde_json::{Value, json};

/// The NATS of these tests is their own; the variable says whether the cluster suite runs.
fn cluster_suite() -> bool {
    let set = std::env::var(NATS_URL).is_ok();
    if !set {
        eprintln!("skipped: {NATS_URL} is not set, so the cluster is not tested here");
    }
    set
}

async fn get(node: &Endpoint, path: &str) -> (u16, Value) {
    let r = node.call("GET", path, &[], bytes::Bytes::new()).await;
    (r.status, r.json())
}

async fn metric(node: &Endpoint, name: &str) -> Option<f64> {
    let r = node.call("GET", "/metrics", &[], bytes::Bytes::new()).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

async fn bus_connected(c: &Cluster, i: usize, connected: bool) {
    eventually(&format!("node {i} to see its bus {}", if connected { "up" } else { "down" }), || async {
        (c.node_info(i).await["busConnected"] == connected).then_some(())
    })
    .await;
}

fn news_broadcast() -> String {
    json!({"deliveryType": 1, "templateName": "news", "msgkey": "b", "pushStatus": 1, "expiredSeconds": 300})
        .to_string()
}

/// NATS gone for every node: pushes through any node are still accepted (they were
/// refused with 503 BUS_UNAVAILABLE before); devices on the node that took the push get it
/// at once, devices on other nodes through the store within the degraded resync (1 s); a
/// broadcast too. `/healthz` says "degraded" with 200, `/readyz` stays 200; the metrics and
/// the node view say since when the bus is down. NATS back: all is as before.
#[tokio::test]
async fn with_the_bus_down_pushes_are_accepted_and_reach_devices_on_every_node() {
    if !cluster_suite() {
        return;
    }
    let mut nats = TestNats::start().await.expect("nats-server installed (Debian package nats-server)");
    let Some(c) = Cluster::start_with(2, ClusterOptions { nats: Some(nats.url()), ..Default::default() }).await else {
        return;
    };
    let app = c.node(1).create_app().await;
    let t = json!({"templateName": "news", "title": "t", "content": "c"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    let (d1, d2) = (app.register("on-1").await, app.register("on-2").await);
    let mut dev1 = TestDevice::connect(&d1.on(c.node(1))).await;
    let mut dev2 = TestDevice::connect(&d2.on(c.node(2))).await;
    assert_eq!(get(c.node(1), "/healthz").await.1["status"], "ok");

    let killed_at = herald_core::now_ms();
    nats.kill9();
    bus_connected(&c, 1, false).await;
    bus_connected(&c, 2, false).await;
    let (status, health) = get(c.node(1), "/healthz").await;
    assert_eq!((status, health["status"].as_str(), health["bus"].as_str()), (200, Some("degraded"), Some("down")));
    assert!(health["busDownSince"].as_i64().unwrap() >= killed_at, "{health}");
    assert_eq!(get(c.node(1), "/readyz").await, (200, json!({"status": "ready"})));
    assert_eq!(metric(c.node(2), "herald_bus_connected").await, Some(0.0));
    assert!(c.node_info(2).await["busDownSince"].as_i64().unwrap() >= killed_at);

    // Through node 1: to its own device at once, to node 2's through the store.
    let (_, here) = app.push_to_device(&d1.device_id, "k1", "here").await;
    assert_eq!(dev1.next_push().await.1["messageId"], here.as_str());
    let sent = Instant::now();
    let (_, there) = app.push_to_device(&d2.device_id, "k2", "there").await;
    assert_eq!(dev2.next_push().await.1["messageId"], there.as_str());
    let took = sent.elapsed();
    assert!(took < Duration::from_millis(2_500), "degraded resync of 1 s, took {took:?}");
    assert_eq!(c.node_info(2).await["clusterDegraded"], true);
    assert_eq!(metric(c.node(2), "herald_cluster_degraded").await, Some(1.0));
    // A broadcast through node 2 reaches both.
    let r = app.via(c.node(2)).signed("POST", "/v1/push/broadcast", &news_broadcast()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let b = r.json()["pushResult"]["messageId"].as_str().unwrap().to_string();
    assert_eq!(dev1.next_push().await.1["messageId"], b.as_str());
    assert_eq!(dev2.next_push().await.1["messageId"], b.as_str());

    nats.restart().await;
    bus_connected(&c, 1, true).await;
    bus_connected(&c, 2, true).await;
    assert_eq!(get(c.node(2), "/healthz").await.1["status"], "ok");
    assert_eq!(metric(c.node(1), "herald_bus_connected").await, Some(1.0));
    let (_, after) = app.via(c.node(2)).push_to_device(&d1.device_id, "k3", "after").await;
    assert_eq!(dev1.next_push().await.1["messageId"], after.as_str());
    assert!(dev1.quiet_for(Duration::from_millis(300)).await && dev2.quiet_for(Duration::from_millis(300)).await);
}

/// A node whose NATS does not answer when it starts serves anyway (degraded), and joins the
/// bus when NATS comes.
#[tokio::test]
async fn a_node_starts_without_its_bus_and_joins_it_later() {
    if !cluster_suite() {
        return;
    }
    let mut nats = TestNats::start().await.expect("nats-server installed");
    nats.kill9();
    let Some(c) = Cluster::start_with(1, ClusterOptions { nats: Some(nats.url()), ..Default::default() }).await else {
        return;
    };
    assert_eq!(c.node_info(1).await["busConnected"], false);
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "no bus yet").await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    nats.restart().await;
    bus_connected(&c, 1, true).await;
}

/// A NATS server of the test's own, a proxy in front of it that node 1 reaches it through
/// (a test cuts it), and `n` in-process nodes (the others reach NATS directly); `tune`
/// sets node i's configuration further. `None` where the cluster suite does not run.
async fn node_1_behind_a_bus_proxy(
    n: usize,
    tune: impl Fn(usize, &mut herald::config::Config),
) -> Option<(TestNats, TcpProxy, Cluster)> {
    if !cluster_suite() {
        return None;
    }
    let nats = TestNats::start().await.expect("nats-server installed");
    let proxy = TcpProxy::start(nats.url().trim_start_matches("nats://")).await;
    let mut c = Cluster::start_with(0, ClusterOptions { nats: Some(nats.url()), ..Default::default() }).await?;
    let cut_url = format!("nats://{}", proxy.addr());
    for i in 1..=n {
        let node = c
            .try_node(i, |cfg| {
                if i == 1 {
                    cfg.bus_url = Some(cut_url.clone());
                }
                tune(i, cfg);
            })
            .await
            .unwrap_or_else(|e| panic!("node-{i}: {e}"));
        c.nodes.push(ClusterNode::InProcess(node));
    }
    Some((nats, proxy, c))
}

/// One node cut off from NATS, the other not (a partition): pushes through either reach
/// devices on either. The cut node accepts pushes and says in the store that it lost the
/// bus, so the other looks for its work every second too; its own resync finds what the
/// other rang for in vain.
#[tokio::test]
async fn a_node_cut_off_from_the_bus_still_reaches_and_is_reached() {
    let Some((_nats, proxy, c)) = node_1_behind_a_bus_proxy(2, |_, _| {}).await else { return };
    let app = c.node(1).create_app().await;
    let (d1, d2) = (app.register("on-1").await, app.register("on-2").await);
    let mut dev1 = TestDevice::connect(&d1.on(c.node(1))).await;
    let mut dev2 = TestDevice::connect(&d2.on(c.node(2))).await;
    proxy.cut();
    bus_connected(&c, 1, false).await;
    assert_eq!(c.node_info(2).await["busConnected"], true);
    eventually("node 2 to learn that node 1 lost the bus", || async {
        (c.node_info(2).await["clusterDegraded"] == true).then_some(())
    })
    .await;
    for (through, to, device, key) in [(1, &d2, &mut dev2, "a"), (2, &d1, &mut dev1, "b")] {
        let sent = Instant::now();
        let (_, m) = app.via(c.node(through)).push_to_device(&to.device_id, key, "across").await;
        assert_eq!(device.next_push().await.1["messageId"], m.as_str(), "through node {through}");
        assert!(sent.elapsed() < Duration::from_millis(2_500), "through node {through}: {:?}", sent.elapsed());
    }
    proxy.heal();
    bus_connected(&c, 1, true).await;
}

/// A node that loses the bus says so in the store at once, not at its next resync tick:
/// the other nodes learn it from there, so every tick it waited was one more before they
/// looked for its work. Here the ticks are 20 s apart, the lease must come within 1 s.
#[tokio::test]
async fn a_node_that_loses_the_bus_tells_the_store_at_once() {
    let Some((_nats, proxy, c)) = node_1_behind_a_bus_proxy(1, |_, cfg| cfg.cluster.degraded_resync_ms = 20_000).await
    else {
        return;
    };
    // Past the first tick (at start).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut = Instant::now();
    proxy.cut();
    eventually("node 1's bus-down lease in the store", || async {
        let view = c.node(1).admin("GET", "/admin/v1/cluster", Value::Null).await.json();
        view["leases"].as_array().unwrap().iter().any(|l| l["name"] == "bus-down:node-1").then_some(())
    })
    .await;
    assert!(cut.elapsed() < Duration::from_secs(1), "the lease came {:?} after the cut", cut.elapsed());
}

/// A node that loses NATS for a moment (one server of a NATS cluster dies; it is back on
/// another within a second) holds the events it could not send and sends them when it is
/// back: a push through it while it was away reaches a device on another node then, not
/// at that node's next look in the store (20 s apart here), and once.
#[tokio::test]
async fn events_a_node_could_not_send_go_out_when_its_bus_is_back() {
    let Some((_nats, proxy, c)) = node_1_behind_a_bus_proxy(2, |_, cfg| cfg.cluster.degraded_resync_ms = 20_000).await
    else {
        return;
    };
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    proxy.cut();
    bus_connected(&c, 1, false).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "while node 1 was away").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let healed = Instant::now();
    proxy.heal();
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    assert!(healed.elapsed() < Duration::from_secs(3), "came {:?} after the bus", healed.elapsed());
    assert!(device.quiet_for(Duration::from_secs(1)).await, "delivered once");
}

/// The ledger under faults, short (`herald-bench soak --cluster` runs it long and prints
/// the table of docs/operations.md): three nodes on a PostgreSQL and a three-server NATS
/// cluster of the test's own, pushes every 20 ms to 30 devices spread over the nodes, each
/// through a node other than its device's, while in turn one NATS server is killed, every NATS server is killed,
/// PostgreSQL is restarted and a node is killed (8 faults). Every push answered 200 reaches
/// its device, none refused reaches anyone; the bus faults refuse nothing; PostgreSQL's
/// refuses only with STORE_UNAVAILABLE; with the bus down deliveries come within the
/// degraded resync (p99).
#[tokio::test]
async fn pushes_accepted_across_nats_postgres_and_node_faults_all_arrive() {
    if !cluster_suite() {
        return;
    }
    let cfg = SoakConfig {
        cycles: 8,
        devices: 30,
        push_every: Duration::from_millis(20),
        run_ms: (1_000, 2_000),
        settle: Duration::from_secs(30),
        down_ms: (1_000, 2_000),
        faults: vec![Fault::NatsKillOne, Fault::NatsKillAll, Fault::PostgresRestart, Fault::NodeKill],
        nats_servers: 3,
    };
    let ledger = herald_testkit::soak::run_cluster(herald_bin!(), &cfg, 10)
        .await
        .expect("PostgreSQL's programs and nats-server installed (the cluster suite runs here)");
    eprintln!("cluster soak ledger: {ledger}\n{}\nlate:\n{}", ledger.fault_table(), ledger.late_list());
    assert!(ledger.holds(), "{ledger}: lost {:?}, refused but delivered {:?}", ledger.lost, ledger.refused_delivered);
    assert_eq!(ledger.faults.iter().map(|f| f.count).collect::<Vec<_>>(), vec![2, 2, 2, 2]);
    for bus_fault in [Fault::NatsKillOne, Fault::NatsKillAll] {
        let f = ledger.fault(bus_fault);
        assert_eq!((f.refused, f.unanswered), (0, 0), "{} refuses nothing: {ledger}", f.kind);
        // A delivery the bus missed waits for its node's next look in the store (every
        // second while degraded, taking deliveries older than 250 ms): p99 of those
        // delivered before the next fault. One missed just before the PostgreSQL restart
        // that follows waits for the store to be back as well (operations.md): the bound on
        // every push's max covers that outage too.
        let alone = f.alone.expect("pushes during the fault");
        assert!(
            alone.p99 < Duration::from_secs(2),
            "{}: deliveries within the degraded resync, p99 {:?}",
            f.kind,
            alone.p99
        );
        let l = f.latency.expect("pushes during the fault");
        assert!(l.max < Duration::from_secs(8), "{}: max {:?}", f.kind, l.max);
    }
    let pg = ledger.fault(Fault::PostgresRestart);
    assert!(pg.refused_codes.iter().all(|c| c == "STORE_UNAVAILABLE"), "{:?}", pg.refused_codes);
    assert!(pg.refused_for < Duration::from_secs(8), "refused only while PostgreSQL is down: {ledger}");
    assert!(ledger.accepted >= 300, "the pushes went on between the faults: {ledger}");
}

fn push_body(device: &str, key: &str) -> Value {
    json!({"deliveryType": 1, "targetMsgkey": {device: key}, "title": "t", "content": "c", "expiredSeconds": 300})
}

/// A primary failover: two PostgreSQL servers, the second a streaming standby, both named
/// in the nodes' store_url with `target_session_attrs=read-write`. The primary stops: pushes
/// are refused with 503 STORE_UNAVAILABLE and `/readyz` answers 503, the device stays
/// connected; the standby is promoted: the pools find it by themselves, pushes are accepted
/// and delivered, and what was accepted before is there.
#[tokio::test]
async fn a_primary_failover_behind_a_multi_host_url_loses_nothing() {
    if !cluster_suite() {
        return;
    }
    let primary = TestPostgres::start().await.expect("PostgreSQL's programs installed (the cluster suite runs here)");
    let standby = TestPostgres::standby_of(&primary).await;
    let url = format!(
        "postgres://postgres@{},{}/postgres?target_session_attrs=read-write",
        primary.host_port(),
        standby.host_port()
    );
    let Some(c) = Cluster::start_with(2, ClusterOptions { postgres: Some(url), ..Default::default() }).await else {
        return;
    };
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    let (_, before) = app.push_to_device(&creds.device_id, "before", "before").await;
    assert_eq!(device.next_push().await.1["messageId"], before.as_str());
    app.wait_status(&before, "delivered").await;

    primary.stop();
    let r = app.push_simple(push_body(&creds.device_id, "after")).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (503, Some("STORE_UNAVAILABLE")), "{:?}", r.json());
    eventually("/readyz to say the store is away", || async {
        (get(c.node(1), "/readyz").await.0 == 503).then_some(())
    })
    .await;
    assert_eq!(get(c.node(1), "/healthz").await.1["store"], "unavailable");

    standby.promote();
    let after = eventually("a push accepted through the new primary", || async {
        let r = app.push_simple(push_body(&creds.device_id, "after")).await;
        (r.status == 200).then(|| r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string())
    })
    .await;
    assert_eq!(device.next_push().await.1["messageId"], after.as_str(), "the device stayed connected");
    app.wait_status(&after, "delivered").await;
    app.wait_status(&before, "delivered").await;
    // Its answer is kept for a second.
    eventually("/readyz to say ready again", || async { (get(c.node(1), "/readyz").await.0 == 200).then_some(()) })
        .await;
}

/// One node cut off from PostgreSQL, the other not (a partition): the cut node refuses
/// pushes with 503 STORE_UNAVAILABLE and `/readyz` says 503, but keeps its devices, which
/// still get pushes made through the other node (over the bus); their acknowledgements wait
/// for the store and land when it is back. The leases it held (scheduler, expiry sweep) go
/// to the other node only after it stopped using them: never both at once.
#[tokio::test]
async fn a_node_cut_off_from_the_store_keeps_its_devices_and_yields_its_leases() {
    if !cluster_suite() {
        return;
    }
    let pg = TestPostgres::start().await.expect("PostgreSQL's programs installed (the cluster suite runs here)");
    let proxy = TcpProxy::start(&pg.host_port()).await;
    let Some(mut c) = Cluster::start_with(0, ClusterOptions { postgres: Some(pg.url()), ..Default::default() }).await
    else {
        return;
    };
    for i in 1..=2 {
        let node = c
            .try_node(i, |cfg| {
                if i == 1 {
                    cfg.store_url = cfg.store_url.as_ref().map(|u| u.replacen(&pg.host_port(), proxy.addr(), 1));
                }
            })
            .await
            .unwrap_or_else(|e| panic!("node-{i}: {e}"));
        c.nodes.push(ClusterNode::InProcess(node));
        if i == 1 {
            // Node 1 takes the leases first.
            eventually("node 1 to hold the scheduler and expiry leases", || async {
                (c.node_info(1).await["leases"].as_array().unwrap().len() >= 2).then_some(())
            })
            .await;
        }
    }
    let app = c.node(2).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(1))).await;
    // Its presence on node 1 is in the store (node 2 reads it there).
    eventually("node 2 to see the device online", || async {
        (app.device_view(&creds.device_id).await["online"] == true).then_some(())
    })
    .await;
    let for_carol = app.push_to_user("carol", "for-carol", "waits for a device").await;

    proxy.cut();
    let r = app.via(c.node(1)).push_simple(push_body(&creds.device_id, "refused")).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (503, Some("STORE_UNAVAILABLE")), "{:?}", r.json());
    eventually("/readyz to say the store is away", || async {
        (get(c.node(1), "/readyz").await.0 == 503).then_some(())
    })
    .await;
    // A bind through node 2 asks node 1 to read the device's pending deliveries, which
    // fails while the store is away (that closed the connection before): read again later.
    assert_eq!(app.device_bind(&creds.on(c.node(2)), "carol").await.status, 200);
    let (_, m) = app.push_to_device(&creds.device_id, "via-2", "over the bus").await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str(), "the device stayed connected to node 1");
    // Its acknowledgement waits for the store; the connection's next read of the store (a
    // second later) must not hold up what comes over the bus meanwhile.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_, m2) = app.push_to_device(&creds.device_id, "via-2-again", "over the bus again").await;
    assert_eq!(device.next_push().await.1["messageId"], m2.as_str(), "not held up by the waiting ack");

    // Until node 2 holds both leases, never a lease held by both.
    let leases = |j: &Value| -> Vec<String> {
        j["leases"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
    };
    eventually("node 2 to hold the leases node 1 lost", || async {
        let (one, two) = (leases(&c.node_info(1).await), leases(&c.node_info(2).await));
        assert!(one.iter().all(|l| !two.contains(l)), "held by both: node 1 {one:?}, node 2 {two:?}");
        (two.len() >= 2).then_some(())
    })
    .await;
    assert!(leases(&c.node_info(1).await).is_empty());

    proxy.heal();
    eventually("node 1 to accept pushes again", || async {
        (app.via(c.node(1)).push_simple(push_body(&creds.device_id, "back")).await.status == 200).then_some(())
    })
    .await;
    let mut got = [device.next_push().await.1, device.next_push().await.1];
    got.sort_by_key(|j| j["msgKey"].as_str().unwrap().to_string());
    assert_eq!((got[0]["msgKey"].as_str(), got[1]["messageId"].as_str()), (Some("back"), Some(for_carol.as_str())));
    // The acknowledgement made while the store was away was kept and applied.
    app.wait_status(&m, "delivered").await;
}

/// Two faults that overlap: node 1 loses the bus (node 2 learns it), a push through node 1
/// for a device on node 2 rings no doorbell, and node 2's looks in the store fail (node 2
/// lost PostgreSQL as well). Node 1's bus comes back and its bus-down lease runs out; then
/// node 2's store comes back. No node is degraded any more, but node 2 still owes the look
/// it could not make: the device gets the push within seconds (it waited for the ordinary
/// resync, an hour here, before).
#[tokio::test]
async fn a_look_that_failed_while_degraded_is_made_once_the_store_is_back() {
    if !cluster_suite() {
        return;
    }
    let pg = TestPostgres::start().await.expect("PostgreSQL's programs installed (the cluster suite runs here)");
    let nats = TestNats::start().await.expect("nats-server installed");
    let (bus_cut, store_cut) =
        (TcpProxy::start(nats.url().trim_start_matches("nats://")).await, TcpProxy::start(&pg.host_port()).await);
    let opts = ClusterOptions { postgres: Some(pg.url()), nats: Some(nats.url()), ..Default::default() };
    let Some(mut c) = Cluster::start_with(0, opts).await else { return };
    for i in 1..=2 {
        let node = c
            .try_node(i, |cfg| {
                if i == 1 {
                    cfg.bus_url = Some(format!("nats://{}", bus_cut.addr()));
                } else {
                    cfg.store_url = cfg.store_url.as_ref().map(|u| u.replacen(&pg.host_port(), store_cut.addr(), 1));
                }
            })
            .await
            .unwrap_or_else(|e| panic!("node-{i}: {e}"));
        c.nodes.push(ClusterNode::InProcess(node));
    }
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    let (_, first) = app.push_to_device(&creds.device_id, "first", "over the bus").await;
    assert_eq!(device.next_push().await.1["messageId"], first.as_str());

    bus_cut.cut();
    bus_connected(&c, 1, false).await;
    eventually("node 2 to learn that node 1 lost the bus", || async {
        (c.node_info(2).await["clusterDegraded"] == true).then_some(())
    })
    .await;
    store_cut.cut();
    let (_, m) = app.push_to_device(&creds.device_id, "k", "no doorbell").await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    bus_cut.heal();
    bus_connected(&c, 1, true).await;
    eventually("node 1's bus-down lease to run out", || async {
        let view = c.node(1).admin("GET", "/admin/v1/cluster", Value::Null).await.json();
        let now = herald_core::now_ms();
        let live = view["leases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"].as_str().unwrap().starts_with("bus-down") && l["expiresAt"].as_i64().unwrap() > now);
        (!live).then_some(())
    })
    .await;
    // Node 1's heartbeats reach node 2 again: nothing keeps node 2 degraded.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let healed = Instant::now();
    store_cut.heal();
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    assert!(healed.elapsed() < Duration::from_secs(5), "came {:?} after the store", healed.elapsed());
}
