//! The Rust device client (`herald-client`) against the `herald` binary: what an app that
//! embeds it sees. The test kit makes its configuration (`TestApp::client_config`).

use std::sync::Arc;

use herald_client::{Client, Config, Event, MemoryStore, Notification, Outcome, State, Store};
use serde_json::{Map, json};
use tokio::sync::mpsc;

use crate::common::*;

fn config(app: &TestApp) -> Config {
    app.client_config()
}

/// The next event, within the kit's wait.
async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(WAIT, events.recv()).await.expect("an event in time").expect("the client runs")
}

async fn until_state(events: &mut mpsc::Receiver<Event>, want: fn(&State) -> bool) -> State {
    loop {
        if let Event::State(s) = next(events).await
            && want(&s)
        {
            return s;
        }
    }
}

async fn notification(events: &mut mpsc::Receiver<Event>) -> Notification {
    loop {
        match next(events).await {
            Event::Notification(n) => return n,
            Event::State(_) => {}
            other => panic!("expected a notification, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_client_registers_receives_reports_binds_and_surfaces_a_revoke() {
    let Some(server) = start_process().await else { return };
    let app = server.create_app().await;
    let store = Arc::new(MemoryStore::default());
    let (client, mut events) = Client::start(config(&app), "install-1", store.clone()).await.unwrap();
    let device_id = client.device_id();
    assert_eq!(store.identity().map(|i| i.device_id), Some(device_id.clone()), "the identity is kept");
    until_state(&mut events, |s| *s == State::Online).await;

    let (task_id, message_id) = app.push_to_device(&device_id, "k-1", "Hello").await;
    let n = notification(&mut events).await;
    assert_eq!((n.message_id.as_str(), n.title.as_str()), (message_id.as_str(), "Hello"));
    assert_eq!(n.payload["taskId"], json!(task_id));
    app.wait_status(&message_id, "delivered").await;
    client.event(&message_id, Outcome::Opened).await.unwrap();
    app.wait_status(&message_id, "opened").await;

    let mut tokens = Map::new();
    tokens.insert("fcm".into(), json!("fcm-token-1"));
    client.report(tokens, Some("1.1")).await.unwrap();
    let view = app.signed("GET", &format!("/v1/devices/{device_id}"), "").await.json();
    let view = &view["resultContent"]["data"];
    assert_eq!((view["appVersion"].as_str(), view["vendorChannels"].clone()), (Some("1.1"), json!(["fcm"])));

    // A bind with the proof the app's server makes; then a push to the user arrives.
    let expires_at = herald_core::now_ms() + 60_000;
    let proof = herald_core::signing::bind_proof(app.bind_secret.as_bytes(), &device_id, "ann", expires_at);
    client.bind("ann", Some((&proof, expires_at))).await.unwrap();
    let wrong = client.bind("bob", Some((&proof, expires_at))).await.unwrap_err();
    assert!(matches!(&wrong, herald_client::Error::Refused { status: 403, code, .. } if code == "BIND_PROOF_INVALID"));
    let to_user = app.push_to_user("ann", "k-2", "For Ann").await;
    assert_eq!(notification(&mut events).await.message_id, to_user);

    let revoke = json!({"messageId": "k-2", "targetId": "ann"}).to_string();
    assert_eq!(app.signed("POST", "/v1/push/revoke", &revoke).await.status, 200);
    loop {
        match next(&mut events).await {
            Event::Revoke { message_id, .. } => break assert_eq!(message_id, to_user),
            Event::State(_) => {}
            other => panic!("expected the revoke, got {other:?}"),
        }
    }
    client.unbind().await.unwrap();
    client.stop().await;
}

#[tokio::test]
async fn a_message_the_app_already_has_is_dropped_when_the_server_delivers_it_again() {
    let Some(server) = start_process().await else { return };
    let app = server.create_app().await;
    let store = Arc::new(MemoryStore::default());
    // Registered by the client; then a plain MQTT connection of the same device takes the
    // first push without acknowledging it, as a client does that gave it to the app and
    // was killed before its PUBACK.
    let (client, mut events) = Client::start(config(&app), "install-2", store.clone()).await.unwrap();
    let identity = store.identity().unwrap();
    client.stop().await;
    while events.recv().await.is_some() {}
    let creds = Creds {
        app_id: app.app_id.clone(),
        device_id: identity.device_id.clone(),
        token: identity.device_token.clone(),
        mqtt: app.mqtt.clone(),
        http: app.http.clone(),
    };
    let raw = TestDevice::connect_manual_ack(&creds).await;
    let (_, first) = app.push_to_device(&identity.device_id, "k-1", "First").await;
    let mut raw = raw;
    let (publish, _) = raw.next_push().await;
    assert!(!publish.dup);
    raw.stop();
    store.save_seen(std::slice::from_ref(&first)).unwrap();

    let (client, mut events) = Client::start(config(&app), "install-2", store.clone()).await.unwrap();
    assert_eq!(client.device_id(), identity.device_id, "the stored identity, not a new registration");
    until_state(&mut events, |s| *s == State::Online).await;
    // Delivered again (with DUP), acknowledged, and not given to the app twice.
    app.wait_status(&first, "delivered").await;
    let (_, second) = app.push_to_device(&identity.device_id, "k-2", "Second").await;
    assert_eq!(notification(&mut events).await.message_id, second, "the repeat of {first} was dropped");
    client.stop().await;
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_string()
}

#[tokio::test]
async fn the_client_reconnects_with_back_off_after_the_server_restarts_and_loses_nothing() {
    let Some(mut server) = start_process().await else { return };
    let app = server.create_app().await;
    // Fixed addresses in front of the node (as a load balancer), which restarts on new ports.
    let (http, mqtt) = (TcpProxy::start(&host_port(&app.http)).await, TcpProxy::start(&app.mqtt).await);
    let mut c = config(&app);
    (c.http_url, c.mqtt_url) = (format!("http://{}", http.addr()), format!("tcp://{}", mqtt.addr()));
    let (client, mut events) = Client::start(c, "install-3", Arc::new(MemoryStore::default())).await.unwrap();
    until_state(&mut events, |s| *s == State::Online).await;
    let device_id = client.device_id();

    server.kill9();
    // Not reached while the node is down: each wait is drawn from a range twice as long,
    // up to backoff_max (2 s).
    let mut waits = Vec::new();
    while waits.len() < 4 {
        if let State::Offline { retry_in, .. } = until_state(&mut events, |s| matches!(s, State::Offline { .. })).await
        {
            waits.push(retry_in);
        }
    }
    // Attempt n waits between half and all of 200 ms * 2^n (the first after a connection
    // that was online starts again at 200 ms).
    let ranges = [(100, 200), (200, 400), (400, 800), (800, 1600)];
    for (wait, (low, high)) in waits.iter().zip(ranges) {
        assert!((low..=high).contains(&wait.as_millis()), "back-off {waits:?}");
    }
    let server = server.restart().await;
    let app = app.via(&server);
    http.retarget(&host_port(&server.http));
    mqtt.retarget(&server.mqtt);
    // Pushed while the device is still away: it arrives once it is back.
    let (_, message_id) = app.push_to_device(&device_id, "k-1", "While away").await;
    until_state(&mut events, |s| *s == State::Online).await;
    let n = notification(&mut events).await;
    assert_eq!((n.message_id.as_str(), n.title.as_str()), (message_id.as_str(), "While away"));
    client.stop().await;
}

/// Over HTTPS and TLS trusting a private CA, then over MQTT-over-WebSocket on the HTTPS
/// listener (what a network that lets only HTTPS through leaves).
#[tokio::test]
async fn the_client_speaks_tls_and_websocket() {
    use rustls_pki_types::pem::PemObject;
    let Some(crate::tls::TlsNode { node, ca_file, dir: _dir, .. }) = crate::tls::tls_node("").await else { return };
    let app = node.create_app().await;
    let port = |name: &str| node.listener(name).unwrap().rsplit(':').next().unwrap().to_string();
    let (https, mqtts) = (format!("https://localhost:{}", port("https")), format!("tls://localhost:{}", port("mqtts")));
    let roots: Vec<_> =
        rustls_pki_types::CertificateDer::pem_file_iter(&ca_file).unwrap().map(Result::unwrap).collect();
    for (mqtt, install) in [(mqtts, "tls-device"), (format!("wss://localhost:{}/mqtt", port("https")), "wss-device")] {
        let mut c = config(&app);
        (c.http_url, c.mqtt_url, c.extra_roots) = (https.clone(), mqtt.clone(), roots.clone());
        let (client, mut events) = Client::start(c, install, Arc::new(MemoryStore::default())).await.unwrap();
        until_state(&mut events, |s| *s == State::Online).await;
        let (_, message_id) = app.push_to_device(&client.device_id(), "k", install).await;
        assert_eq!(notification(&mut events).await.message_id, message_id, "over {mqtt}");
        client.stop().await;
    }
    // Without the CA the certificate is not trusted: registration fails, saying why.
    let mut c = config(&app);
    c.http_url = https;
    let Err(e) = Client::start(c, "untrusted", Arc::new(MemoryStore::default())).await else { panic!("trusted") };
    assert!(e.to_string().contains("certificate"), "{e}");
}

/// The install registered again elsewhere with this device's token (its data restored on
/// another phone): the token this client holds is refused at CONNECT, registering again
/// with it is refused too, and the client stops, saying so, instead of retrying forever.
#[tokio::test]
async fn a_client_whose_install_was_taken_over_stops_refused() {
    let Some(server) = start_process().await else { return };
    let app = server.create_app().await;
    let store = Arc::new(MemoryStore::default());
    let (client, mut events) = Client::start(config(&app), "install-4", store.clone()).await.unwrap();
    until_state(&mut events, |s| *s == State::Online).await;
    client.stop().await;
    let old = store.identity().unwrap();
    let bearer = vec![("authorization".to_string(), format!("Bearer {}", old.device_token))];
    let taken = app.register_raw_with(json!({"platform": "android", "installId": "install-4"}), &bearer).await;
    assert_eq!(taken.status, 200, "{:?}", taken.json());

    let (_client, mut events) = Client::start(config(&app), "install-4", store.clone()).await.unwrap();
    let State::Refused { reason } = until_state(&mut events, |s| matches!(s, State::Refused { .. })).await else {
        unreachable!()
    };
    assert!(reason.contains("DEVICE_ALREADY_REGISTERED"), "{reason}");
    assert_eq!(store.identity().unwrap(), old, "the stored identity is left as it was");
}
