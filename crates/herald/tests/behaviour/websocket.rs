//! MQTT over WebSocket (`/mqtt` on the HTTP and HTTPS listeners), through clients no one here
//! wrote: MQTT.js (npm) over WebSocket with TLS, paho-mqtt (PyPI) over plain WebSocket, each
//! receiving a push and acknowledging it. The clients come from `tests/clients`, installed by
//! `.ci/run`: `HERALD_TEST_CLIENTS` names that directory (with `node_modules`) and
//! `HERALD_TEST_PYTHON` a Python with paho-mqtt. Unset: skipped, saying so; set and broken:
//! failed. Run on SQLite only (the store plays no part).

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use crate::tls::{TlsNode, port, tls_node};

/// Runs `program args` and returns its first line of output, parsed: the delivery it got.
async fn first_delivery(program: &PathBuf, args: &[&str]) -> serde_json::Value {
    output_lines(program, args).await.swap_remove(0)
}

/// Runs `program args` and returns its lines of output, each parsed as JSON.
async fn output_lines(program: &PathBuf, args: &[&str]) -> Vec<serde_json::Value> {
    let out = tokio::time::timeout(Duration::from_secs(30), tokio::process::Command::new(program).args(args).output())
        .await
        .expect("the client ends in time")
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}: {stderr}{stdout}", program.display());
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {stdout}"))).collect();
    assert!(!lines.is_empty(), "{} printed nothing: {stderr}", program.display());
    lines
}

/// Pushes to a new device of a new app; the device's credentials and the message id.
async fn pending_push(node: &TestProcess, title: &str) -> (TestApp, Creds, String) {
    let app = node.create_app().await;
    let device = app.register(title).await;
    let (_, message_id) = app.push_to_device(&device.device_id, title, title).await;
    (app, device, message_id)
}

#[tokio::test]
async fn mqtt_js_over_websocket_with_tls_gets_its_push_and_acknowledges_it() {
    let Some(clients) = tool("HERALD_TEST_CLIENTS") else { return };
    let Some(TlsNode { node, ca_file, dir: _dir, .. }) = tls_node("").await else { return };
    let (app, device, message_id) = pending_push(&node, "over wss").await;
    let url = format!("wss://localhost:{}/mqtt", port(&node.listener("https").unwrap()));
    let script = clients.join("mqttjs_receive.js");
    let topic = format!("push/{}", device.device_id);
    let args = [
        script.to_str().unwrap(),
        &url,
        &device.device_id,
        &device.app_id,
        &device.token,
        &topic,
        ca_file.to_str().unwrap(),
    ];
    let payload = first_delivery(&PathBuf::from("node"), &args).await;
    assert_eq!((payload["messageId"].as_str(), payload["title"].as_str()), (Some(&*message_id), Some("over wss")));
    app.wait_status(&message_id, "delivered").await;
}

#[tokio::test]
async fn paho_with_mqtt5_and_over_websocket_gets_its_push_and_acknowledges_it() {
    let Some(python) = tool("HERALD_TEST_PYTHON") else { return };
    let Some(clients) = tool("HERALD_TEST_CLIENTS") else { return };
    let Some(TlsNode { node, ca_file, dir: _dir, .. }) = tls_node("").await else { return };
    let (app, device, message_id) = pending_push(&node, "over ws").await;
    let script = clients.join("paho_receive.py");
    let topic = format!("push/{}", device.device_id);
    let plain = format!("ws://127.0.0.1:{}/mqtt", port(&node.http));
    // MQTT 5 over plain WebSocket: the delivery's properties come with it.
    let args = [script.to_str().unwrap(), "--mqtt5", &plain, &device.device_id, &device.app_id, &device.token, &topic];
    let lines = output_lines(&python, &args).await;
    assert_eq!(lines[0]["messageId"].as_str(), Some(&*message_id));
    let props = lines.get(1).unwrap_or_else(|| panic!("no properties line: {lines:?}"));
    assert_eq!(props["userProperties"]["messageId"].as_str(), Some(&*message_id), "{props}");
    assert_eq!(props["userProperties"]["type"].as_str(), Some("notification"), "{props}");
    let expiry = props["messageExpiryInterval"].as_u64().unwrap_or_default();
    assert!((1..=300).contains(&expiry), "{props}");
    app.wait_status(&message_id, "delivered").await;

    // MQTT 3.1.1 over TLS (wss) on the HTTPS listener.
    let (app, device, message_id) = pending_push(&node, "over wss").await;
    let secure = format!("wss://localhost:{}/mqtt", port(&node.listener("https").unwrap()));
    let topic = format!("push/{}", device.device_id);
    let ca = ca_file.to_str().unwrap();
    let args = [script.to_str().unwrap(), &secure, &device.device_id, &device.app_id, &device.token, &topic, ca];
    let payload = first_delivery(&python, &args).await;
    assert_eq!(payload["messageId"].as_str(), Some(&*message_id));
    app.wait_status(&message_id, "delivered").await;
}

#[tokio::test]
async fn a_plain_get_of_mqtt_is_refused_in_our_words() {
    let Some(server) = start_server().await else { return };
    let r = server.call("GET", "/mqtt", &[], Default::default()).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (400, Some("INVALID_PARAM")), "{:?}", r.json());
    assert!(r.json()["resultMessage"].as_str().unwrap().contains("WebSocket"));
}
