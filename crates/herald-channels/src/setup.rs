//! A channel's configuration: checked when an app (or the operator) sets it, split into the
//! settings that may be shown and the secrets that are sealed (and never shown again), and
//! opened back into a [`Credential`] when a sender needs it.
//!
//! What each kind takes is DESIGN §7's `PUT /v1/channels/{kind}` body.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_core::state::Channel;
use jsonwebtoken::EncodingKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value, json};

/// What is wrong with a channel's configuration, in the caller's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(what: impl Into<String>) -> SetupError {
    SetupError(what.into())
}

/// A checked configuration: what may be shown, what is sealed, and what to warn about.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub settings: Map<String, Value>,
    pub secret: Map<String, Value>,
    pub warnings: Vec<String>,
}

/// An APNs certificate within this many days of its end is warned about.
pub const CERT_WARNING_DAYS: i64 = 30;
/// The longest text field of a configuration (ids, names, subjects).
const MAX_FIELD: usize = 256;
/// The largest key or certificate accepted (PEM, base64 or JSON).
const MAX_KEY: usize = 64 * 1024;

/// The names of the secret fields of a kind: a GET shows each as masked.
pub fn secret_fields(kind: Channel) -> &'static [&'static str] {
    match kind {
        Channel::Apns => &["privateKey", "certificate", "password"],
        Channel::Fcm => &["privateKey"],
        Channel::Hms => &["clientSecret", "callbackKey"],
        Channel::Xiaomi => &["appSecret"],
        Channel::WebPush => &["privateKey"],
        Channel::Own => &[],
    }
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, SetupError> {
    let v = body.get(name).and_then(Value::as_str).ok_or_else(|| bad(format!("{name} is required (a string)")))?;
    if v.is_empty() || v.len() > MAX_FIELD || v.chars().any(char::is_control) {
        return Err(bad(format!("{name} must be 1 to {MAX_FIELD} characters without control characters")));
    }
    Ok(v)
}

fn key_text<'a>(body: &'a Value, name: &str) -> Result<&'a str, SetupError> {
    let v = body.get(name).and_then(Value::as_str).ok_or_else(|| bad(format!("{name} is required (a string)")))?;
    if v.is_empty() || v.len() > MAX_KEY {
        return Err(bad(format!("{name} must be 1 to {MAX_KEY} bytes")));
    }
    Ok(v)
}

/// Checks a `PUT /v1/channels/{kind}` body as of `now` (Unix ms). `current` is the
/// channel's secret now (Web Push keeps its key pair across a PUT unless asked to rotate).
pub fn parse(kind: Channel, body: &Value, now: i64, current: Option<&Map<String, Value>>) -> Result<Setup, SetupError> {
    if !body.is_object() {
        return Err(bad("the body must be a JSON object"));
    }
    match kind {
        Channel::Apns => apns(body, now),
        Channel::Fcm => fcm(body),
        Channel::Hms => {
            let (app_id, secret) = (field(body, "appId")?, field(body, "clientSecret")?);
            // The receipt callback's credentials, as set in AppGallery Connect: both or none.
            match (body.get("callbackUserName"), body.get("callbackKey")) {
                (None, None) => Ok(plain(json!({"appId": app_id}), json!({"clientSecret": secret}))),
                (Some(_), Some(_)) => {
                    let (user, key) = (field(body, "callbackUserName")?, field(body, "callbackKey")?);
                    Ok(plain(
                        json!({"appId": app_id, "callbackUserName": user}),
                        json!({"clientSecret": secret, "callbackKey": key}),
                    ))
                }
                _ => Err(bad("callbackUserName and callbackKey go together (both, or neither)")),
            }
        }
        Channel::Xiaomi => {
            let (secret, package) = (field(body, "appSecret")?, field(body, "packageName")?);
            Ok(plain(json!({"packageName": package}), json!({"appSecret": secret})))
        }
        Channel::WebPush => webpush(body, current),
        Channel::Own => Err(bad("the own channel has no configuration")),
    }
}

fn plain(settings: Value, secret: Value) -> Setup {
    let map = |v: Value| v.as_object().cloned().unwrap_or_default();
    Setup { settings: map(settings), secret: map(secret), warnings: Vec::new() }
}

fn environment(body: &Value) -> Result<&'static str, SetupError> {
    match body.get("environment").and_then(Value::as_str) {
        Some("production") => Ok("production"),
        Some("sandbox") => Ok("sandbox"),
        _ => Err(bad("environment must be \"production\" or \"sandbox\"")),
    }
}

fn apns(body: &Value, now: i64) -> Result<Setup, SetupError> {
    let bundle_id = field(body, "bundleId")?;
    let env = environment(body)?;
    match body.get("authType").and_then(Value::as_str) {
        Some("token") => {
            let (key_id, team_id) = (field(body, "keyId")?, field(body, "teamId")?);
            for (name, v) in [("keyId", key_id), ("teamId", team_id)] {
                if v.len() != 10 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(bad(format!("{name} must be Apple's 10-character identifier")));
                }
            }
            let pem = key_text(body, "privateKey")?;
            p256_key(pem).ok_or_else(|| bad("privateKey must be the PEM of the .p8 key (a P-256 key in PKCS#8)"))?;
            Ok(plain(
                json!({"authType": "token", "keyId": key_id, "teamId": team_id, "bundleId": bundle_id, "environment": env}),
                json!({"privateKey": pem}),
            ))
        }
        Some("certificate") => {
            let p12 = key_text(body, "certificate")?;
            let password = body.get("password").and_then(Value::as_str).unwrap_or("");
            let cert = open_p12(p12, password)?;
            if cert.not_after <= now {
                return Err(bad(format!(
                    "the certificate expired at {} (Unix ms); upload a current one",
                    cert.not_after
                )));
            }
            let mut warnings = Vec::new();
            if cert.not_after - now < CERT_WARNING_DAYS * 86_400_000 {
                warnings.push(format!("the certificate expires within {CERT_WARNING_DAYS} days"));
            }
            let settings = json!({
                "authType": "certificate", "bundleId": bundle_id, "environment": env,
                "subject": cert.subject, "notAfter": cert.not_after,
            });
            let mut setup = plain(settings, json!({"certificate": p12, "password": password}));
            setup.warnings = warnings;
            Ok(setup)
        }
        _ => Err(bad("authType must be \"token\" (a .p8 key) or \"certificate\" (a .p12)")),
    }
}

fn fcm(body: &Value) -> Result<Setup, SetupError> {
    let account = match body.get("serviceAccount") {
        Some(Value::String(s)) if s.len() <= MAX_KEY => {
            serde_json::from_str(s).map_err(|_| bad("serviceAccount must be the service-account JSON"))?
        }
        Some(v @ Value::Object(_)) => v.clone(),
        _ => return Err(bad("serviceAccount is required: the service-account JSON object")),
    };
    if account.get("type").and_then(Value::as_str) != Some("service_account") {
        return Err(bad("serviceAccount.type must be \"service_account\""));
    }
    let name = |n: &str| field(&account, n).map_err(|e| bad(format!("serviceAccount.{e}")));
    let (project, email, token_uri) = (name("project_id")?, name("client_email")?, name("token_uri")?);
    if !token_uri.starts_with("https://") {
        return Err(bad("serviceAccount.token_uri must be an https:// URL"));
    }
    let key_id = account.get("private_key_id").and_then(Value::as_str).unwrap_or("");
    let pem = key_text(&account, "private_key").map_err(|e| bad(format!("serviceAccount.{e}")))?;
    rsa_key(pem).ok_or_else(|| bad("serviceAccount.private_key must be an RSA key of 2048 bits or more (PEM)"))?;
    Ok(plain(
        json!({"projectId": project, "clientEmail": email, "tokenUri": token_uri, "privateKeyId": key_id}),
        json!({"privateKey": pem}),
    ))
}

fn webpush(body: &Value, current: Option<&Map<String, Value>>) -> Result<Setup, SetupError> {
    let subject = field(body, "subject")?;
    if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
        return Err(bad("subject must be a mailto: or https:// contact"));
    }
    let rotate = body.get("rotateKey").and_then(Value::as_bool).unwrap_or(false);
    let kept = current.and_then(|c| c.get("privateKey")).and_then(Value::as_str).filter(|_| !rotate);
    let pkcs8 = match kept.and_then(herald_core::crypto::b64url_decode) {
        Some(der) => der,
        None => crate::webpush::generate_vapid_key().map_err(bad)?,
    };
    let public = crate::webpush::decode_vapid_public(&pkcs8).map_err(bad)?;
    Ok(plain(
        json!({"subject": subject, "publicKey": herald_core::crypto::b64url(&public)}),
        json!({"privateKey": herald_core::crypto::b64url(&pkcs8)}),
    ))
}

/// An APNs `.p8` key's signing key.
fn p256_key(pem: &str) -> Option<EncodingKey> {
    let der = herald_core::crypto::pem_to_der(pem)?;
    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .ok()?;
    Some(EncodingKey::from_ec_der(&der))
}

/// A service account's RSA key (aws-lc-rs refuses keys under 2048 bits).
fn rsa_key(pem: &str) -> Option<EncodingKey> {
    let der = herald_core::crypto::pem_to_der(pem)?;
    aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).ok()?;
    EncodingKey::from_rsa_pem(pem.as_bytes()).ok()
}

/// A `.p12` opened: the client certificate chain and key, and what is shown of it.
struct P12 {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    subject: String,
    not_after: i64,
}

fn open_p12(base64: &str, password: &str) -> Result<P12, SetupError> {
    let data = STANDARD.decode(base64.trim()).map_err(|_| bad("certificate must be the .p12 file in base64"))?;
    let store = p12_keystore::KeyStore::from_pkcs12(&data, password, p12_keystore::Pkcs12ImportPolicy::Relaxed)
        .map_err(|_| bad("the .p12 cannot be opened with this password"))?;
    let (_, chain) =
        store.private_key_chain().ok_or_else(|| bad("the .p12 holds no private key with a certificate"))?;
    let leaf = chain.certs().first().ok_or_else(|| bad("the .p12 holds no certificate for its key"))?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf.as_der()).map_err(|_| bad("the .p12's certificate cannot be read"))?;
    Ok(P12 {
        chain: chain.certs().iter().map(|c| CertificateDer::from(c.as_der().to_vec())).collect(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec())),
        subject: parsed.subject().to_string(),
        not_after: parsed.validity().not_after.timestamp() * 1000,
    })
}

/// An app's channel, ready for its sender.
pub enum Credential {
    Apns(ApnsCredential),
    Fcm(FcmCredential),
    Hms(HmsCredential),
    Xiaomi(XiaomiCredential),
    WebPush(WebPushCredential),
}

pub struct ApnsCredential {
    /// Names the provider-token cache entry or the certificate's connection pool.
    pub(crate) id: String,
    pub(crate) topic: String,
    pub(crate) sandbox: bool,
    pub(crate) auth: ApnsAuth,
}

pub(crate) enum ApnsAuth {
    Token { key_id: String, team_id: String, key: EncodingKey },
    Certificate { chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static> },
}

pub struct FcmCredential {
    pub(crate) project_id: String,
    pub(crate) client_email: String,
    pub(crate) token_uri: String,
    pub(crate) key_id: String,
    pub(crate) key: EncodingKey,
}

pub struct HmsCredential {
    pub(crate) app_id: String,
    pub(crate) client_secret: String,
}

pub struct XiaomiCredential {
    pub(crate) app_secret: String,
    pub(crate) package_name: String,
    /// Where Xiaomi posts receipts of the messages sent (`receiptUrl` of the settings the
    /// node opens the channel with), when the node has a public address.
    pub(crate) callback: Option<String>,
}

pub struct WebPushCredential {
    pub(crate) subject: String,
    /// The VAPID public key, base64url (the `k` of the Authorization header).
    pub(crate) public_key: String,
    pub(crate) key: EncodingKey,
}

impl Credential {
    /// Opens a stored channel (`version` tells configurations apart: a rotated secret gets
    /// fresh tokens and connections).
    pub fn open(
        kind: Channel,
        settings: &Map<String, Value>,
        secret: &Map<String, Value>,
        version: i64,
    ) -> Result<Credential, SetupError> {
        let s = |name: &str| settings.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        let k = |name: &str| secret.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        let stored =
            |what: &str| bad(format!("the stored {kind} channel's {what} cannot be used; set the channel again"));
        Ok(match kind {
            Channel::Apns => {
                let sandbox = s("environment") == "sandbox";
                let auth = if s("authType") == "certificate" {
                    let p12 = open_p12(&k("certificate"), &k("password"))?;
                    ApnsAuth::Certificate { chain: p12.chain, key: p12.key }
                } else {
                    let key = p256_key(&k("privateKey")).ok_or_else(|| stored("key"))?;
                    ApnsAuth::Token { key_id: s("keyId"), team_id: s("teamId"), key }
                };
                let id = match &auth {
                    ApnsAuth::Token { .. } => format!("token/{}/{}/{version}", s("teamId"), s("keyId")),
                    ApnsAuth::Certificate { .. } => format!("cert/{}/{}/{version}", s("subject"), s("environment")),
                };
                Credential::Apns(ApnsCredential { id, topic: s("bundleId"), sandbox, auth })
            }
            Channel::Fcm => Credential::Fcm(FcmCredential {
                project_id: s("projectId"),
                client_email: s("clientEmail"),
                token_uri: s("tokenUri"),
                key_id: s("privateKeyId"),
                key: rsa_key(&k("privateKey")).ok_or_else(|| stored("key"))?,
            }),
            Channel::Hms => Credential::Hms(HmsCredential { app_id: s("appId"), client_secret: k("clientSecret") }),
            Channel::Xiaomi => {
                let callback = Some(s("receiptUrl")).filter(|u| u.starts_with("http"));
                Credential::Xiaomi(XiaomiCredential {
                    app_secret: k("appSecret"),
                    package_name: s("packageName"),
                    callback,
                })
            }
            Channel::WebPush => {
                let der = herald_core::crypto::b64url_decode(&k("privateKey")).ok_or_else(|| stored("key"))?;
                Credential::WebPush(WebPushCredential {
                    subject: s("subject"),
                    public_key: s("publicKey"),
                    key: EncodingKey::from_ec_der(&der),
                })
            }
            Channel::Own => return Err(bad("the own channel has no credential")),
        })
    }
}
