//! Alibaba Cloud's `ACS3-HMAC-SHA256` request signature, as the current OpenAPI SDKs make it
//! (Alibaba Cloud's "V3 signature" documentation): the canonical request is
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

use axum::http::HeaderMap;
use herald_core::signing::encode_component;

pub(crate) const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Authorization<'a> {
    pub credential: &'a str,
    /// Lower-case header names, as the client listed them.
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Reads `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`; `None` when the
/// header is not of that form.
pub(crate) fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
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

/// The query's parameters sorted by name, each `name=value` with the value encoded; `None`
/// when the query does not decode.
fn canonical_query(query: Option<&str>) -> Option<String> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Some(String::new());
    };
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.sort();
    Some(pairs.iter().map(|(k, v)| format!("{k}={}", encode_component(v))).collect::<Vec<_>>().join("&"))
}

/// The canonical request of a request; `None` when a signed header is missing or not text,
/// or the query does not decode.
pub(crate) fn canonical_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    signed_headers: &[&str],
    payload_sha256_hex: &str,
) -> Option<String> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let mut values = Vec::new();
        for v in headers.get_all(*name) {
            values.push(v.to_str().ok()?.trim());
        }
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Some(format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_sha256_hex}",
        if path.is_empty() { "/" } else { path },
        canonical_query(query)?,
        signed_headers.join(";")
    ))
}

/// What the secret signs.
pub(crate) fn string_to_sign(canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{}", herald_core::crypto::sha256_hex(canonical_request.as_bytes()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    /// A vector from the official Python SDK's own signer (`alibabacloud_tea_openapi.utils.
    /// Utils.get_authorization`, alibabacloud-tea-openapi 0.4.6) with these inputs.
    #[test]
    fn signs_as_the_official_sdk() {
        let body = b"AppId=a1&Title=Hi";
        let payload = herald_core::crypto::sha256_hex(body);
        assert_eq!(payload, "a73b542bb4001b855158679522eeb64c8494ada3f70ab7457ec3bfa1ad43b4e2");
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "127.0.0.1:8080"),
            ("x-acs-action", "PushSimple"),
            ("x-acs-version", "2020-10-28"),
            ("x-acs-date", "2026-12-06T10:00:00Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("accept", "application/json"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-acs-content-sha256", payload.as_str()),
            ("user-agent", " ua 1 "),
        ] {
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        let auth = parse_authorization(
            "ACS3-HMAC-SHA256 Credential=k1,SignedHeaders=accept;content-type;host;user-agent;x-acs-action;\
             x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,\
             Signature=1963632b42df2c8ae3c95cbc701f5285d85afdfa0d0e97ff52c4a8d907e6bdc8",
        )
        .unwrap();
        assert_eq!(auth.credential, "k1");
        let query = "A%20b=x%20y~*&Z=%C3%A9%2F";
        let canonical = canonical_request("POST", "/", Some(query), &headers, &auth.signed_headers, &payload).unwrap();
        let signature = herald_core::crypto::hmac_sha256(b"secret-1", string_to_sign(&canonical).as_bytes());
        assert_eq!(herald_core::crypto::hex(&signature), auth.signature);
    }

    #[test]
    fn refuses_what_is_not_an_acs3_authorization() {
        assert!(parse_authorization("Bearer x").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=k").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=Host,Signature=00").is_none());
        assert!(parse_authorization("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=00,X=1").is_none());
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("h"));
        assert!(canonical_request("POST", "/", None, &headers, &["host", "x-acs-date"], "00").is_none(), "missing");
    }
}
