//! Web Push: the payload encrypted for the browser (RFC 8291, `aes128gcm` of RFC 8188) and
//! the request signed with the app's VAPID key (RFC 8292), POSTed to the subscription's
//! endpoint.
//!
//! Written on aws-lc-rs (ECDH P-256, HKDF-SHA256, AES-128-GCM), the node's one crypto
//! provider: the RustCrypto-based crate for this would bring a second elliptic-curve and AES
//! stack into the binary for some forty lines.

use aws_lc_rs::{aead, agreement, hkdf, rand::SecureRandom, signature::KeyPair};
use bytes::Bytes;
use herald_core::channel::{VendorNotification, VendorOutcome};
use herald_core::crypto::b64url_decode;
use http_body_util::Full;
use hyper::Request;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::http::HttpsClient;
use crate::setup::WebPushCredential;
use crate::{Payload, throttled, ttl_secs, unavailable, unreachable};

/// The record size announced in the header; one record carries the whole payload.
const RECORD_SIZE: u32 = 4096;
/// The most a push service must accept on the wire (RFC 8030 §7.2).
const MAX_WIRE: usize = 4096;
/// A VAPID token's life (RFC 8292: at most 24 hours).
const VAPID_SECS: i64 = 12 * 3600;

/// A new VAPID key pair: its PKCS#8 (DER).
pub fn generate_vapid_key() -> Result<Vec<u8>, String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| "cannot generate a VAPID key".to_string())
}

/// The uncompressed public point (65 bytes) of a VAPID key's PKCS#8.
pub fn decode_vapid_public(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let pair =
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| "the stored VAPID key cannot be read".to_string())?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// A length for HKDF output.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(len)).map_err(|_| "HKDF".to_string())?;
    let mut out = vec![0; len];
    okm.fill(&mut out).map_err(|_| "HKDF".to_string())?;
    Ok(out)
}

/// Encrypts `plaintext` for the subscription keys `ua_public` (65 bytes) and `auth` (16),
/// as RFC 8291 §3.4 says: one `aes128gcm` record.
pub fn encrypt(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).map_err(|_| "ECDH key")?;
    let as_public = ephemeral.compute_public_key().map_err(|_| "ECDH key")?.as_ref().to_vec();
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let shared = agreement::agree_ephemeral(ephemeral, peer, "the subscription's p256dh is not a P-256 point", |s| {
        Ok(s.to_vec())
    })
    .map_err(|e: &str| e.to_string())?;
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(&as_public);
    let ikm = hkdf(auth, &shared, &key_info, 32)?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| "random salt")?;
    let cek = hkdf(&salt, &ikm, b"Content-Encoding: aes128gcm\0", 16)?;
    let nonce = hkdf(&salt, &ikm, b"Content-Encoding: nonce\0", 12)?;
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| "AES key")?);
    let mut record = plaintext.to_vec();
    record.push(2); // the last record's delimiter, no padding
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| "nonce")?;
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record).map_err(|_| "AES-GCM")?;
    let mut out = Vec::with_capacity(16 + 4 + 1 + 65 + record.len());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(as_public.len() as u8);
    out.extend_from_slice(&as_public);
    out.extend_from_slice(&record);
    Ok(out)
}

/// The origin of an endpoint URL (`https://host[:port]`): a VAPID token's audience.
fn origin(endpoint: &str) -> Option<&str> {
    let rest = endpoint.strip_prefix("https://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&endpoint[..8 + end])
}

pub(crate) async fn send(http: &HttpsClient, c: &WebPushCredential, n: &VendorNotification) -> VendorOutcome {
    let now = herald_core::now_ms();
    let sub: Value = serde_json::from_str(&n.token).unwrap_or(Value::Null);
    let field = |path: &str| sub.pointer(path).and_then(Value::as_str).unwrap_or("");
    let endpoint = field("/endpoint");
    let (Some(aud), Some(p256dh), Some(auth)) =
        (origin(endpoint), b64url_decode(field("/keys/p256dh")), b64url_decode(field("/keys/auth")))
    else {
        return VendorOutcome::InvalidToken { reason: "not a usable PushSubscription".into() };
    };
    // A recall tells the service worker to close the notification it showed (`revoked`).
    let plaintext = if n.recall { crate::recall_json(n.message_id.as_str()) } else { n.payload.to_vec() };
    let body = match encrypt(&plaintext, &p256dh, &auth) {
        Ok(b) => b,
        Err(e) => return VendorOutcome::InvalidToken { reason: format!("Web Push encryption: {e}") },
    };
    if body.len() > MAX_WIRE {
        return VendorOutcome::Failed {
            reason: format!("payload too large for Web Push: {} bytes encrypted", body.len()),
        };
    }
    let claims = json!({"aud": aud, "exp": now / 1000 + VAPID_SECS, "sub": c.subject});
    let jwt = match crate::jwt::sign(Algorithm::ES256, None, &claims, &c.key) {
        Ok(t) => t,
        Err(reason) => return VendorOutcome::Failed { reason },
    };
    let urgency = if Payload::of(n, "").silent != 0 { "normal" } else { "high" };
    let req = Request::post(endpoint)
        .header("ttl", ttl_secs(n, now).to_string())
        .header("urgency", urgency)
        // The same topic on a later push (a revoke's recall) replaces this one while the
        // push service still holds it.
        .header("topic", crate::topic(n.message_id.as_str()))
        .header("content-encoding", "aes128gcm")
        .header("content-type", "application/octet-stream")
        .header("authorization", format!("vapid t={jwt}, k={}", c.public_key))
        .body(Full::new(Bytes::from(body)));
    let req = match req {
        Ok(r) => r,
        Err(e) => return VendorOutcome::InvalidToken { reason: format!("endpoint: {e}") },
    };
    let answer = match http.send(req).await {
        Ok(a) => a,
        Err(e) => return unreachable("Web Push", e),
    };
    let status = answer.status.as_u16();
    match status {
        200..=299 => {
            let id = answer.headers.get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
            VendorOutcome::Accepted { vendor_id: id }
        }
        404 | 410 => VendorOutcome::InvalidToken { reason: format!("Web Push {status}: subscription gone") },
        429 => throttled("Web Push", &answer.headers, ""),
        500.. => unavailable("Web Push", status, &answer.headers, ""),
        _ => VendorOutcome::Failed {
            reason: format!(
                "Web Push {status} {}",
                String::from_utf8_lossy(&answer.body).chars().take(200).collect::<String>()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_the_audience() {
        assert_eq!(origin("https://push.example:8443/a/b"), Some("https://push.example:8443"));
        assert_eq!(origin("https://push.example"), Some("https://push.example"));
        assert_eq!(origin("http://push.example/x"), None);
    }

    #[test]
    fn a_record_carries_salt_size_key_and_ciphertext() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ua = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let ua_public = ua.compute_public_key().unwrap().as_ref().to_vec();
        let out = encrypt(b"hello", &ua_public, &[9u8; 16]).unwrap();
        assert_eq!(u32::from_be_bytes(out[16..20].try_into().unwrap()), RECORD_SIZE);
        assert_eq!(out[20], 65);
        assert_eq!(out.len(), 16 + 4 + 1 + 65 + 5 + 1 + 16);
    }
}
