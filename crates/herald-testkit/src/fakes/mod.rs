//! Vendor fakes: HTTPS servers on port 0 that speak each vendor's wire protocol and check
//! what they receive as strictly as the vendor does (see `../shared/reference/vendors.md`):
//!
//! - APNs: HTTP/2 only (ALPN h2), `/3/device/<hex>`, the ES256 provider token verified with
//!   the key's public half (alg, kid, iss, iat), the `apns-*` headers, an `aps` dictionary
//!   within 4 KB;
//! - Google OAuth + FCM v1: the RS256 JWT-bearer assertion verified (iss, scope, aud, exp),
//!   then `messages:send` with the token it issued;
//! - Huawei: client-credentials token, then `v1/{appId}/messages:send` with that token;
//! - Xiaomi: `/v3/message/regid` with `Authorization: key=<secret>` and the form fields;
//! - Web Push: the VAPID JWT verified with the `k` it names (aud = the endpoint's origin,
//!   exp within 24 h), then the `aes128gcm` body decrypted with the subscription's private
//!   key (RFC 8291), and the plaintext kept.
//!
//! A check that fails answers 400 and is kept in [`FakeVendor::problems`]: a test asserts
//! there are none. Tests script answers ([`FakeVendor::script`]) for errors, 429s, 5xx,
//! dropped connections and HTTP/2 GOAWAY.

mod checks;
mod keys;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::agreement;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use parking_lot::Mutex;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::sync::Notify;

use checks::*;
pub use keys::{apns_key, apns_p12, apns_p12_base64, apns_token_channel, service_account, subscription};

/// A certificate authority of the test, and a server certificate for 127.0.0.1 and
/// localhost signed by it. Its PEM goes to the node's `channels.ca_file`.
pub struct TestCa {
    pub ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Herald test CA");
        let ca = params.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(params, ca_key);
        let key = rcgen::KeyPair::generate().expect("server key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server cert");
        TestCa {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone(), ca.der().clone()],
            key_der: key.serialize_der(),
            issuer,
        }
    }

    /// Writes the CA's PEM into `dir`; the path.
    pub fn write_pem(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write CA");
        path
    }

    /// A server certificate for 127.0.0.1 and localhost signed by this CA, for a node's
    /// `--tls-cert` and `--tls-key`: (PEM chain, leaf then CA; PEM key). `label` is its
    /// common name, to tell two apart.
    pub fn server_pem(&self, label: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        params.distinguished_name.push(rcgen::DnType::CommonName, label);
        let leaf = params.signed_by(&key, &self.issuer).expect("server cert");
        (format!("{}{}", leaf.pem(), self.ca_pem), key.serialize_pem())
    }

    /// A client certificate signed by this CA (APNs certificate auth): (DER chain, PKCS#8).
    pub fn client_cert(&self, common_name: &str, not_after: (i32, u8, u8)) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("client key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        (cert.der().to_vec(), key.serialize_der())
    }

    fn server_config(&self, alpn: &[&[u8]], client_auth: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("TLS versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.chain[1].clone()).expect("CA root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = builder.with_single_cert(self.chain.clone(), key).expect("server cert");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Which vendor a fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Apns,
    /// Google's OAuth token endpoint and FCM v1 on one server.
    Fcm,
    /// Huawei's OAuth token endpoint and Push Kit on one server.
    Hms,
    Xiaomi,
    WebPush,
}

/// One request a fake accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Web Push: the decrypted payload.
    pub plaintext: Option<String>,
    /// APNs certificate auth: the client certificate's presence.
    pub client_cert: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A form body's field.
    pub fn form(&self, name: &str) -> Option<String> {
        form_field(&self.body, name)
    }
}

/// A scripted answer to the next request (on the send path, not the token endpoints).
#[derive(Debug, Clone)]
pub enum Scripted {
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Closes the connection (TCP) without an answer, as a vendor's crashing front end does.
    Drop,
    /// Answers with success, then sends HTTP/2 GOAWAY on that connection and closes it once
    /// its streams are done (a vendor's server going away for maintenance).
    GoAway,
}

/// What a connection's task is asked to do by a request on it.
#[derive(Default)]
struct ConnControl {
    kill: Notify,
    goaway: Notify,
}

/// What a fake knows to check requests against.
#[derive(Default)]
pub struct Expect {
    /// APNs: the provider key's public point, key id, team id and topic.
    pub apns_key: Option<(Vec<u8>, String, String, String)>,
    /// FCM: the service account's public key (PKCS#1 DER), its email, and the project.
    pub fcm_key: Option<(Vec<u8>, String, String)>,
    /// HMS: app id and client secret.
    pub hms: Option<(String, String)>,
    /// Xiaomi: app secret and package name.
    pub xiaomi: Option<(String, String)>,
    /// Web Push: the subscription's private key and auth secret, by endpoint path.
    pub webpush: Vec<(String, agreement::PrivateKey, Vec<u8>)>,
}

struct Shared {
    vendor: Vendor,
    addr: SocketAddr,
    expect: Mutex<Expect>,
    script: Mutex<VecDeque<Scripted>>,
    received: Mutex<Vec<Received>>,
    problems: Mutex<Vec<String>>,
    issued_tokens: Mutex<Vec<String>>,
    token_requests: Mutex<u64>,
    connections: AtomicU64,
    /// APNs provider tokens whose signature verified.
    verified_tokens: Mutex<std::collections::HashSet<String>>,
    /// How long each send waits before its answer (a slow vendor).
    delay: Mutex<std::time::Duration>,
}

/// A vendor fake on 127.0.0.1, port 0, over TLS signed by a [`TestCa`].
#[derive(Clone)]
pub struct FakeVendor {
    shared: Arc<Shared>,
}

impl FakeVendor {
    /// Starts a fake; `client_auth`: APNs asks for a client certificate (certificate auth).
    pub async fn start(vendor: Vendor, ca: &TestCa, expect: Expect, client_auth: bool) -> FakeVendor {
        let alpn: &[&[u8]] = if vendor == Vendor::Apns { &[b"h2"] } else { &[b"h2", b"http/1.1"] };
        let tls = Arc::new(ca.server_config(alpn, client_auth));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let shared = Arc::new(Shared {
            vendor,
            addr: listener.local_addr().expect("addr"),
            expect: Mutex::new(expect),
            script: Mutex::default(),
            received: Mutex::default(),
            problems: Mutex::default(),
            issued_tokens: Mutex::default(),
            token_requests: Mutex::new(0),
            connections: AtomicU64::new(0),
            verified_tokens: Mutex::default(),
            delay: Mutex::default(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(serve(acceptor, tcp, s));
            }
        });
        FakeVendor { shared }
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.shared.addr.port())
    }

    pub fn script(&self, answer: Scripted) {
        self.shared.script.lock().push_back(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().clone()
    }

    /// Every later send waits `delay` before its answer (a slow vendor).
    pub fn set_delay(&self, delay: std::time::Duration) {
        *self.shared.delay.lock() = delay;
    }

    /// How many requests passed the checks (cheaper than `received().len()`).
    pub fn received_count(&self) -> usize {
        self.shared.received.lock().len()
    }

    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().clone()
    }

    /// OAuth token requests answered.
    pub fn token_requests(&self) -> u64 {
        *self.shared.token_requests.lock()
    }

    pub fn expect(&self) -> parking_lot::MutexGuard<'_, Expect> {
        self.shared.expect.lock()
    }
}

fn answer(status: u16, headers: &[(&str, String)], body: String) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(Bytes::from(body))).expect("answer")
}

/// Serves one connection until the client closes it, a scripted drop kills it, or a
/// scripted GOAWAY winds it down.
async fn serve(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream, s: Arc<Shared>) {
    let Ok(tls) = acceptor.accept(tcp).await else { return };
    s.connections.fetch_add(1, Ordering::Relaxed);
    let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
    let control = Arc::new(ConnControl::default());
    let (svc_control, svc_shared) = (control.clone(), s.clone());
    let service = hyper::service::service_fn(move |req| {
        let (s, control) = (svc_shared.clone(), svc_control.clone());
        async move { Ok::<_, std::convert::Infallible>(handle(&s, &control, req, client_cert).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    // As APNs: up to 1,000 streams at once on a connection.
    builder.http2().max_concurrent_streams(1000);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = control.kill.notified() => return,
            _ = control.goaway.notified() => conn.as_mut().graceful_shutdown(),
        }
    }
}

async fn handle(s: &Shared, control: &ConnControl, req: Request<Incoming>, client_cert: bool) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(400, &[], "{}".into()),
    };
    let headers: Vec<(String, String)> =
        parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let mut received = Received { path: parts.uri.path().to_string(), headers, body, plaintext: None, client_cert };
    let check = match s.vendor {
        Vendor::Apns => check_apns(s, &received, parts.version),
        Vendor::Fcm if received.path == "/token" => return fcm_token(s, &received),
        Vendor::Fcm => check_bearer(s, &received).and_then(|_| check_fcm(s, &received)),
        Vendor::Hms if received.path == "/oauth2/v3/token" => return hms_token(s, &received),
        Vendor::Hms => check_bearer(s, &received).and_then(|_| check_hms(s, &received)),
        Vendor::Xiaomi => check_xiaomi(s, &received),
        Vendor::WebPush => check_webpush(s, &mut received),
    };
    if let Err(problem) = check {
        s.problems.lock().push(problem.clone());
        let body = match s.vendor {
            Vendor::Apns => json!({"reason": "BadRequest", "detail": problem}).to_string(),
            _ => json!({"error": {"code": 400, "message": problem, "status": "INVALID_ARGUMENT"}}).to_string(),
        };
        return answer(400, &[], body);
    }
    s.received.lock().push(received);
    let delay = *s.delay.lock();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let next = s.script.lock().pop_front();
    match next {
        Some(Scripted::Answer { status, headers, body }) => {
            let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            answer(status, &headers, body)
        }
        Some(Scripted::Drop) => {
            // The connection's task drops the connection; this request never gets an answer.
            control.kill.notify_one();
            std::future::pending().await
        }
        Some(Scripted::GoAway) => {
            control.goaway.notify_one();
            success(s.vendor)
        }
        None => success(s.vendor),
    }
}

fn success(vendor: Vendor) -> Response<Full<Bytes>> {
    let id = herald_core::crypto::random_alnum(12);
    match vendor {
        Vendor::Apns => answer(200, &[("apns-id", format!("00000000-0000-4000-8000-{id}"))], String::new()),
        Vendor::Fcm => answer(200, &[], json!({"name": format!("projects/p/messages/{id}")}).to_string()),
        Vendor::Hms => answer(200, &[], json!({"code": "80000000", "msg": "Success", "requestId": id}).to_string()),
        Vendor::Xiaomi => {
            answer(200, &[], json!({"result": "ok", "code": 0, "description": "成功", "data": {"id": id}}).to_string())
        }
        Vendor::WebPush => answer(201, &[("location", format!("https://push.example/m/{id}"))], String::new()),
    }
}
