//! Alibaba Cloud's `ACS3-HMAC-SHA256` request signature, as the current OpenAPI SDKs make it
//! (Alibaba Cloud's "V3 signature" documentation). Herald's MPS-compatible endpoint verifies
//! it; [`sign_rpc`] makes it for Herald's own clients (the bench). The canonical request is
//!
//! ```text
//! METHOD \n PATH \n CANONICAL_QUERY \n CANONICAL_HEADERS \n SIGNED_HEADERS \n HEX(SHA256(body))
//! ```
//!
//! where the query's parameters are sorted by name with their values percent-encoded
//! (RFC 3986: everything but `A-Z a-z 0-9 - _ . ~`), and each signed header is
//! `name:value\n` (lower-case name, trimmed values, several values sorted and joined by
//! commas). The string to sign is `ACS3-HMAC-SHA256\n` + HEX(SHA256(canonical request)), and
//! the signature HEX(HMAC-SHA256(secret, string to sign)), sent as
//! `Authorization: ACS3-HMAC-SHA256 Credential=<key id>,SignedHeaders=<a;b;c>,Signature=<hex>`.

use crate::crypto;
use crate::signing::{decoded_pairs, encode_component};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub credential: &'a str,
    /// Lower-case header names, as the client listed them.
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Reads `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`; `None` when the
/// header is not of that form.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, v) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let signed_headers: Vec<&str> = signed?.split(';').filter(|h| !h.is_empty()).collect();
    if signed_headers.iter().any(|h| h.bytes().any(|b| b.is_ascii_uppercase())) {
        return None;
    }
    Some(Authorization { credential: credential?, signed_headers, signature: signature? })
}

/// The query's parameters sorted by name, each `name=value` with the value encoded (the
/// name as sent, as the SDKs do).
fn canonical_query(query: Option<&str>) -> String {
    let mut pairs = decoded_pairs(query);
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={}", encode_component(v))).collect::<Vec<_>>().join("&")
}

/// The canonical request of a request that sent `headers` (each `(lower-case name, value)`
/// as text; a name may come more than once); `None` when a signed header was not sent.
/// Built in one buffer: the endpoint makes one per request.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &[(&str, &str)],
    signed_headers: &[&str],
    payload_sha256_hex: &str,
) -> Option<String> {
    let sent: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(method.len() + path.len() + sent + 2 * payload_sha256_hex.len() + 64);
    out.push_str(method);
    out.push('\n');
    out.push_str(if path.is_empty() { "/" } else { path });
    out.push('\n');
    if query.is_some_and(|q| !q.is_empty()) {
        out.push_str(&canonical_query(query));
    }
    out.push('\n');
    for name in signed_headers {
        let mut values = headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim());
        let first = values.next()?;
        out.push_str(name);
        out.push(':');
        match values.next() {
            // One value (the usual case): as it is.
            None => out.push_str(first),
            Some(second) => {
                let mut all: Vec<&str> = [first, second].into_iter().chain(values).collect();
                all.sort_unstable();
                out.push_str(&all.join(","));
            }
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, name) in signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_sha256_hex);
    Some(out)
}

/// What the secret signs.
pub fn string_to_sign(canonical_request: &str) -> String {
    let mut out = String::with_capacity(ALGORITHM.len() + 65);
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(&crypto::sha256_hex(canonical_request.as_bytes()));
    out
}

/// The headers that sign a `POST /` of `form` (an RPC-style action) to `host`, as the
/// current SDKs send them: for clients of Herald's MPS endpoint (the bench, tests).
pub fn sign_rpc(
    key_id: &str,
    secret: &str,
    host: &str,
    action: &str,
    version: &str,
    form: &[u8],
    now_ms: i64,
) -> Vec<(String, String)> {
    let date = jiff::Timestamp::from_millisecond(now_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let payload = crypto::sha256_hex(form);
    let mut headers: Vec<(String, String)> = vec![
        ("content-type".into(), "application/x-www-form-urlencoded".into()),
        ("host".into(), host.into()),
        ("x-acs-action".into(), action.into()),
        ("x-acs-content-sha256".into(), payload.clone()),
        ("x-acs-date".into(), date),
        ("x-acs-signature-nonce".into(), crypto::random_alnum(32)),
        ("x-acs-version".into(), version.into()),
    ];
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let sent: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let canonical = canonical_request("POST", "/", None, &sent, &names, &payload).unwrap_or_default();
    let signature = crypto::hex(&crypto::hmac_sha256(secret.as_bytes(), string_to_sign(&canonical).as_bytes()));
    let auth = format!("{ALGORITHM} Credential={key_id},SignedHeaders={},Signature={signature}", names.join(";"));
    headers.push(("authorization".into(), auth));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector from the official Python SDK's own signer (`alibabacloud_tea_openapi.utils.
    /// Utils.get_authorization`, alibabacloud-tea-openapi 0.4.6) with these inputs.
    #[test]
    fn signs_as_the_official_sdk() {
        let body = b"AppId=a1&Title=Hi";
        let payload = crypto::sha256_hex(body);
        assert_eq!(payload, "a73b542bb4001b855158679522eeb64c8494ada3f70ab7457ec3bfa1ad43b4e2");
        let headers: Vec<(&str, &str)> = vec![
            ("host", "127.0.0.1:8080"),
            ("x-acs-action", "PushSimple"),
            ("x-acs-version", "2020-10-28"),
            ("x-acs-date", "2026-12-06T10:00:00Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("accept", "application/json"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-acs-content-sha256", payload.as_str()),
            ("user-agent", " ua 1 "),
        ];
        let auth = parse_authorization(
            "ACS3-HMAC-SHA256 Credential=k1,SignedHeaders=accept;content-type;host;user-agent;x-acs-action;\
             x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,\
             Signature=1963632b42df2c8ae3c95cbc701f5285d85afdfa0d0e97ff52c4a8d907e6bdc8",
        )
        .unwrap();
        assert_eq!(auth.credential, "k1");
        let query = "A%20b=x%20y~*&Z=%C3%A9%2F";
        let canonical = canonical_request("POST", "/", Some(query), &headers, &auth.signed_headers, &payload).unwrap();
        let signature = crypto::hmac_sha256(b"secret-1", string_to_sign(&canonical).as_bytes());
        assert_eq!(crypto::hex(&signature), auth.signature);
    }

    /// What `sign_rpc` makes verifies as the endpoint verifies it.
    #[test]
    fn a_signed_rpc_request_verifies() {
        let headers = sign_rpc("k1", "s1", "127.0.0.1:1", "PushSimple", "2020-10-28", b"AppId=a", 1_000);
        let auth = headers.iter().find(|(k, _)| k == "authorization").unwrap().1.clone();
        let auth = parse_authorization(&auth).unwrap();
        let sent: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let canonical =
            canonical_request("POST", "/", None, &sent, &auth.signed_headers, &crypto::sha256_hex(b"AppId=a")).unwrap();
        let signature = crypto::hmac_sha256(b"s1", string_to_sign(&canonical).as_bytes());
        assert_eq!(crypto::hex(&signature), auth.signature);
        assert!(headers.contains(&("x-acs-date".into(), "1970-01-01T00:00:01Z".into())));
    }

    /// A header sent twice: its values trimmed, sorted and joined by commas.
    #[test]
    fn a_repeated_header_is_one_sorted_line() {
        let sent = [("x-acs-b", " 2 "), ("host", "h"), ("x-acs-b", "1")];
        let canonical = canonical_request("POST", "", Some("b=2&a=1"), &sent, &["host", "x-acs-b"], "00").unwrap();
        assert_eq!(canonical, "POST\n/\na=1&b=2\nhost:h\nx-acs-b:1,2\n\nhost;x-acs-b\n00");
    }

    #[test]
    fn refuses_what_is_not_an_acs3_authorization() {
        assert!(parse_authorization("Bearer x").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=k").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=Host,Signature=00").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=00,X=1").is_none());
        let sent = [("host", "h")];
        assert!(canonical_request("POST", "/", None, &sent, &["host", "x-acs-date"], "00").is_none(), "missing");
    }
}
