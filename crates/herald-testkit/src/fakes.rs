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
//! there are none. Tests script answers ([`FakeVendor::script`]) for errors, 429s, 5xx and
//! dropped connections.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::signature::{self, KeyPair};
use aws_lc_rs::{aead, agreement, hkdf};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use parking_lot::Mutex;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

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
    /// Closes the connection without an answer.
    Drop,
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
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, s) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&s, req, client_cert).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                });
            }
        });
        FakeVendor { shared }
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

fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits and verifies a compact JWT: (header, claims) when `verify(signing input, sig)`.
fn jwt(token: &str, verify: impl Fn(&[u8], &[u8]) -> bool) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, sig] = parts[..] else { return Err("not a compact JWT".into()) };
    let decode = |p: &str| B64.decode(p).map_err(|_| "JWT part not base64url".to_string());
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| "JWT header not JSON")?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| "JWT claims not JSON")?;
    if !verify(format!("{h}.{c}").as_bytes(), &decode(sig)?) {
        return Err("JWT signature does not verify".into());
    }
    Ok((header, claims))
}

fn now_secs() -> i64 {
    herald_core::now_ms() / 1000
}

async fn handle(s: &Shared, req: Request<Incoming>, client_cert: bool) -> Response<Full<Bytes>> {
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
    match s.script.lock().pop_front() {
        Some(Scripted::Answer { status, headers, body }) => {
            let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            answer(status, &headers, body)
        }
        Some(Scripted::Drop) => {
            // An answer hyper cannot send: the stream is reset, the connection dropped.
            panic!("scripted drop")
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

fn check_apns(s: &Shared, r: &Received, version: Version) -> Result<(), String> {
    if version != Version::HTTP_2 {
        return Err(format!("APNs takes HTTP/2 only, got {version:?}"));
    }
    let token = r.path.strip_prefix("/3/device/").ok_or("path must be /3/device/<token>")?;
    if token.len() < 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("BadDeviceToken: not hex".into());
    }
    let expect = s.expect.lock();
    if let Some((public, key_id, team_id, topic)) = &expect.apns_key {
        let bearer = r.header("authorization").and_then(|a| a.strip_prefix("bearer ")).ok_or("MissingProviderToken")?;
        let (header, claims) = jwt(bearer, |msg, sig| {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public).verify(msg, sig).is_ok()
        })
        .map_err(|e| format!("InvalidProviderToken: {e}"))?;
        if header["alg"] != "ES256" || header["kid"] != key_id.as_str() {
            return Err(format!("InvalidProviderToken: header {header}"));
        }
        let iat = claims["iat"].as_i64().ok_or("InvalidProviderToken: no iat")?;
        if claims["iss"] != team_id.as_str() || now_secs() - iat > 3600 || iat > now_secs() + 60 {
            return Err(format!("ExpiredProviderToken or bad iss: {claims}"));
        }
        if r.header("apns-topic") != Some(topic.as_str()) {
            return Err("BadTopic".into());
        }
    } else if !r.client_cert {
        return Err("MissingProviderToken: neither a token nor a client certificate".into());
    }
    let push_type = r.header("apns-push-type").ok_or("apns-push-type missing")?;
    let priority = r.header("apns-priority").ok_or("BadPriority: missing")?;
    match (push_type, priority) {
        ("alert", "10" | "5") | ("background", "5") => {}
        other => return Err(format!("BadPriority or push type: {other:?}")),
    }
    r.header("apns-expiration").and_then(|e| e.parse::<i64>().ok()).ok_or("BadExpirationDate")?;
    if r.header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Err("BadCollapseId".into());
    }
    if r.body.len() > 4096 {
        return Err("PayloadTooLarge".into());
    }
    let aps = r.json().get("aps").cloned().ok_or("PayloadEmpty: no aps")?;
    if push_type == "background" && aps.get("content-available") != Some(&json!(1)) {
        return Err("a background push needs content-available: 1".into());
    }
    Ok(())
}

fn fcm_token(s: &Shared, r: &Received) -> Response<Full<Bytes>> {
    let check = || -> Result<(), String> {
        if r.form("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return Err("grant_type must be jwt-bearer".into());
        }
        let assertion = r.form("assertion").ok_or("assertion missing")?;
        let expect = s.expect.lock();
        let (public, email, _) = expect.fcm_key.as_ref().ok_or("no service account expected")?;
        let (header, claims) = jwt(&assertion, |msg, sig| {
            signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public).verify(msg, sig).is_ok()
        })?;
        let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
        let aud_ok = claims["aud"].as_str().is_some_and(|a| a.ends_with("/token"));
        if header["alg"] != "RS256"
            || claims["iss"] != email.as_str()
            || !aud_ok
            || exp - iat > 3600
            || exp < now_secs()
        {
            return Err(format!("invalid_grant: {header} {claims}"));
        }
        if !claims["scope"]
            .as_str()
            .is_some_and(|sc| sc.contains("firebase.messaging") || sc.contains("cloud-platform"))
        {
            return Err("invalid_scope".into());
        }
        Ok(())
    };
    token_answer(s, check())
}

fn hms_token(s: &Shared, r: &Received) -> Response<Full<Bytes>> {
    let check = || -> Result<(), String> {
        let expect = s.expect.lock();
        let (app, secret) = expect.hms.as_ref().ok_or("no HMS app expected")?;
        if r.form("grant_type").as_deref() != Some("client_credentials")
            || r.form("client_id").as_deref() != Some(app.as_str())
            || r.form("client_secret").as_deref() != Some(secret.as_str())
        {
            return Err("invalid client credentials".into());
        }
        Ok(())
    };
    token_answer(s, check())
}

fn token_answer(s: &Shared, check: Result<(), String>) -> Response<Full<Bytes>> {
    *s.token_requests.lock() += 1;
    match check {
        Ok(()) => {
            let token = format!("ya29.{}", herald_core::crypto::random_alnum(24));
            s.issued_tokens.lock().push(token.clone());
            answer(200, &[], json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string())
        }
        Err(e) => {
            s.problems.lock().push(e.clone());
            answer(400, &[], json!({"error": "invalid_grant", "error_description": e}).to_string())
        }
    }
}

fn check_bearer(s: &Shared, r: &Received) -> Result<(), String> {
    let token =
        r.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).ok_or("Authorization: Bearer missing")?;
    if !s.issued_tokens.lock().iter().any(|t| t == token) {
        return Err("UNAUTHENTICATED: a token this server did not issue".into());
    }
    Ok(())
}

fn ttl_seconds(v: &Value) -> bool {
    v.as_str().and_then(|t| t.strip_suffix('s')).is_some_and(|n| n.parse::<u64>().is_ok())
}

fn check_fcm(s: &Shared, r: &Received) -> Result<(), String> {
    let expect = s.expect.lock();
    let project = &expect.fcm_key.as_ref().ok_or("no project")?.2;
    if r.path != format!("/v1/projects/{project}/messages:send") {
        return Err(format!("unknown path {}", r.path));
    }
    let m = r.json()["message"].clone();
    if !m["token"].is_string() || !ttl_seconds(&m["android"]["ttl"]) {
        return Err("INVALID_ARGUMENT: message.token and android.ttl".into());
    }
    if !m["data"].as_object().is_some_and(|d| d.values().all(Value::is_string)) {
        return Err("INVALID_ARGUMENT: data values must be strings".into());
    }
    Ok(())
}

fn check_hms(s: &Shared, r: &Received) -> Result<(), String> {
    let expect = s.expect.lock();
    let app = &expect.hms.as_ref().ok_or("no HMS app")?.0;
    if r.path != format!("/v1/{app}/messages:send") {
        return Err(format!("unknown path {}", r.path));
    }
    let m = r.json()["message"].clone();
    let tokens = m["token"].as_array().map(|t| t.len()).unwrap_or(0);
    if !(1..=1000).contains(&tokens) || !ttl_seconds(&m["android"]["ttl"]) {
        return Err("80100001: message.token (1..1000) and android.ttl".into());
    }
    if m.get("data").is_some_and(|d| !d.is_string()) {
        return Err("80100003: data must be a string".into());
    }
    Ok(())
}

fn check_xiaomi(s: &Shared, r: &Received) -> Result<(), String> {
    let expect = s.expect.lock();
    let (secret, package) = expect.xiaomi.as_ref().ok_or("no Xiaomi app")?;
    if r.path != "/v3/message/regid" {
        return Err(format!("unknown path {}", r.path));
    }
    if r.header("authorization") != Some(format!("key={secret}").as_str()) {
        return Err("Authorization must be key=<AppSecret>".into());
    }
    if r.form("restricted_package_name").as_deref() != Some(package.as_str()) {
        return Err("restricted_package_name differs".into());
    }
    for field in ["registration_id", "title", "description", "payload"] {
        if r.form(field).is_none_or(|v| v.is_empty()) {
            return Err(format!("{field} missing"));
        }
    }
    r.form("time_to_live").and_then(|t| t.parse::<u64>().ok()).ok_or("time_to_live must be milliseconds")?;
    Ok(())
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(len)).expect("HKDF");
    let mut out = vec![0; len];
    okm.fill(&mut out).expect("HKDF");
    out
}

fn check_webpush(s: &Shared, r: &mut Received) -> Result<(), String> {
    r.header("ttl").and_then(|t| t.parse::<u64>().ok()).ok_or("TTL header required")?;
    if r.header("content-encoding") != Some("aes128gcm") {
        return Err("Content-Encoding must be aes128gcm".into());
    }
    let auth = r.header("authorization").ok_or("Authorization: vapid missing")?.to_string();
    let rest = auth.strip_prefix("vapid ").ok_or("Authorization must be vapid")?;
    let (mut t, mut k) = (None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v.to_string());
        }
    }
    let (t, k) = (t.ok_or("vapid t= missing")?, k.ok_or("vapid k= missing")?);
    let key = B64.decode(&k).map_err(|_| "k not base64url")?;
    let (header, claims) = jwt(&t, |msg, sig| {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &key).verify(msg, sig).is_ok()
    })?;
    let origin = format!("https://127.0.0.1:{}", s.addr.port());
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if header["alg"] != "ES256" || claims["aud"] != origin.as_str() || exp < now_secs() || exp > now_secs() + 86_400 {
        return Err(format!("bad VAPID token: {header} {claims}"));
    }
    if !claims["sub"].as_str().is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https://")) {
        return Err("VAPID sub must be mailto: or https:".into());
    }
    // RFC 8291 decryption, as a browser does it.
    let body = &r.body;
    if body.len() < 21 + 65 + 17 {
        return Err("body too short for aes128gcm".into());
    }
    let (salt, idlen) = (&body[..16], body[20] as usize);
    let as_public = &body[21..21 + idlen];
    let ciphertext = &body[21 + idlen..];
    let expect = s.expect.lock();
    let (_, private, auth_secret) =
        expect.webpush.iter().find(|(path, _, _)| *path == r.path).ok_or("no such subscription: 404")?;
    let ua_public = private.compute_public_key().map_err(|_| "key")?.as_ref().to_vec();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, as_public);
    let shared = agreement::agree(private, peer, "ECDH failed", |secret| Ok(secret.to_vec()))?;
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(&ua_public);
    info.extend_from_slice(as_public);
    let ikm = expand(auth_secret, &shared, &info, 32);
    let cek = expand(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16);
    let nonce = expand(salt, &ikm, b"Content-Encoding: nonce\0", 12);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| "cek")?);
    let mut data = ciphertext.to_vec();
    let plain = key
        .open_in_place(
            aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| "nonce")?,
            aead::Aad::empty(),
            &mut data,
        )
        .map_err(|_| "the payload does not decrypt with the subscription's key")?;
    let end = plain.iter().rposition(|b| *b != 0).ok_or("no padding delimiter")?;
    if plain[end] != 2 {
        return Err("the last record must end with delimiter 2".into());
    }
    r.plaintext = Some(String::from_utf8_lossy(&plain[..end]).into_owned());
    Ok(())
}

/// A browser's subscription: the private key and auth secret stay with the fake; the
/// `PushSubscription` JSON goes to the device's `vendorTokens.webpush`.
pub fn subscription(fake: &FakeVendor, id: &str) -> Value {
    let private = agreement::PrivateKey::generate(&agreement::ECDH_P256).expect("key");
    let public = private.compute_public_key().expect("public").as_ref().to_vec();
    let auth = herald_core::crypto::random_bytes::<16>().to_vec();
    let path = format!("/push/{id}");
    let sub = json!({
        "endpoint": format!("{}{path}", fake.url()),
        "keys": {"p256dh": B64.encode(&public), "auth": B64.encode(&auth)},
    });
    fake.expect().webpush.push((path, private, auth));
    sub
}

/// An APNs `.p8` key: (PEM, public point).
pub fn apns_key() -> (String, Vec<u8>) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair =
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
    (pem("PRIVATE KEY", pkcs8.as_ref()), pair.public_key().as_ref().to_vec())
}

/// A service account whose token URI is `fake`'s: (the JSON, the public key, PKCS#1 DER).
pub fn service_account(fake: &FakeVendor, project: &str) -> (Value, Vec<u8>) {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
    let email = format!("herald@{project}.iam.gserviceaccount.com");
    let account = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": "k1",
        "private_key": pem("PRIVATE KEY", pkcs8.as_ref()),
        "client_email": email,
        "token_uri": format!("{}/token", fake.url()),
    });
    let public = pair.public_key().as_ref().to_vec();
    fake.expect().fcm_key = Some((public.clone(), email, project.to_string()));
    (account, public)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}
