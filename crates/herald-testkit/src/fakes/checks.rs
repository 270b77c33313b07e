//! What each fake checks: the vendor's paths, headers, tokens and bodies.

use aws_lc_rs::signature;
use aws_lc_rs::{aead, agreement, hkdf};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, Version};
use serde_json::{Value, json};

use super::{Received, Shared, answer};

pub(super) fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

pub(super) fn percent_decode(s: &str) -> String {
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
pub(super) fn jwt(token: &str, verify: impl Fn(&[u8], &[u8]) -> bool) -> Result<(Value, Value), String> {
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

pub(super) fn now_secs() -> i64 {
    herald_core::now_ms() / 1000
}

pub(super) fn check_apns(s: &Shared, r: &Received, version: Version) -> Result<(), String> {
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
        // A token whose signature was verified once is taken again as is, as APNs caches a
        // provider token for its hour; its header and claims are checked every time.
        let known = s.verified_tokens.lock().contains(bearer);
        let (header, claims) = jwt(bearer, |msg, sig| {
            known
                || signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
                    .verify(msg, sig)
                    .is_ok()
        })
        .map_err(|e| format!("InvalidProviderToken: {e}"))?;
        if !known {
            s.verified_tokens.lock().insert(bearer.to_string());
        }
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

pub(super) fn fcm_token(s: &Shared, r: &Received) -> Response<Full<Bytes>> {
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

pub(super) fn hms_token(s: &Shared, r: &Received) -> Response<Full<Bytes>> {
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

pub(super) fn token_answer(s: &Shared, check: Result<(), String>) -> Response<Full<Bytes>> {
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

pub(super) fn check_bearer(s: &Shared, r: &Received) -> Result<(), String> {
    let token =
        r.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).ok_or("Authorization: Bearer missing")?;
    if !s.issued_tokens.lock().iter().any(|t| t == token) {
        return Err("UNAUTHENTICATED: a token this server did not issue".into());
    }
    Ok(())
}

pub(super) fn ttl_seconds(v: &Value) -> bool {
    v.as_str().and_then(|t| t.strip_suffix('s')).is_some_and(|n| n.parse::<u64>().is_ok())
}

pub(super) fn check_fcm(s: &Shared, r: &Received) -> Result<(), String> {
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
    if m["android"]["notification"].get("tag").is_some_and(|t| !t.is_string()) {
        return Err("INVALID_ARGUMENT: android.notification.tag must be a string".into());
    }
    Ok(())
}

pub(super) fn check_hms(s: &Shared, r: &Received) -> Result<(), String> {
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
    if m["android"].get("bi_tag").is_some_and(|t| !t.is_string()) {
        return Err("80100003: android.bi_tag must be a string".into());
    }
    if m["android"]["notification"].get("notify_id").is_some_and(|id| id.as_i64().is_none_or(|i| i < 0)) {
        return Err("80100003: android.notification.notify_id must be a non-negative integer".into());
    }
    Ok(())
}

pub(super) fn check_xiaomi(s: &Shared, r: &Received) -> Result<(), String> {
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
    if r.form("notify_id").is_some_and(|id| id.parse::<u32>().is_err()) {
        return Err("notify_id must be a non-negative integer".into());
    }
    if let Some(url) = r.form("extra.callback") {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("extra.callback must be an absolute http(s) URL".into());
        }
        if r.form("extra.callback.param").is_some_and(|p| p.len() > 64) {
            return Err("extra.callback.param is longer than 64 bytes".into());
        }
        if r.form("extra.callback.type").is_some_and(|t| t.parse::<u32>().is_err()) {
            return Err("extra.callback.type must be a number".into());
        }
    }
    Ok(())
}

pub(super) struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

pub(super) fn expand(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(len)).expect("HKDF");
    let mut out = vec![0; len];
    okm.fill(&mut out).expect("HKDF");
    out
}

pub(super) fn check_webpush(s: &Shared, r: &mut Received) -> Result<(), String> {
    r.header("ttl").and_then(|t| t.parse::<u64>().ok()).ok_or("TTL header required")?;
    if r.header("topic")
        .is_some_and(|t| t.len() > 32 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err("Topic must be at most 32 base64url characters".into());
    }
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
