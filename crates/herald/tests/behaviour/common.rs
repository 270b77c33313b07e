//! Test kit: the real `herald` binary on port 0 with a temporary SQLite store, a signed
//! API client with one method per endpoint, and `TestDevice`, a real MQTT client (rumqttc).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald::http_client::{Response, request};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(10);
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Polls `check` until it returns `Some`, or panics after `WAIT` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct TestServer {
    child: Child,
    pub http: String,
    pub mqtt: String,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<Vec<String>>>,
    /// Extra `serve` arguments, kept for restarts (the PostgreSQL store URL).
    args: Vec<String>,
    /// The PostgreSQL schema of this server, dropped with it.
    schema: Option<PgSchema>,
}

/// A fresh schema in the database of `HERALD_TEST_POSTGRES_URL`, dropped with the guard.
pub struct PgSchema {
    url: String,
    pub name: String,
}

impl PgSchema {
    /// `None` (and a line saying the test is skipped, and why) when the variable is unset;
    /// a panic when it is set and PostgreSQL does not answer.
    pub async fn create() -> Option<PgSchema> {
        let Ok(url) = std::env::var(POSTGRES_URL) else {
            eprintln!("skipped: {POSTGRES_URL} is not set, so Herald on PostgreSQL is not tested here");
            return None;
        };
        let name = format!("herald_it_{}", herald::crypto::random_alnum(12));
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL} is set but PostgreSQL does not answer: {e}"));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.expect("create schema");
        Some(PgSchema { url, name })
    }

    /// The store URL of a server that keeps its tables in this schema.
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async cleanup on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA {schema} CASCADE")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// Where the PostgreSQL behaviour tests find a server.
pub const POSTGRES_URL: &str = "HERALD_TEST_POSTGRES_URL";

impl TestServer {
    /// A server on this suite's store: SQLite, or PostgreSQL in the `behaviour_postgres`
    /// build of the suite. `None` when that store is not configured here (the test is
    /// skipped and says why).
    pub async fn start() -> Option<TestServer> {
        if crate::ON_POSTGRES { Self::start_postgres().await } else { Some(Self::start_sqlite().await) }
    }

    pub async fn start_sqlite() -> TestServer {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, &[]).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts the binary on `dir`; `extra` are more `serve` arguments.
    pub async fn start_in(dir: &Path, extra: &[&str]) -> TestServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "herald=debug,info"])
            .args(extra)
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("HERALD_") && k != "HERALD_ADMIN_TOKEN" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn herald");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = tokio::task::spawn_blocking(move || {
            loop {
                match rx.recv_timeout(WAIT) {
                    Ok(line) if line.starts_with("herald ready ") => return Some(line),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await
        .unwrap();
        let Some(ready) = ready else {
            let log = log.lock().unwrap().join("\n");
            panic!("herald did not become ready; its log:\n{log}");
        };
        let field = |name: &str| {
            ready.split_whitespace().find_map(|w| w.strip_prefix(name)).expect("ready line field").to_string()
        };
        TestServer {
            child,
            http: field("http="),
            mqtt: field("mqtt="),
            dir: dir.to_path_buf(),
            _tmp: None,
            log,
            args: extra.iter().map(|s| s.to_string()).collect(),
            schema: None,
        }
    }

    /// A server on the PostgreSQL store, in a fresh schema of the database named by
    /// `HERALD_TEST_POSTGRES_URL`. `None` (the test is skipped, and says why) when the
    /// variable is unset; a panic when it is set and PostgreSQL does not answer.
    pub async fn start_postgres() -> Option<TestServer> {
        let schema = PgSchema::create().await?;
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(tmp.path(), &["--store-url", &schema.store_url()]).await;
        server._tmp = Some(tmp);
        server.schema = Some(schema);
        Some(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Restarts on the same data directory (after `kill9` or a clean stop).
    pub async fn restart(mut self) -> TestServer {
        let tmp = self._tmp.take();
        let schema = self.schema.take();
        let dir = self.dir.clone();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut next = Self::start_in(&dir, &args).await;
        next._tmp = tmp;
        next.schema = schema;
        next
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub async fn call(&self, method: &str, path: &str, headers: &[(String, String)], body: Bytes) -> Response {
        request(&self.http, method, path, headers, body).await.expect("HTTP request")
    }

    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Response {
        let headers = vec![("authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
        let body = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
        self.call(method, path, &headers, body).await
    }

    pub async fn create_app(&self) -> TestApp {
        self.create_app_with(false).await
    }

    pub async fn create_app_with(&self, trust_client_bind: bool) -> TestApp {
        let r = self
            .admin("POST", "/admin/v1/apps", json!({"name": "test app", "trustClientBind": trust_client_bind}))
            .await;
        assert_eq!(r.status, 200, "create app: {:?}", r.json());
        let j = r.json();
        let s = |k: &str| j[k].as_str().expect(k).to_string();
        TestApp {
            http: self.http.clone(),
            mqtt: self.mqtt.clone(),
            app_id: s("appId"),
            app_key: s("appKey"),
            key_id: s("apiKeyId"),
            secret: s("apiSecret"),
            bind_secret: s("bindSecret"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log.lock().unwrap();
            let tail: Vec<&String> = log.iter().rev().take(60).collect();
            eprintln!("--- herald log (last {} lines) ---", tail.len());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The schema (if this server owns one) goes after the process.
        self.schema.take();
    }
}

#[derive(Clone)]
pub struct TestApp {
    pub http: String,
    pub mqtt: String,
    pub app_id: String,
    pub app_key: String,
    pub key_id: String,
    pub secret: String,
    pub bind_secret: String,
}

impl TestApp {
    /// The same app, called through another node of a cluster.
    pub fn via(&self, node: &TestServer) -> TestApp {
        TestApp { http: node.http.clone(), mqtt: node.mqtt.clone(), ..self.clone() }
    }

    /// A request signed with the app's HMAC key.
    pub async fn signed(&self, method: &str, path: &str, body: &str) -> Response {
        let headers = herald::api::signing::sign_hmac(
            &self.key_id,
            &self.secret,
            method,
            path,
            body.as_bytes(),
            herald::now_ms(),
        );
        request(&self.http, method, path, &headers, Bytes::from(body.to_string())).await.expect("HTTP request")
    }

    pub async fn push_simple(&self, body: Value) -> Response {
        self.signed("POST", "/v1/push/simple", &body.to_string()).await
    }

    /// Pushes to one device and returns (taskId, messageId); panics unless 200.
    pub async fn push_to_device(&self, device: &str, msg_key: &str, title: &str) -> (String, String) {
        let r = self
            .push_simple(json!({
                "deliveryType": 1, "targetMsgkey": {device: msg_key}, "title": title, "content": format!("{title} body"),
                "expiredSeconds": 300,
            }))
            .await;
        assert_eq!(r.status, 200, "push: {:?}", r.json());
        let j = r.json();
        (
            j["pushResult"]["data"].as_str().unwrap().to_string(),
            j["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string(),
        )
    }

    pub async fn task(&self, task_id: &str) -> Response {
        self.signed("GET", &format!("/v1/tasks/{task_id}"), "").await
    }

    pub async fn message(&self, message_id: &str) -> Response {
        self.signed("GET", &format!("/v1/messages/{message_id}"), "").await
    }

    /// The status of a message's target, as `GET /v1/messages/{id}` shows it.
    pub async fn message_status(&self, message_id: &str) -> String {
        let r = self.message(message_id).await;
        assert_eq!(r.status, 200, "message: {:?}", r.json());
        r.json()["resultContent"]["data"]["status"].as_str().unwrap().to_string()
    }

    pub async fn wait_status(&self, message_id: &str, want: &str) {
        eventually(&format!("message {message_id} to become {want}"), || async {
            (self.message_status(message_id).await == want).then_some(())
        })
        .await
    }

    pub async fn register_raw(&self, body: Value) -> Response {
        let headers = vec![
            ("x-herald-app".to_string(), self.app_id.clone()),
            ("x-herald-app-key".to_string(), self.app_key.clone()),
        ];
        request(&self.http, "POST", "/device/v1/register", &headers, Bytes::from(body.to_string())).await.unwrap()
    }

    pub async fn register(&self, install_id: &str) -> Creds {
        let r = self.register_raw(json!({"platform": "android", "installId": install_id, "appVersion": "1.0"})).await;
        assert_eq!(r.status, 200, "register: {:?}", r.json());
        let j = r.json();
        Creds {
            app_id: self.app_id.clone(),
            device_id: j["deviceId"].as_str().unwrap().to_string(),
            token: j["deviceToken"].as_str().unwrap().to_string(),
            mqtt: self.mqtt.clone(),
            http: self.http.clone(),
        }
    }

    /// Binds through the device API with a proof computed as the app's server would.
    pub async fn device_bind(&self, creds: &Creds, user: &str) -> Response {
        let expires_at = herald::now_ms() + 60_000;
        let proof = herald::api::device::bind_proof(self.bind_secret.as_bytes(), &creds.device_id, user, expires_at);
        creds.device_call("/device/v1/bind", json!({"userId": user, "bindProof": proof, "expiresAt": expires_at})).await
    }
}

/// A registered device's credentials.
#[derive(Clone, Debug)]
pub struct Creds {
    pub app_id: String,
    pub device_id: String,
    pub token: String,
    pub mqtt: String,
    pub http: String,
}

impl Creds {
    /// The same device, connecting to another node of a cluster.
    pub fn on(&self, node: &TestServer) -> Creds {
        Creds { http: node.http.clone(), mqtt: node.mqtt.clone(), ..self.clone() }
    }

    pub async fn device_call(&self, path: &str, body: Value) -> Response {
        let headers = vec![("authorization".to_string(), format!("Bearer {}", self.token))];
        request(&self.http, "POST", path, &headers, Bytes::from(body.to_string())).await.unwrap()
    }

    pub fn options(&self) -> MqttOptions {
        let (host, port) = self.mqtt.rsplit_once(':').unwrap();
        let mut opts = MqttOptions::new(self.device_id.clone(), host, port.parse().unwrap());
        opts.set_credentials(self.app_id.clone(), self.token.clone());
        opts.set_keep_alive(Duration::from_secs(30));
        opts
    }
}

/// What the event loop of a [`TestDevice`] saw.
#[derive(Debug)]
pub enum Seen {
    Publish(Publish),
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
    Closed(String),
}

/// A real MQTT 3.1.1 client connected as a device.
pub struct TestDevice {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDevice {
    /// Connects and waits for CONNACK; panics when refused.
    pub async fn connect(creds: &Creds) -> TestDevice {
        Self::connect_with(creds.options(), false).await.expect("CONNACK accepted")
    }

    /// Connects with manual acknowledgements: the test decides when to PUBACK.
    pub async fn connect_manual_ack(creds: &Creds) -> TestDevice {
        Self::connect_with(creds.options(), true).await.expect("CONNACK accepted")
    }

    /// Connects; `Err` carries the refusal (e.g. the CONNACK code).
    pub async fn connect_with(mut opts: MqttOptions, manual_acks: bool) -> Result<TestDevice, String> {
        opts.set_manual_acks(manual_acks);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        first_connack(&mut eventloop).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen::Publish(p));
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let _ = tx.send(Seen::SubAck(s.return_codes));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Seen::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        Ok(TestDevice { client, rx, task })
    }

    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("nothing from the server in time")
            .expect("event loop ended")
    }

    /// True when nothing arrives for `d`.
    pub async fn quiet_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.rx.recv()).await.is_err()
    }

    /// The next delivery, as (publish, parsed payload).
    pub async fn next_push(&mut self) -> (Publish, Value) {
        match self.next().await {
            Seen::Publish(p) => {
                let v: Value = serde_json::from_slice(&p.payload).expect("payload is JSON");
                (p, v)
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) -> String {
        loop {
            match self.next().await {
                Seen::Closed(why) => return why,
                _ => continue,
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn first_connack(eventloop: &mut EventLoop) -> Result<(), String> {
    let result = tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| Err("no CONNACK in time".into()))
}

/// A publish to the events topic of `device`.
pub async fn publish_event(device: &TestDevice, device_id: &str, body: Value) {
    device
        .client
        .publish(format!("events/{device_id}"), QoS::AtLeastOnce, false, body.to_string())
        .await
        .expect("publish");
}
