//! TLS listeners, through clients no one here wrote: `mosquitto_sub` over MQTT with TLS,
//! curl over HTTPS; a certificate replaced under a running node. Run on SQLite only (the
//! store plays no part).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use herald_testkit::fakes::TestCa;
use herald_testkit::{ADMIN_TOKEN, Backend, TestProcess, eventually, herald_bin};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A node with TLS on (port 0 everywhere), the CA that signed its certificate, and the
/// directory of its certificate files and of the CA's PEM.
pub struct TlsNode {
    pub node: TestProcess,
    pub ca: TestCa,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

/// `None` on the PostgreSQL run of the suite: the store plays no part here. `config` is the
/// node's configuration file.
pub async fn tls_node(config: &str) -> Option<TlsNode> {
    if crate::BACKEND != Backend::Sqlite {
        return None;
    }
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    let (cert, key) = write_pair(&ca, dir.path(), "first");
    let config_file = dir.path().join("herald.toml");
    // `{dir}` in the configuration is this directory (the CA's PEM is `{dir}/test-ca.pem`).
    std::fs::write(&config_file, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let args = [
        "--config",
        config_file.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--mqtts-addr",
        "127.0.0.1:0",
        "--https-addr",
        "127.0.0.1:0",
    ];
    let node = TestProcess::start_with(herald_bin!(), Backend::Sqlite, &args).await?;
    Some(TlsNode { node, ca, dir, ca_file })
}

fn write_pair(ca: &TestCa, dir: &Path, label: &str) -> (PathBuf, PathBuf) {
    let (chain, key) = ca.server_pem(label);
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, chain).unwrap();
    std::fs::write(&key_file, key).unwrap();
    (cert_file, key_file)
}

pub fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

/// curl over HTTPS to `localhost`, trusting only the test CA: (status, body).
pub async fn curl(ca_file: &Path, url: &str, extra: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", ca_file.to_str().unwrap(), "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_string(), format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
}

/// The leaf certificate the listener at `addr` presents to a client trusting `ca`.
async fn presented_leaf(ca: &TestCa, addr: &str) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the node");
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

fn leaf_of(chain_file: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(chain_file).unwrap().next().unwrap().unwrap()
}

/// mosquitto_sub speaking `version` (`mqttv311` or `mqttv5`) over TLS: it gets its push
/// and acknowledges it; then mosquitto_pub reports it opened. With MQTT 5 it prints the delivery's Message Expiry Interval and
/// user properties before the payload (tab-separated).
async fn mosquitto_sub_over_tls(version: &str) {
    let Some(TlsNode { node, ca_file, dir: _dir, .. }) = tls_node("").await else { return };
    let app = node.create_app().await;
    let device = app.register("tls-device").await;
    let (task_id, message_id) = app.push_to_device(&device.device_id, "over-tls", "Hello over TLS").await;

    let mqtts = node.listener("mqtts").expect("an MQTT over TLS listener");
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", port(&mqtts), "--cafile", ca_file.to_str().unwrap(), "-V", version])
        .args(["-i", &device.device_id, "-u", &device.app_id, "-P", &device.token])
        .args(["-t", &format!("push/{}", device.device_id), "-q", "1"])
        .args(if version == "mqttv5" { &["-F", "%E\t%P\t%p"][..] } else { &[] })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto_sub runs (Debian mosquitto-clients)");
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a delivery over TLS in time")
        .unwrap()
        .expect("mosquitto_sub printed the delivery");
    let json = if version == "mqttv5" {
        let mut fields = line.splitn(3, '\t');
        let (expiry, user, json) = (fields.next().unwrap(), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let expiry: u32 = expiry.parse().unwrap_or_else(|_| panic!("no Message Expiry Interval: {line}"));
        assert!((1..=300).contains(&expiry), "{line}");
        assert!(user.contains(&format!("messageId:{message_id}")) && user.contains("type:notification"), "{line}");
        json
    } else {
        &line
    };
    let payload: serde_json::Value = serde_json::from_str(json).expect("the payload is JSON");
    assert_eq!(
        (payload["messageId"].as_str(), payload["title"].as_str()),
        (Some(&*message_id), Some("Hello over TLS"))
    );
    // mosquitto_sub's PUBACK made it `delivered`.
    app.wait_status(&message_id, "delivered").await;
    let task = app.task(&task_id).await.json();
    assert_eq!(task["resultContent"]["data"]["counts"]["delivered"], 1, "{task}");
    let _ = sub.kill().await;

    // mosquitto_pub, same version, reports the notification opened (QoS 1: it waits for
    // the PUBACK and fails without it).
    let event = serde_json::json!({"messageId": message_id, "event": "opened"}).to_string();
    let published = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", port(&mqtts), "--cafile", ca_file.to_str().unwrap(), "-V", version])
        .args(["-i", &device.device_id, "-u", &device.app_id, "-P", &device.token])
        .args(["-t", &format!("events/{}", device.device_id), "-q", "1", "-m", &event])
        .output()
        .await
        .expect("mosquitto_pub runs (Debian mosquitto-clients)");
    assert!(published.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&published.stderr));
    app.wait_status(&message_id, "opened").await;
}

#[tokio::test]
async fn a_device_on_mqtt_over_tls_gets_its_push_and_acknowledges_it() {
    mosquitto_sub_over_tls("mqttv311").await;
}

#[tokio::test]
async fn a_device_on_mqtt5_over_tls_gets_its_push_and_acknowledges_it() {
    mosquitto_sub_over_tls("mqttv5").await;
}

#[tokio::test]
async fn https_serves_the_api_with_tls_1_2_and_1_3() {
    let Some(TlsNode { node, dir, ca_file, .. }) = tls_node("").await else { return };
    let https = format!("https://localhost:{}", port(&node.listener("https").expect("an HTTPS listener")));
    for version in [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3", "--tls-max", "1.3"]] {
        let (status, body) = curl(&ca_file, &format!("{https}/healthz"), &version).await;
        assert_eq!(status, "200", "{version:?}: {body}");
    }
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let (status, body) = curl(
        &ca_file,
        &format!("{https}/admin/v1/apps"),
        &["-H", &auth, "-H", "Content-Type: application/json", "-d", r#"{"name":"over https"}"#],
    )
    .await;
    assert_eq!(status, "200", "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["appId"].is_string(), "{body}");
    // A client that does not trust the CA does not get through.
    let elsewhere = dir.path().join("other");
    std::fs::create_dir(&elsewhere).unwrap();
    let other = TestCa::new().write_pem(&elsewhere);
    let (status, _) = curl(&other, &format!("{https}/healthz"), &[]).await;
    assert_eq!(status, "000", "refused by the client: not our certificate");
}

#[tokio::test]
async fn a_replaced_certificate_is_served_after_sighup_without_a_restart() {
    // The files are not looked at again on their own within the test: SIGHUP does it.
    let Some(TlsNode { node, ca, dir, ca_file }) = tls_node("[tls]\nreload_secs = 3600\n").await else { return };
    let (mqtts, https) = (node.listener("mqtts").unwrap(), node.listener("https").unwrap());
    let first = leaf_of(&dir.path().join("cert.pem"));
    assert_eq!(presented_leaf(&ca, &mqtts).await, first);
    assert_eq!(presented_leaf(&ca, &https).await, first);

    // Broken files first (a key that does not fit): the old certificate stays.
    let (_, wrong_key) = ca.server_pem("unrelated");
    let (second_chain, second_key) = ca.server_pem("second");
    std::fs::write(dir.path().join("cert.pem"), &second_chain).unwrap();
    std::fs::write(dir.path().join("key.pem"), &wrong_key).unwrap();
    node.hangup();
    eventually("the refusal of a key that does not fit", || async {
        node.log.tail(50).iter().any(|l| l.contains("TLS certificate not reloaded")).then_some(())
    })
    .await;
    assert_eq!(presented_leaf(&ca, &mqtts).await, first);

    std::fs::write(dir.path().join("key.pem"), &second_key).unwrap();
    node.hangup();
    let second = leaf_of(&dir.path().join("cert.pem"));
    assert_ne!(first, second);
    eventually("the new certificate on MQTT over TLS", || async {
        (presented_leaf(&ca, &mqtts).await == second).then_some(())
    })
    .await;
    assert_eq!(presented_leaf(&ca, &https).await, second);
    let (status, _) = curl(&ca_file, &format!("https://localhost:{}/healthz", port(&https)), &[]).await;
    assert_eq!(status, "200");
}

#[tokio::test]
async fn tls_only_leaves_the_plain_listeners_closed() {
    let Some(TlsNode { node, ca_file, dir: _dir, .. }) = tls_node("[tls]\nplain = false\n").await else { return };
    assert_eq!((node.listener("http"), node.listener("mqtt")), (None, None));
    let https = node.listener("https").unwrap();
    let (status, body) = curl(&ca_file, &format!("https://localhost:{}/healthz", port(&https)), &[]).await;
    assert_eq!(status, "200", "{body}");
}

/// A client certificate of `ca` as PEM files in `dir`: (certificate, key).
fn client_cert_files(ca: &TestCa, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    use base64::Engine;
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    };
    let (cert, key) = ca.client_cert(name, (2099, 1, 1));
    let (cert_file, key_file) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_file, pem("CERTIFICATE", &cert)).unwrap();
    std::fs::write(&key_file, pem("PRIVATE KEY", &key)).unwrap();
    (cert_file, key_file)
}

#[tokio::test]
async fn with_admin_client_ca_the_admin_api_needs_a_client_certificate_too() {
    let config = "[tls]\nadmin_client_ca = \"{dir}/test-ca.pem\"\n";
    let Some(TlsNode { node, ca, dir, ca_file }) = tls_node(config).await else { return };
    let https = format!("https://localhost:{}", port(&node.listener("https").unwrap()));
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let create = ["-H", &auth, "-H", "Content-Type: application/json", "-d", r#"{"name":"mtls"}"#];
    let url = format!("{https}/admin/v1/apps");

    let (status, body) = curl(&ca_file, &url, &create).await;
    assert_eq!(status, "401", "the token alone is not enough: {body}");
    assert!(body.contains("ADMIN_UNAUTHORIZED") && body.contains("client certificate"), "{body}");

    let (cert, key) = client_cert_files(&ca, dir.path(), "operator");
    let with_cert = [&create[..], &["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]].concat();
    let (status, body) = curl(&ca_file, &url, &with_cert).await;
    assert_eq!(status, "200", "{body}");

    // A certificate of another CA fails the handshake; over plain HTTP there is none.
    let (other_cert, other_key) = client_cert_files(&TestCa::new(), dir.path(), "stranger");
    let strange =
        [&create[..], &["--cert", other_cert.to_str().unwrap(), "--key", other_key.to_str().unwrap()]].concat();
    assert_eq!(curl(&ca_file, &url, &strange).await.0, "000");
    let plain = node
        .call(
            "POST",
            "/admin/v1/apps",
            &[("authorization".into(), format!("Bearer {ADMIN_TOKEN}"))],
            r#"{"name":"x"}"#.into(),
        )
        .await;
    assert_eq!(plain.status, 401);
    // The rest of the API does not ask for one.
    assert_eq!(curl(&ca_file, &format!("{https}/healthz"), &[]).await.0, "200");
}
