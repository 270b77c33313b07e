//! Clients that read like the API: an [`Endpoint`] (a node's addresses, the admin API),
//! a [`TestApp`] (the signed server API of one app) and [`Creds`] (one registered device).

use bytes::Bytes;
use herald::http_client::{Response, request};
use rumqttc::MqttOptions;
use serde_json::{Value, json};

use crate::logs::Log;
use crate::{ADMIN_TOKEN, WAIT, eventually};

/// Where a node listens, and what it logged.
#[derive(Clone)]
pub struct Endpoint {
    pub http: String,
    pub mqtt: String,
    pub log: Log,
}

impl Endpoint {
    pub async fn call(&self, method: &str, path: &str, headers: &[(String, String)], body: Bytes) -> Response {
        answer(request(&self.http, method, path, headers, body)).await
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

    /// `GET /admin/v1/node`: id, bus, connections, leases.
    pub async fn node_info(&self) -> Value {
        let r = self.admin("GET", "/admin/v1/node", Value::Null).await;
        assert_eq!(r.status, 200);
        r.json()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.contains(needle)
    }
}

/// One app, as its own server calls Herald (every call signed with its HMAC key).
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
    /// A device of this app with Herald's own client (`herald-client`) over plain MQTT:
    /// short back-off (200 ms to 2 s) and timeouts (5 s) for tests.
    pub fn client_config(&self) -> herald_client::Config {
        let http = format!("http://{}", self.http.trim_start_matches("http://").trim_end_matches('/'));
        let mut c =
            herald_client::Config::new(&http, &format!("tcp://{}", self.mqtt), &self.app_id, &self.app_key, "android");
        c.app_version = Some("1.0".into());
        c.backoff_initial = std::time::Duration::from_millis(200);
        c.backoff_max = std::time::Duration::from_secs(2);
        c.timeout = std::time::Duration::from_secs(5);
        c
    }

    /// The same app, called through another node of a cluster.
    pub fn via(&self, node: &Endpoint) -> TestApp {
        TestApp { http: node.http.clone(), mqtt: node.mqtt.clone(), ..self.clone() }
    }

    /// A request signed with the app's HMAC key.
    pub async fn signed(&self, method: &str, path: &str, body: &str) -> Response {
        answer(self.try_signed(method, path, body)).await
    }

    /// A signed call whose failure to get an answer (a node killed meanwhile) is an error
    /// for the caller, not a panic.
    pub async fn try_signed(&self, method: &str, path: &str, body: &str) -> anyhow::Result<Response> {
        let headers = herald_core::signing::sign_hmac(
            &self.key_id,
            &self.secret,
            method,
            path,
            body.as_bytes(),
            herald_core::now_ms(),
        );
        request(&self.http, method, path, &headers, Bytes::from(body.to_string())).await
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

    /// Pushes to one user and returns the messageId; panics unless 200.
    pub async fn push_to_user(&self, user: &str, msg_key: &str, title: &str) -> String {
        let r = self
            .push_simple(json!({
                "deliveryType": 3, "targetMsgkey": {user: msg_key}, "title": title, "content": "c",
                "expiredSeconds": 300,
            }))
            .await;
        assert_eq!(r.status, 200, "push: {:?}", r.json());
        r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string()
    }

    pub async fn task(&self, task_id: &str) -> Response {
        self.signed("GET", &format!("/v1/tasks/{task_id}"), "").await
    }

    pub async fn message(&self, message_id: &str) -> Response {
        self.signed("GET", &format!("/v1/messages/{message_id}"), "").await
    }

    /// `GET /v1/devices/{id}`'s data.
    pub async fn device_view(&self, device_id: &str) -> Value {
        let r = self.signed("GET", &format!("/v1/devices/{device_id}"), "").await;
        assert_eq!(r.status, 200, "device: {:?}", r.json());
        r.json()["resultContent"]["data"].clone()
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

    /// `POST /device/v1/register` with the app key; `extra` headers besides it.
    pub async fn register_raw_with(&self, body: Value, extra: &[(String, String)]) -> Response {
        let mut headers = vec![
            ("x-herald-app".to_string(), self.app_id.clone()),
            ("x-herald-app-key".to_string(), self.app_key.clone()),
        ];
        headers.extend_from_slice(extra);
        answer(request(&self.http, "POST", "/device/v1/register", &headers, Bytes::from(body.to_string()))).await
    }

    pub async fn register_raw(&self, body: Value) -> Response {
        self.register_raw_with(body, &[]).await
    }

    /// Registers an Android device; panics unless 200.
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
        // A proof binds once: two binds in one millisecond get expiries of their own.
        use std::sync::atomic::{AtomicI64, Ordering};
        static LAST: AtomicI64 = AtomicI64::new(0);
        let wanted = herald_core::now_ms() + 60_000;
        let expires_at = loop {
            let last = LAST.load(Ordering::Relaxed);
            let next = wanted.max(last + 1);
            if LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                break next;
            }
        };
        let proof = herald_core::signing::bind_proof(self.bind_secret.as_bytes(), &creds.device_id, user, expires_at);
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
    pub fn on(&self, node: &Endpoint) -> Creds {
        Creds { http: node.http.clone(), mqtt: node.mqtt.clone(), ..self.clone() }
    }

    pub async fn device_call(&self, path: &str, body: Value) -> Response {
        let headers = vec![("authorization".to_string(), format!("Bearer {}", self.token))];
        answer(request(&self.http, "POST", path, &headers, Bytes::from(body.to_string()))).await
    }

    /// A device API GET with the device's bearer token.
    pub async fn device_call_get(&self, path: &str) -> Response {
        let headers = vec![("authorization".to_string(), format!("Bearer {}", self.token))];
        answer(request(&self.http, "GET", path, &headers, Bytes::new())).await
    }

    pub fn options(&self) -> MqttOptions {
        let (host, port) = self.mqtt.rsplit_once(':').unwrap();
        let mut opts = MqttOptions::new(self.device_id.clone(), host, port.parse().unwrap());
        opts.set_credentials(self.app_id.clone(), self.token.clone());
        opts.set_keep_alive(std::time::Duration::from_secs(30));
        opts
    }
}

/// The answer of a request made by a test, which fails when none arrives within [`WAIT`].
async fn answer(request: impl std::future::Future<Output = anyhow::Result<Response>>) -> Response {
    tokio::time::timeout(WAIT, request)
        .await
        .unwrap_or_else(|_| panic!("no HTTP answer within {WAIT:?}"))
        .expect("HTTP request")
}
