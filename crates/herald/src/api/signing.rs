//! Verification of signed requests of the server API (DESIGN §4; the canonical string is
//! `herald_core::signing`'s). HMAC keys sign it with HMAC-SHA256; RSA keys with
//! SHA256withRSA (PKCS#1 v1.5). The signature is base64url without padding. A request is
//! refused when its timestamp is more than the window away from the server's clock, or its
//! nonce was seen inside it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Uri};
use parking_lot::Mutex;

use herald_core::crypto::{self, MasterKey};
use herald_core::error::ErrorCode;
use herald_core::ids::{AppId, KeyId};
use herald_core::signing::{HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, canonical_string};
use herald_core::state::KeyKind;
use herald_core::untrusted::Untrusted;
use herald_store::Store;

use super::Refusal;

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
    /// When this node last recorded each key's use (keys that signed an accepted request).
    used: Mutex<HashMap<KeyId, i64>>,
    /// Each app's MPS workspace as last read, and when (apps whose keys signed a request of
    /// the MPS endpoint).
    workspaces: Mutex<HashMap<AppId, CachedWorkspace>>,
}

/// An app's MPS workspace (`None`: any) and when it was read.
type CachedWorkspace = (Instant, Option<Arc<str>>);

/// A key's use is recorded at most this often per node (its `lastUsedAt` is to the minute).
const RECORD_USE_EVERY_MS: i64 = 60_000;

impl Verifier {
    pub fn new(store: Arc<dyn Store>, master: Arc<MasterKey>, window_secs: i64, key_ttl: Duration) -> Self {
        let (keys, used, workspaces) = (Mutex::default(), Mutex::default(), Mutex::default());
        Verifier { store, master, window_ms: window_secs * 1000, key_ttl, keys, used, workspaces }
    }

    /// The MPS workspace of an app (`None`: any), read again after the key cache's time or
    /// [`Verifier::forget_workspace`].
    pub async fn workspace(&self, app_id: &AppId) -> Result<Option<Arc<str>>, Refusal> {
        if let Some((fetched, w)) = self.workspaces.lock().get(app_id)
            && fetched.elapsed() < self.key_ttl
        {
            return Ok(w.clone());
        }
        let w: Option<Arc<str>> = self.store.app(app_id).await?.and_then(|a| a.workspace_id).map(Arc::from);
        self.workspaces.lock().insert(app_id.clone(), (Instant::now(), w.clone()));
        Ok(w)
    }

    /// Forgets an app's cached workspace (after a change on this node).
    pub fn forget_workspace(&self, app_id: &AppId) {
        self.workspaces.lock().remove(app_id);
    }

    /// Forgets a cached key (after a revocation on this node).
    pub fn forget(&self, key_id: &KeyId) {
        self.keys.lock().remove(key_id);
    }

    async fn key(&self, key_id: &KeyId) -> Result<Option<Arc<(AppId, KeyMaterial)>>, Refusal> {
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
                            return Err(Refusal::new(ErrorCode::SystemError, "internal error"));
                        }
                    },
                    KeyKind::Rsa => match crypto::b64url_decode(&r.material) {
                        Some(der) => KeyMaterial::Rsa(der),
                        None => {
                            return Err(Refusal::new(ErrorCode::SystemError, "internal error"));
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

    /// Records that `key_id` signed an accepted request, at most once a minute (committed with
    /// the store's next writes; nobody waits for it).
    fn record_use(&self, key_id: &KeyId, now_ms: i64) {
        let due = {
            let mut used = self.used.lock();
            match used.get_mut(key_id) {
                Some(last) if now_ms - *last < RECORD_USE_EVERY_MS => false,
                Some(last) => {
                    *last = now_ms;
                    true
                }
                None => {
                    used.insert(key_id.clone(), now_ms);
                    true
                }
            }
        };
        if due {
            self.store.record(herald_core::model::StatusUpdate::KeyUsed { key_id: key_id.clone(), at: now_ms });
        }
    }

    /// Checks the signature headers of a request; returns the app it speaks for.
    pub async fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<AppId, Refusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let refuse = |code: ErrorCode, msg: &str, why: &str| {
            tracing::info!(code = code.as_str(), %why, path = %Untrusted(uri.path()), "signed request refused");
            Refusal::new(code, msg)
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
        // A signature that is not base64url is refused as not matching, once the key is known.
        let sig = crypto::b64url_decode(sig).unwrap_or_default();
        let canonical = canonical_string(method.as_str(), uri.path(), uri.query(), ts, nonce, body);
        let signed = |key: &KeyMaterial| match key {
            KeyMaterial::Hmac(secret) => crypto::hmac_sha256_verify(secret, canonical.as_bytes(), &sig),
            KeyMaterial::Rsa(der) => crypto::rsa_sha256_verify(der, canonical.as_bytes(), &sig),
        };
        self.accept(key_id, ts_ms, nonce, now_ms, uri.path(), signed).await
    }

    /// Checks a request signed with an HMAC key another way (the MPS endpoint's
    /// `ACS3-HMAC-SHA256`): `signed` tells, given the key's secret, whether the signature
    /// holds. The same window, key and nonce rules as [`Verifier::verify`]; with an RSA key
    /// the signature never holds (it has no secret to sign with).
    pub async fn verify_hmac(
        &self,
        key_id: &str,
        ts_ms: i64,
        nonce: &str,
        now_ms: i64,
        path: &str,
        signed: impl FnOnce(&[u8]) -> bool,
    ) -> Result<AppId, Refusal> {
        if (now_ms - ts_ms).abs() > self.window_ms {
            tracing::info!(code = "TIMESTAMP_OUT_OF_WINDOW", skew_ms = now_ms - ts_ms, path = %Untrusted(path), "signed request refused");
            return Err(Refusal::new(
                ErrorCode::TimestampOutOfWindow,
                "the request's date is too far from the server's clock",
            ));
        }
        let signed = |key: &KeyMaterial| match key {
            KeyMaterial::Hmac(secret) => signed(secret),
            KeyMaterial::Rsa(_) => false,
        };
        self.accept(key_id, ts_ms, nonce, now_ms, path, signed).await
    }

    /// The rules every signed request passes once its timestamp is in the window: a known
    /// key, a signature that holds (`signed`), a nonce not seen.
    async fn accept(
        &self,
        key_id: &str,
        ts_ms: i64,
        nonce: &str,
        now_ms: i64,
        path: &str,
        signed: impl FnOnce(&KeyMaterial) -> bool,
    ) -> Result<AppId, Refusal> {
        let refuse = |code: ErrorCode, msg: &str, why: &str| {
            tracing::info!(code = code.as_str(), %why, path = %Untrusted(path), "signed request refused");
            Refusal::new(code, msg)
        };
        if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(
                ErrorCode::SignatureHeadersInvalid,
                "the nonce must be 16 to 64 printable characters",
                "bad nonce",
            ));
        }
        let key_id = KeyId::new(key_id);
        let Some(key) = self.key(&key_id).await? else {
            return Err(refuse(ErrorCode::ApiKeyInvalid, "unknown or revoked API key", "key not found or revoked"));
        };
        if !signed(&key.1) {
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
        self.record_use(&key_id, now_ms);
        Ok(key.0.clone())
    }
}
