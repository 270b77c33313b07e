//! Request signing of the server API (DESIGN §4).
//!
//! ```text
//! canonical = METHOD "\n" PATH "\n" CANONICAL_QUERY "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA256(body))
//! ```
//! HMAC keys sign it with HMAC-SHA256; RSA keys with SHA256withRSA (PKCS#1 v1.5). The
//! signature is base64url without padding. A request is refused when its timestamp is
//! more than the window away from the server's clock, or its nonce was seen inside it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Uri};
use parking_lot::Mutex;

use crate::crypto::{self, MasterKey};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, KeyId};
use crate::store::{KeyKind, Store};

pub const HEADER_KEY: &str = "x-herald-key";
pub const HEADER_TIMESTAMP: &str = "x-herald-timestamp";
pub const HEADER_NONCE: &str = "x-herald-nonce";
pub const HEADER_SIGNATURE: &str = "x-herald-signature";

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters sorted by name (then value), each percent-encoded, joined by `&`.
pub fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode_component(&decode_component(k)), encode_component(&decode_component(v)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

pub fn canonical_string(
    method: &str,
    path: &str,
    query: Option<&str>,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path,
        canonical_query(query),
        timestamp,
        nonce,
        crypto::sha256_hex(body)
    )
}

/// The four signature headers for a request signed with an HMAC secret (used by
/// `herald sign`, the benchmark and the tests).
pub fn sign_hmac(
    key_id: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: i64,
) -> Vec<(String, String)> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let nonce = crypto::random_alnum(24);
    let ts = now_ms.to_string();
    let canonical = canonical_string(method, path, query, &ts, &nonce, body);
    let sig = crypto::b64url(&crypto::hmac_sha256(secret.as_bytes(), canonical.as_bytes()));
    vec![
        ("X-Herald-Key".into(), key_id.into()),
        ("X-Herald-Timestamp".into(), ts),
        ("X-Herald-Nonce".into(), nonce),
        ("X-Herald-Signature".into(), sig),
    ]
}

enum KeyMaterial {
    Hmac(Vec<u8>),
    Rsa(Vec<u8>),
}

struct CachedKey {
    fetched: Instant,
    /// `None`: no such key, or revoked.
    key: Option<Arc<(AppId, KeyMaterial)>>,
}

/// Verifies signed requests for the `/v1` API.
pub struct Verifier {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    window_ms: i64,
    key_ttl: Duration,
    keys: Mutex<HashMap<KeyId, CachedKey>>,
}

impl Verifier {
    pub fn new(store: Arc<dyn Store>, master: Arc<MasterKey>, window_secs: i64, key_ttl: Duration) -> Self {
        Verifier { store, master, window_ms: window_secs * 1000, key_ttl, keys: Mutex::new(HashMap::new()) }
    }

    /// Forgets a cached key (after a revocation on this node).
    pub fn forget(&self, key_id: &KeyId) {
        self.keys.lock().remove(key_id);
    }

    async fn key(&self, key_id: &KeyId) -> Result<Option<Arc<(AppId, KeyMaterial)>>, ApiError> {
        if let Some(c) = self.keys.lock().get(key_id)
            && c.fetched.elapsed() < self.key_ttl
        {
            return Ok(c.key.clone());
        }
        let record = self.store.api_key(key_id).await?;
        let key = match record {
            Some(r) if r.revoked_at.is_none() => {
                let material = match r.kind {
                    KeyKind::Hmac => match self.master.open(&r.material) {
                        Some(secret) => KeyMaterial::Hmac(secret),
                        None => {
                            tracing::error!(key = %key_id, "API secret cannot be decrypted: wrong master key?");
                            return Err(ApiError::new(ErrorCode::SystemError, "internal error"));
                        }
                    },
                    KeyKind::Rsa => match crypto::b64url_decode(&r.material) {
                        Some(der) => KeyMaterial::Rsa(der),
                        None => {
                            return Err(ApiError::new(ErrorCode::SystemError, "internal error"));
                        }
                    },
                };
                Some(Arc::new((r.app_id, material)))
            }
            _ => None,
        };
        self.keys.lock().insert(key_id.clone(), CachedKey { fetched: Instant::now(), key: key.clone() });
        Ok(key)
    }

    /// Checks the signature headers of a request; returns the app it speaks for.
    pub async fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<AppId, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let refuse = |code: ErrorCode, msg: &str, why: &str| {
            tracing::info!(code = code.as_str(), %why, path = uri.path(), "signed request refused");
            ApiError::new(code, msg)
        };
        let (Some(key_id), Some(ts), Some(nonce), Some(sig)) =
            (header(HEADER_KEY), header(HEADER_TIMESTAMP), header(HEADER_NONCE), header(HEADER_SIGNATURE))
        else {
            return Err(refuse(
                ErrorCode::SignatureHeadersInvalid,
                "X-Herald-Key, X-Herald-Timestamp, X-Herald-Nonce and X-Herald-Signature are required",
                "missing header",
            ));
        };
        if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(
                ErrorCode::SignatureHeadersInvalid,
                "X-Herald-Nonce must be 16 to 64 printable characters",
                "bad nonce",
            ));
        }
        let Ok(ts_ms) = ts.parse::<i64>() else {
            return Err(refuse(
                ErrorCode::SignatureHeadersInvalid,
                "X-Herald-Timestamp must be Unix milliseconds",
                "bad timestamp",
            ));
        };
        if (now_ms - ts_ms).abs() > self.window_ms {
            return Err(refuse(
                ErrorCode::TimestampOutOfWindow,
                "X-Herald-Timestamp is too far from the server's clock",
                &format!("skew {} ms", now_ms - ts_ms),
            ));
        }
        let key_id = KeyId::new(key_id);
        let Some(key) = self.key(&key_id).await? else {
            return Err(refuse(ErrorCode::ApiKeyInvalid, "unknown or revoked API key", "key not found or revoked"));
        };
        let Some(sig) = crypto::b64url_decode(sig) else {
            return Err(refuse(
                ErrorCode::SignatureMismatch,
                "the signature does not match the request",
                "signature not base64url",
            ));
        };
        let canonical = canonical_string(method.as_str(), uri.path(), uri.query(), ts, nonce, body);
        let ok = match &key.1 {
            KeyMaterial::Hmac(secret) => crypto::hmac_sha256_verify(secret, canonical.as_bytes(), &sig),
            KeyMaterial::Rsa(der) => crypto::rsa_sha256_verify(der, canonical.as_bytes(), &sig),
        };
        if !ok {
            return Err(refuse(
                ErrorCode::SignatureMismatch,
                "the signature does not match the request",
                "signature mismatch",
            ));
        }
        // Only after the signature holds, so that forged requests cannot fill the store. The
        // nonce is kept as long as a request with this timestamp could be accepted.
        if !self.store.claim_nonce(&key_id, nonce, now_ms, ts_ms + self.window_ms + 1).await? {
            return Err(refuse(ErrorCode::NonceReused, "this nonce was already used", "nonce replay"));
        }
        Ok(key.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(canonical_query(Some("b=2&a=x%20y&c")), "a=x%20y&b=2&c=");
        assert_eq!(canonical_query(Some("q=%7e~")), "q=~~");
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn canonical_string_layout() {
        let c = canonical_string("post", "/v1/push/simple", None, "1700000000000", "abcdefghijklmnop", b"{}");
        assert_eq!(
            c,
            "POST\n/v1/push/simple\n\n1700000000000\nabcdefghijklmnop\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
