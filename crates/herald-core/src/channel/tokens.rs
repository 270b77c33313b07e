//! The vendor tokens a device reports (`vendorTokens` on register and report), checked and
//! put into the one form they are stored, routed and compared in: a string per channel
//! (Web Push's subscription as compact JSON).
//!
//! Limits (documented in docs/channels.md): an APNs token is 64 to 200 hex digits; an FCM
//! token at most 4,096 characters, HMS and Xiaomi tokens at most 512, each printable ASCII
//! without spaces; a Web Push subscription's endpoint is an `https://` URL of at most 2,048
//! characters, `p256dh` an uncompressed P-256 point and `auth` 16 bytes (both base64url).

use serde_json::{Map, Value};

use crate::crypto::b64url_decode;
use crate::state::Channel;

pub const APNS_TOKEN_MAX: usize = 200;
pub const FCM_TOKEN_MAX: usize = 4096;
pub const VENDOR_TOKEN_MAX: usize = 512;
pub const WEBPUSH_ENDPOINT_MAX: usize = 2048;

/// The stored form of `token` for `channel`, or what is wrong with it (in the caller's
/// words: `vendorTokens.<channel> …`).
pub fn stored_form(channel: Channel, token: &Value) -> Result<String, String> {
    let name = channel.as_str();
    match channel {
        Channel::Own => Err("the own channel has no token".into()),
        Channel::WebPush => subscription(token).map_err(|why| format!("vendorTokens.webpush: {why}")),
        Channel::Apns => {
            let t = text(token, name)?;
            if !(64..=APNS_TOKEN_MAX).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("vendorTokens.apns must be 64 to {APNS_TOKEN_MAX} hex digits"));
            }
            Ok(t.to_ascii_lowercase())
        }
        Channel::Fcm | Channel::Hms | Channel::Xiaomi => {
            let max = if channel == Channel::Fcm { FCM_TOKEN_MAX } else { VENDOR_TOKEN_MAX };
            let t = text(token, name)?;
            if t.is_empty() || t.len() > max || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("vendorTokens.{name} must be 1 to {max} printable characters without spaces"));
            }
            Ok(t.to_owned())
        }
    }
}

fn text<'a>(token: &'a Value, name: &str) -> Result<&'a str, String> {
    token.as_str().ok_or_else(|| format!("vendorTokens.{name} must be a string"))
}

/// A browser's PushSubscription (`{endpoint, keys: {p256dh, auth}}`, or its JSON string),
/// as compact JSON with only those fields.
fn subscription(token: &Value) -> Result<String, String> {
    let parsed;
    let object = match token {
        Value::String(s) if s.len() <= 4 * WEBPUSH_ENDPOINT_MAX => {
            parsed = serde_json::from_str::<Value>(s).map_err(|_| "not a PushSubscription JSON".to_string())?;
            &parsed
        }
        Value::String(_) => return Err("longer than a PushSubscription can be".into()),
        other => other,
    };
    let field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let endpoint = field(object, "endpoint").ok_or("endpoint missing")?;
    if !endpoint.starts_with("https://")
        || endpoint.len() > WEBPUSH_ENDPOINT_MAX
        || endpoint.contains(char::is_whitespace)
    {
        return Err(format!("endpoint must be an https:// URL of at most {WEBPUSH_ENDPOINT_MAX} characters"));
    }
    let keys = object.get("keys").ok_or("keys missing")?;
    let p256dh = field(keys, "p256dh").ok_or("keys.p256dh missing")?;
    let auth = field(keys, "auth").ok_or("keys.auth missing")?;
    if !b64url_decode(&p256dh).is_some_and(|k| k.len() == 65 && k[0] == 4) {
        return Err("keys.p256dh must be an uncompressed P-256 public key, base64url".into());
    }
    if b64url_decode(&auth).is_none_or(|a| a.len() != 16) {
        return Err("keys.auth must be 16 bytes, base64url".into());
    }
    Ok(serde_json::json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}).to_string())
}

/// Checks reported `vendorTokens` and puts each into its stored form; `null` (removal)
/// stays `null`. The error names the field at fault.
pub fn check_reported(tokens: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in tokens {
        let Some(channel) = Channel::parse(&k).filter(|c| c.is_vendor()) else {
            let names: Vec<&str> = Channel::VENDORS.iter().map(|c| c.as_str()).collect();
            let shown: String = k.chars().take(32).collect();
            return Err(format!("vendorTokens: unknown channel {shown:?}; one of {}", names.join(", ")));
        };
        let stored = if v.is_null() { Value::Null } else { Value::String(stored_form(channel, &v)?) };
        out.insert(k, stored);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(p256dh: &str, auth: &str) -> Value {
        json!({"endpoint": "https://push.example/abc", "keys": {"p256dh": p256dh, "auth": auth}, "expirationTime": null})
    }

    #[test]
    fn apns_tokens_are_hex_and_lowercased() {
        let t = "AB".repeat(32);
        assert_eq!(stored_form(Channel::Apns, &json!(t)).unwrap(), "ab".repeat(32));
        assert!(stored_form(Channel::Apns, &json!("xyz")).is_err());
        assert!(stored_form(Channel::Apns, &json!("a".repeat(202))).is_err());
        assert!(stored_form(Channel::Apns, &json!(12)).is_err());
    }

    #[test]
    fn other_tokens_have_a_maximum() {
        assert!(stored_form(Channel::Fcm, &json!("a".repeat(4096))).is_ok());
        assert!(stored_form(Channel::Fcm, &json!("a".repeat(4097))).is_err());
        assert!(stored_form(Channel::Hms, &json!("a".repeat(513))).is_err());
        assert!(stored_form(Channel::Xiaomi, &json!("a b")).is_err());
        assert!(stored_form(Channel::Xiaomi, &json!("")).is_err());
    }

    #[test]
    fn a_subscription_is_stored_as_compact_json_from_object_or_string() {
        let p = crate::crypto::b64url(&[4u8; 65]);
        let a = crate::crypto::b64url(&[7u8; 16]);
        let from_object = stored_form(Channel::WebPush, &sub(&p, &a)).unwrap();
        let from_string = stored_form(Channel::WebPush, &json!(sub(&p, &a).to_string())).unwrap();
        assert_eq!(from_object, from_string);
        assert!(!from_object.contains("expirationTime"));
        assert!(stored_form(Channel::WebPush, &sub(&p, "short")).is_err());
        assert!(stored_form(Channel::WebPush, &sub(&crate::crypto::b64url(&[3u8; 65]), &a)).is_err());
        let plain = json!({"endpoint": "http://push.example/x", "keys": {"p256dh": p, "auth": a}});
        assert!(stored_form(Channel::WebPush, &plain).unwrap_err().contains("https://"));
    }

    #[test]
    fn reported_tokens_name_the_field_at_fault() {
        let bad: Map<String, Value> = serde_json::from_value(json!({"fcm": "ok", "apns": "zz"})).unwrap();
        assert!(check_reported(bad).unwrap_err().contains("vendorTokens.apns"));
        let unknown: Map<String, Value> = serde_json::from_value(json!({"own": "x"})).unwrap();
        assert!(check_reported(unknown).unwrap_err().contains("unknown channel"));
        let removal: Map<String, Value> = serde_json::from_value(json!({"hms": null})).unwrap();
        assert_eq!(check_reported(removal).unwrap()["hms"], Value::Null);
    }
}
