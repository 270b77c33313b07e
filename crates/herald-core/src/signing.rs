//! Request signing of the server API (DESIGN §4), and the bind proofs an app's server gives
//! its devices: the strings that are signed, and signing with an HMAC secret (for `herald
//! sign`, the load generator and the tests). Verification, with the key store, is the API's.
//!
//! ```text
//! canonical = METHOD "\n" PATH "\n" CANONICAL_QUERY "\n" TIMESTAMP "\n" NONCE "\n" hex(SHA256(body))
//! ```

use crate::crypto;

pub const HEADER_KEY: &str = "x-herald-key";
pub const HEADER_TIMESTAMP: &str = "x-herald-timestamp";
pub const HEADER_NONCE: &str = "x-herald-nonce";
pub const HEADER_SIGNATURE: &str = "x-herald-signature";

/// Percent-encodes everything but RFC 3986 unreserved characters (a query value of the
/// canonical string; also a path segment or a form value wherever Herald builds one).
pub fn encode_component(s: &str) -> String {
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

/// Decodes `%XX` escapes (a `%` that does not start one is kept).
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

/// A query's parameters, decoded, in the order sent (`name` alone is `name=`).
pub(crate) fn decoded_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

/// The query parameters sorted by name (then value), each percent-encoded, joined by `&`.
pub fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> =
        decoded_pairs(query).into_iter().map(|(k, v)| (encode_component(&k), encode_component(&v))).collect();
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

/// The bind proof the app's server computes: HMAC-SHA256(bind secret,
/// `deviceId "\n" userId "\n" expiresAtMillis`), base64url without padding.
pub fn bind_proof(bind_secret: &[u8], device_id: &str, user_id: &str, expires_at: i64) -> String {
    crypto::b64url(&crypto::hmac_sha256(bind_secret, bind_message(device_id, user_id, expires_at).as_bytes()))
}

/// The string a bind proof signs.
pub fn bind_message(device_id: &str, user_id: &str, expires_at: i64) -> String {
    format!("{device_id}\n{user_id}\n{expires_at}")
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
