//! Cluster mode: nodes sharing one PostgreSQL schema and one NATS, real MQTT devices on
//! each. Nodes run in the test process; the tests that kill a node run them as processes.
//!
//! Needs `HERALD_TEST_POSTGRES_URL` and `HERALD_TEST_NATS_URL` (`.ci/run` sets both). Unset:
//! each test prints that it was skipped and why. Set and the service down: the test fails.
//! [`faults`]: the cluster under NATS and PostgreSQL failures.

mod faults;

use std::time::Duration;

use herald_testkit::*;
use serde_json::{Value, json};

fn processes() -> ClusterOptions {
    ClusterOptions { processes: Some(herald_bin!().to_path_buf()), ..ClusterOptions::default() }
}

#[tokio::test]
async fn pushes_through_any_node_reach_devices_on_every_node() {
    let Some(c) = Cluster::start(3).await else { return };
    let app = c.node(1).create_app().await;
    assert_eq!(c.node_info(1).await["bus"], "nats");
    let d3 = app.register("on-3").await;
    let mut dev3 = TestDevice::connect(&d3.on(c.node(3))).await;
    // Through node 1 to a device held by node 3.
    let (_, m) = app.push_to_device(&d3.device_id, "k1", "via one").await;
    let (publish, body) = dev3.next_push().await;
    assert_eq!((body["messageId"].as_str(), publish.dup), (Some(m.as_str()), false));
    app.wait_status(&m, "delivered").await;

    // A user with a device on each node, pushed through node 2.
    let mut devices = Vec::new();
    for i in 1..=3 {
        let creds = app.register(&format!("alice-{i}")).await;
        assert_eq!(app.device_bind(&creds, "alice").await.status, 200);
        devices.push(TestDevice::connect(&creds.on(c.node(i))).await);
    }
    let m = app.via(c.node(2)).push_to_user("alice", "k2", "to alice").await;
    for d in &mut devices {
        assert_eq!(d.next_push().await.1["messageId"], m.as_str());
    }
    let info: Vec<u64> = futures_util::future::join_all((1..=3).map(|i| c.node_info(i)))
        .await
        .iter()
        .map(|j| j["connections"].as_u64().unwrap())
        .collect();
    assert_eq!(info, vec![1, 1, 2]);
}

#[tokio::test]
async fn a_bind_on_one_node_hands_the_users_messages_to_the_device_on_another() {
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.node(1).create_app().await;
    let m = app.push_to_user("bob", "k", "before bind").await;
    let creds = app.register("bob-phone").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    // The bind goes through node 1; the connection is on node 2.
    assert_eq!(app.device_bind(&creds, "bob").await.status, 200);
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
}

/// A node that finds NATS at start never counts itself without the bus: it would tell the
/// whole cluster to resync every second for three (a `bus-down` lease), as it did when the
/// client's "connected" event was handled after the first look (the test below then took
/// 0.8 s: delivered by that fast resync, not the ordinary one).
#[tokio::test]
async fn nodes_that_find_the_bus_at_start_never_report_it_lost() {
    for _ in 0..3 {
        let Some(c) = Cluster::start(2).await else { return };
        let view = c.node(1).admin("GET", "/admin/v1/cluster", Value::Null).await.json();
        let lost: Vec<&Value> = view["leases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["name"].as_str().unwrap().starts_with("bus-down"))
            .collect();
        assert!(lost.is_empty(), "{lost:?}");
        for i in 1..=2 {
            let info = c.node_info(i).await;
            assert_eq!((info["busDownSince"].clone(), info["clusterDegraded"].clone()), (Value::Null, json!(false)));
            assert!(!c.node(i).log_contains("cluster degraded"), "node {i}");
        }
    }
}

#[tokio::test]
async fn a_lost_bus_message_costs_latency_not_the_message() {
    let Some(c) = Cluster::start_with(2, ClusterOptions { deaf: true, ..Default::default() }).await else { return };
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    let started = std::time::Instant::now();
    let (_, m) = app.push_to_device(&creds.device_id, "k", "unannounced").await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    // Found by node 2's resync: deliveries older than 1 s, looked for every second.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "took {took:?}");
    assert!(c.node(2).log_contains("resync"));
}

#[tokio::test]
async fn a_push_racing_a_connect_on_another_node_is_never_stranded() {
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.node(1).create_app().await;
    for round in 0..20 {
        let creds = app.register(&format!("racer-{round}")).await;
        let on2 = creds.on(c.node(2));
        let (device, pushed) =
            tokio::join!(TestDevice::connect(&on2), app.push_to_device(&creds.device_id, "k", "race"));
        let mut device = device;
        assert_eq!(device.next_push().await.1["messageId"], pushed.1.as_str(), "round {round}");
        device.stop();
    }
}

#[tokio::test]
async fn a_revoke_through_one_node_recalls_a_message_from_a_device_on_another() {
    let Some(c) = Cluster::start(3).await else { return };
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "to recall").await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    app.wait_status(&m, "delivered").await;
    let r = app
        .via(c.node(3))
        .signed("POST", "/v1/push/revoke", &json!({"messageId": "k", "targetId": creds.device_id}).to_string())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (_, control) = device.next_push().await;
    assert_eq!((control["type"].as_str(), control["messageId"].as_str()), (Some("revoke"), Some(m.as_str())));
}

#[tokio::test]
async fn a_broadcast_through_one_node_reaches_devices_on_every_node() {
    let Some(c) = Cluster::start(3).await else { return };
    let app = c.node(1).create_app().await;
    let t = json!({"templateName": "news", "title": "t", "content": "c"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    let mut devices = Vec::new();
    for i in 1..=3 {
        let creds = app.register(&format!("d{i}")).await;
        devices.push(TestDevice::connect(&creds.on(c.node(i))).await);
    }
    let body =
        json!({"deliveryType": 1, "templateName": "news", "msgkey": "b", "pushStatus": 1, "expiredSeconds": 300});
    let r = app.signed("POST", "/v1/push/broadcast", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let m = r.json()["pushResult"]["messageId"].as_str().unwrap().to_string();
    for d in &mut devices {
        assert_eq!(d.next_push().await.1["messageId"], m.as_str());
    }
}

#[tokio::test]
async fn a_scheduled_push_fires_exactly_once_in_a_two_node_cluster() {
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.node(1).create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    let body = json!({"deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "k"}, "title": "t", "content": "c",
        "expiredSeconds": 300, "strategyType": 1, "strategyContent": {"fixedTime": herald_core::now_ms() + 1_000}});
    let r = app.push_simple(body).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(device.next_push().await.1["msgKey"], "k");
    assert!(device.quiet_for(Duration::from_millis(2_500)).await, "one firing, not one per node");
    let holders: Vec<Value> = futures_util::future::join_all((1..=2).map(|i| c.node_info(i))).await;
    let held = holders.iter().filter(|j| j["leases"].as_array().unwrap().iter().any(|l| l == "scheduler")).count();
    assert_eq!(held, 1, "one node holds the scheduler lease: {holders:?}");
}

#[tokio::test]
async fn a_device_moving_to_another_node_takes_over_and_the_old_connection_closes() {
    let Some(c) = Cluster::start(3).await else { return };
    let app = c.node(1).create_app().await;
    let creds = app.register("mover").await;
    let mut old = TestDevice::connect(&creds.on(c.node(1))).await;
    let mut new = TestDevice::connect(&creds.on(c.node(2))).await;
    let why = old.closed().await;
    assert!(!why.is_empty());
    eventually("node 1 to log that node 2 took the connection over", || async {
        c.node(1).log_contains("taken over").then_some(())
    })
    .await;
    let (_, m) = app.via(c.node(3)).push_to_device(&creds.device_id, "k", "after move").await;
    assert_eq!(new.next_push().await.1["messageId"], m.as_str());
}

#[tokio::test]
async fn after_kill9_of_a_node_its_devices_get_every_message_through_the_others() {
    let Some(mut c) = Cluster::start_with(3, processes()).await else { return };
    let app = c.node(2).create_app().await;
    let creds = app.register("survivor").await;
    let mut device = TestDevice::connect_manual_ack(&creds.on(c.node(1))).await;
    let (_, unacked) = app.push_to_device(&creds.device_id, "k1", "never acked").await;
    let (first, _) = device.next_push().await;
    assert!(!first.dup);
    c.nodes[0].kill9();
    device.closed().await;
    // Accepted while the device has no connection anywhere.
    let (_, while_down) = app.push_to_device(&creds.device_id, "k2", "while node 1 is dead").await;
    let mut device = TestDevice::connect(&creds.on(c.node(3))).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (publish, body) = device.next_push().await;
        got.push((body["messageId"].as_str().unwrap().to_string(), publish.dup));
    }
    got.sort();
    let mut want = vec![(unacked.clone(), true), (while_down.clone(), true)];
    want.sort();
    // Node 1 died without a trace of what it wrote: everything pending comes with DUP.
    assert_eq!(got, want);
    app.wait_status(&unacked, "delivered").await;
    app.wait_status(&while_down, "delivered").await;
}

#[tokio::test]
async fn the_expiry_lease_moves_to_another_node_when_its_holder_dies() {
    let Some(mut c) = Cluster::start_with(3, processes()).await else { return };
    let holders = |infos: &[Value]| -> Vec<usize> {
        infos
            .iter()
            .enumerate()
            .filter(|(_, j)| j["leases"].as_array().unwrap().iter().any(|l| l == "expiry-sweep"))
            .map(|(i, _)| i + 1)
            .collect()
    };
    let holder = eventually("one node to hold the expiry lease", || async {
        let infos = futures_util::future::join_all((1..=3).map(|i| c.node_info(i))).await;
        let h = holders(&infos);
        (h.len() == 1).then(|| h[0])
    })
    .await;
    let killed_at = std::time::Instant::now();
    c.nodes[holder - 1].kill9();
    let alive: Vec<usize> = (1..=3).filter(|i| *i != holder).collect();
    let next = eventually("another node to take the expiry lease", || async {
        let infos = futures_util::future::join_all(alive.iter().map(|i| c.node_info(*i))).await;
        let h = holders(&infos);
        (h.len() == 1).then(|| alive[h[0] - 1])
    })
    .await;
    assert_ne!(next, holder);
    // Lease 3 s (three sweeps of 1 s), then up to one sweep to notice.
    assert!(killed_at.elapsed() < Duration::from_secs(6), "took {:?}", killed_at.elapsed());
}

#[tokio::test]
async fn nonces_and_key_revocations_hold_across_nodes() {
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.node(1).create_app().await;
    // One signed request, sent to node 1 and then replayed to node 2.
    let headers =
        herald_core::signing::sign_hmac(&app.key_id, &app.secret, "GET", "/v1/tasks/none", b"", herald_core::now_ms());
    let first = c.node(1).call("GET", "/v1/tasks/none", &headers, bytes::Bytes::new()).await;
    assert_eq!(first.json()["resultCode"], "TASK_NOT_EXIST");
    let replay = c.node(2).call("GET", "/v1/tasks/none", &headers, bytes::Bytes::new()).await;
    assert_eq!((replay.status, replay.json()["resultCode"].as_str()), (401, Some("NONCE_REUSED")));
    // Node 2 has the key cached; a revocation on node 1 reaches it over the bus at once
    // (the cache alone would trust the key for key_cache_secs).
    assert_eq!(app.via(c.node(2)).task("none").await.json()["resultCode"], "TASK_NOT_EXIST");
    let r = c.node(1).admin("DELETE", &format!("/admin/v1/apps/{}/keys/{}", app.app_id, app.key_id), Value::Null).await;
    assert_eq!(r.status, 200);
    eventually("node 2 to refuse the revoked key", || async {
        (app.via(c.node(2)).task("none").await.json()["resultCode"] == "API_KEY_INVALID").then_some(())
    })
    .await;
}

/// A device's `online` is the cluster's, not the answering node's: the store knows which
/// node holds the connection.
#[tokio::test]
async fn any_node_answers_whether_a_device_is_online_anywhere() {
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.node(1).create_app().await;
    let creds = app.register("phone").await;
    assert_eq!(app.device_bind(&creds, "ann").await.status, 200);
    assert_eq!(app.device_view(&creds.device_id).await["online"], false);
    let device = TestDevice::connect(&creds.on(c.node(2))).await;
    // Asked through node 1; the connection is on node 2.
    assert_eq!(app.device_view(&creds.device_id).await["online"], true);
    let listed = app.signed("GET", "/v1/users/ann/devices", "").await.json();
    assert_eq!(listed["resultContent"]["data"]["devices"][0]["online"], true, "{listed}");
    assert_eq!(app.via(c.node(2)).device_view(&creds.device_id).await["online"], true);
    device.stop();
    eventually("the device to be offline once its connection closed", || async {
        (app.device_view(&creds.device_id).await["online"] == false).then_some(())
    })
    .await;
}

/// A node whose master key is not the one the shared store's secrets are sealed with
/// refuses to start, saying why (it used to start, and every signed call failed later).
#[tokio::test]
async fn a_node_with_another_master_key_refuses_to_start() {
    let Some(c) = Cluster::start(1).await else { return };
    let app = c.node(1).create_app().await;
    let other = herald_core::crypto::b64url(&herald_core::crypto::random_bytes::<32>());
    let refused = c.try_node(2, |cfg| cfg.master_key = Some(other)).await.err().expect("node 2 must not start");
    assert!(refused.contains("master key differs"), "{refused}");
    // The node with the right key serves on.
    let second = c.try_node(2, |_| {}).await.expect("node 2 with the cluster's key");
    assert_eq!(app.via(&second).task("none").await.json()["resultCode"], "TASK_NOT_EXIST");
}

/// A broadcast whose bus event never reaches a node that stays connected to NATS still
/// reaches that node's devices: the node's resync finds live broadcasts its connected
/// devices have not acknowledged (it used to wait for their next connect).
#[tokio::test]
async fn a_lost_broadcast_event_costs_latency_not_the_broadcast() {
    let Some(c) = Cluster::start_with(2, ClusterOptions { deaf: true, ..Default::default() }).await else { return };
    let app = c.node(1).create_app().await;
    let t = json!({"templateName": "news", "title": "t", "content": "c"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    let creds = app.register("far").await;
    let mut device = TestDevice::connect(&creds.on(c.node(2))).await;
    let started = std::time::Instant::now();
    let body =
        json!({"deliveryType": 1, "templateName": "news", "msgkey": "b", "pushStatus": 1, "expiredSeconds": 300});
    let r = app.signed("POST", "/v1/push/broadcast", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let m = r.json()["pushResult"]["messageId"].as_str().unwrap().to_string();
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "took {took:?}");
    // Acknowledged: not sent again by the next resyncs.
    assert!(device.quiet_for(Duration::from_millis(2_500)).await);
}

/// Both nodes claim vendor sends from the one outbox (claims under a lease, re-checked on
/// PostgreSQL): every notification reaches the fake APNs once, whichever node sent it.
#[tokio::test]
async fn a_two_node_cluster_sends_each_vendor_message_once() {
    use herald_testkit::fakes::{self, FakeVendor, TestCa, Vendor};
    let Some(mut c) = Cluster::start(0).await else { return };
    let ca = TestCa::new();
    let (channel, expect) = fakes::apns_token_channel("production");
    let apns = FakeVendor::start(Vendor::Apns, &ca, expect, false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    for i in 1..=2 {
        let node = c
            .try_node(i, |cfg| {
                cfg.channels.apns_url = apns.url();
                cfg.channels.apns_sandbox_url = apns.url();
                cfg.channels.ca_file = Some(ca_file.clone());
                cfg.channels.poll_ms = 50;
                cfg.channels.claim_batch = 16;
            })
            .await
            .unwrap_or_else(|e| panic!("node-{i}: {e}"));
        c.nodes.push(ClusterNode::InProcess(node));
    }
    let app = c.node(1).create_app().await;
    assert_eq!(app.signed("PUT", "/v1/channels/apns", &channel.to_string()).await.status, 200);
    let t = json!({"templateName": "news", "title": "t", "content": "c"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    let mut devices = Vec::new();
    for i in 0..120 {
        let body =
            json!({"platform": "ios", "installId": format!("i{i}"), "vendorTokens": {"apns": format!("{i:064x}")}});
        let r = app.via(c.node(1 + i % 2)).register_raw(body).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        devices.push(r.json()["deviceId"].as_str().unwrap().to_string());
    }
    // A broadcast through node 2 and simple pushes through both nodes.
    let body =
        json!({"deliveryType": 2, "templateName": "news", "msgkey": "b", "pushStatus": 1, "expiredSeconds": 300});
    assert_eq!(app.via(c.node(2)).signed("POST", "/v1/push/broadcast", &body.to_string()).await.status, 200);
    for (i, device) in devices.iter().take(40).enumerate() {
        let body = json!({"deliveryType": 2, "targetMsgkey": {device.clone(): format!("k{i}")},
            "title": "Hello", "content": "World", "expiredSeconds": 300});
        assert_eq!(app.via(c.node(1 + i % 2)).push_simple(body).await.status, 200);
    }
    let want = 120 + 40;
    let deadline = tokio::time::Instant::now() + WAIT;
    while apns.received().len() < want {
        assert!(tokio::time::Instant::now() < deadline, "{} of {want} reached APNs", apns.received().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = apns.received();
    let distinct: std::collections::HashSet<(String, Value)> =
        got.iter().map(|r| (r.path.clone(), r.json()["herald"]["messageId"].clone())).collect();
    assert_eq!((got.len(), distinct.len()), (want, want), "each notification once");
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
    // Both nodes took part (each claims 16 at a time, every 50 ms).
    let mut per_node = Vec::new();
    for i in 1..=2 {
        let m = c.node(i).call("GET", "/metrics", &[], Default::default()).await;
        let text = String::from_utf8_lossy(&m.body).to_string();
        let sent: usize = text
            .lines()
            .filter(|l| l.starts_with("herald_vendor_sends_total") && l.contains("outcome=\"sent\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
            .sum();
        per_node.push(sent);
    }
    assert_eq!(per_node.iter().sum::<usize>(), want, "{per_node:?}");
    assert!(per_node.iter().all(|n| *n > 0), "both nodes sent: {per_node:?}");
}

/// Two nodes, each counting the journal and posting receipts when it holds the lease or
/// the app's claim: each receipt reaches the webhook once, and the counts add up once.
#[tokio::test]
async fn two_nodes_post_each_receipt_once_and_count_each_change_once() {
    let receiver = Receiver::start(0).await;
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.node(1).create_app().await;
    let r = app.signed("PUT", "/v1/receipts", &json!({"url": receiver.url()}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (d1, d2) = (app.register("on-1").await, app.register("on-2").await);
    let _dev1 = TestDevice::connect(&d1.on(c.node(1))).await;
    let _dev2 = TestDevice::connect(&d2.on(c.node(2))).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        for (node, d) in [(1, &d1), (2, &d2)] {
            let (_, m) = app.via(c.node(node)).push_to_device(&d.device_id, &format!("k{i}"), "x").await;
            ids.push(m);
        }
    }
    for m in &ids {
        app.wait_status(m, "delivered").await;
    }
    eventually("20 receipts", || async { (receiver.accepted().len() >= 20).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got: Vec<String> =
        receiver.accepted().iter().map(|r| r["messageId"].as_str().unwrap().to_owned()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each delivered receipt once");
    let now = herald_core::now_ms();
    let q = format!("/v1/analytics/core?startTime={}&endTime={}", now - 3_600_000, now + 60_000);
    let core = app.via(c.node(2)).signed("GET", &q, "").await.json();
    let data = &core["resultContent"]["data"];
    assert_eq!((data["pushTotalNum"].as_i64(), data["arrivalNum"].as_i64()), (Some(20), Some(20)), "{core}");
}
