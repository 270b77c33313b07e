//! Alibaba Cloud's version 1 RPC signature, as the older MPS SDKs make it
//! (`aliyun-python-sdk-core` with `aliyun-python-sdk-mpaas`, API version 2019-08-21): the
//! common parameters (`Action`, `AccessKeyId`, `SignatureMethod=HMAC-SHA1`,
//! `SignatureVersion=1.0`, `SignatureNonce`, `Timestamp`, `Signature`…) in the query, the
//! action's in the form body. Every parameter but `Signature`, query and body together, sorted
//! by name and each `name=value` percent-encoded (RFC 3986), joined by `&`; the string to sign
//! is `METHOD&%2F&` + that string percent-encoded again; the signature is
//! BASE64(HMAC-SHA1(secret + "&", string to sign)).

use std::borrow::Cow;

use herald_core::signing::encode_component;

/// The parameters of the signature, not of the action.
pub(super) const COMMON: [&str; 11] = [
    "Action",
    "Version",
    "Format",
    "RegionId",
    "Timestamp",
    "SignatureMethod",
    "SignatureType",
    "SignatureVersion",
    "SignatureNonce",
    "AccessKeyId",
    "Signature",
];

/// What signs a request: every parameter but the signature.
pub(super) fn string_to_sign(method: &str, params: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let mut pairs: Vec<(&str, &str)> =
        params.iter().filter(|(k, _)| k != "Signature").map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    pairs.sort();
    let canonical: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v))).collect();
    format!("{method}&%2F&{}", encode_component(&canonical.join("&")))
}

/// Whether `signature` (base64) is the HMAC-SHA1 of `string_to_sign` by `secret`.
pub(super) fn signature_holds(secret: &[u8], string_to_sign: &str, signature: &str) -> bool {
    let Some(tag) = herald_core::crypto::b64url_decode(signature) else { return false };
    let key = [secret, b"&"].concat();
    herald_core::crypto::hmac_sha1_verify(&key, string_to_sign.as_bytes(), &tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official SDK's signature of these parameters (aliyunsdkcore 2.16.1,
    /// `rpc_signature_composer`, secret `s`), captured from a request it sent.
    #[test]
    fn signs_as_the_official_sdk() {
        let query = "Version=2019-08-21&Action=PushSimple&Format=JSON&RegionId=cn-hangzhou&\
             Timestamp=2026-12-06T11%3A32%3A27Z&SignatureMethod=HMAC-SHA1&SignatureType=&SignatureVersion=1.0&\
             SignatureNonce=15a099ebb1a2ff239fe19e70f3e252ed&AccessKeyId=k&Signature=r9fjidmoDytM69PE73C9gHVDwzc%3D";
        let body = "AppId=a&WorkspaceId=w&TaskName=t&DeliveryType=1&TargetMsgkey=%7B%22d1%22%3A%22k%22%7D&\
             Title=Hello&Content=c&ExpiredSeconds=300";
        let mut params = super::super::form(query.as_bytes());
        params.extend(super::super::form(body.as_bytes()));
        let text = string_to_sign("POST", &params);
        assert!(signature_holds(b"s", &text, "r9fjidmoDytM69PE73C9gHVDwzc="));
        assert!(!signature_holds(b"not-s", &text, "r9fjidmoDytM69PE73C9gHVDwzc="));
        params.push(("Extra".into(), "1".into()));
        assert!(!signature_holds(b"s", &string_to_sign("POST", &params), "r9fjidmoDytM69PE73C9gHVDwzc="));
    }
}
