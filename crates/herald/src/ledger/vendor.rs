//! Vendor receipts in: the callbacks through which Huawei Push Kit and Xiaomi report that a
//! message they carried reached (or, for Xiaomi, was clicked on) a device.
//!
//! Each app and channel has its own URL, `/vendor/v1/receipts/{channel}/{appId}/{token}`,
//! whose token only holders of the master key can compute: a request to it is from someone
//! the app gave the URL to (the vendor). On top of that, Huawei signs its callbacks when the
//! app sets a callback user name and key in AppGallery Connect (and in the channel):
//! `X-HUAWEI-CALLBACK-ID: timestamp=…; nonce=…; value=base64(HMAC-SHA256(key, timestamp
//! nonce userName))`, checked here, with the timestamp within [`MAX_SKEW_MS`]. Xiaomi
//! documents no signature; its receipts name the message by the `callback.param` Herald set
//! (our message id) and the device by its regId, and only a send Herald made through that
//! app's Xiaomi channel to that regId is changed.

use herald_core::crypto::{self, MasterKey};
use herald_core::ids::AppId;
use herald_core::state::Channel;
use serde_json::Value;

/// How far a signed Huawei callback's timestamp may be from now.
pub const MAX_SKEW_MS: i64 = 10 * 60_000;

/// The path of the app's receipt callback for `channel`.
pub fn receipt_path(master: &MasterKey, app: &AppId, channel: Channel) -> String {
    format!("/vendor/v1/receipts/{channel}/{app}/{}", token(master, app, channel))
}

/// The absolute URL of the callback under `base` (`channels.receipt_base_url`).
pub fn receipt_url(master: &MasterKey, base: &str, app: &AppId, channel: Channel) -> String {
    format!("{}{}", base.trim_end_matches('/'), receipt_path(master, app, channel))
}

fn token(master: &MasterKey, app: &AppId, channel: Channel) -> String {
    master.token(&format!("vendor-receipts:{channel}:{app}"))
}

/// Whether `given` is the app's callback token for `channel`.
pub fn token_matches(master: &MasterKey, app: &AppId, channel: Channel, given: &str) -> bool {
    crypto::constant_time_eq(token(master, app, channel).as_bytes(), given.as_bytes())
}

/// What a vendor said of one message on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorReceipt {
    /// Our message id (Huawei's `biTag`, Xiaomi's `param`).
    pub message_id: String,
    /// The device's token with the vendor.
    pub token: String,
    pub outcome: Outcome,
    /// When it happened, by the vendor's clock (Unix ms).
    pub at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Arrived,
    Clicked,
    /// The vendor could not deliver it (the reason says why).
    Failed(String),
}

/// Checks `X-HUAWEI-CALLBACK-ID` against the callback user name and key at `now`.
pub fn hms_signature_ok(header: &str, user: &str, key: &str, now: i64) -> bool {
    let mut parts = std::collections::HashMap::new();
    for part in header.split(';') {
        if let Some((k, v)) = part.trim().split_once('=') {
            parts.insert(k.trim(), v.trim());
        }
    }
    let (Some(ts), Some(nonce), Some(value)) = (parts.get("timestamp"), parts.get("nonce"), parts.get("value")) else {
        return false;
    };
    let Ok(mut ms) = ts.parse::<i64>() else { return false };
    if ms < 100_000_000_000 {
        ms *= 1000; // seconds in older versions of the API
    }
    if (now - ms).abs() > MAX_SKEW_MS {
        return false;
    }
    use base64::Engine;
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(value) else { return false };
    crypto::hmac_sha256_verify(key.as_bytes(), format!("{ts}{nonce}{user}").as_bytes(), &given)
}

/// The receipts of a Huawei callback body (`{"statuses": [...]}`, version 1 or 2); `None`
/// when it is not one.
pub fn parse_hms(body: &Value) -> Option<Vec<VendorReceipt>> {
    let statuses = body.get("statuses")?.as_array()?;
    let mut out = Vec::with_capacity(statuses.len());
    for s in statuses {
        let token = s.get("token")?.as_str()?.to_owned();
        let message_id = s.get("biTag").and_then(Value::as_str).unwrap_or("").to_owned();
        // Version 2 nests the result; version 1 has `status` and `timestamp` at the top.
        let (code, at) = match s.get("deliveryStatus") {
            Some(d) => (d.get("result")?.as_i64()?, d.get("timestamp").and_then(Value::as_i64)),
            None => (s.get("status")?.as_i64()?, s.get("timestamp").and_then(Value::as_i64)),
        };
        let outcome = match code {
            0 => Outcome::Arrived,
            code => Outcome::Failed(format!("HMS receipt status {code}")),
        };
        out.push(VendorReceipt { message_id, token, outcome, at });
    }
    Some(out)
}

/// The receipts of a Xiaomi callback: a form with `data`, a JSON object from Xiaomi's
/// message id to `{param, type, targets, timestamp, …}`; `None` when it is not one.
pub fn parse_xiaomi(form: &[u8]) -> Option<Vec<VendorReceipt>> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(form).ok()?;
    let data = fields.iter().find(|(k, _)| k == "data")?;
    let data: Value = serde_json::from_str(&data.1).ok()?;
    let mut out = Vec::new();
    for (_, r) in data.as_object()? {
        let message_id = r.get("param").and_then(Value::as_str).unwrap_or("").to_owned();
        let kind = r.get("type").and_then(|t| t.as_i64().or_else(|| t.as_str()?.parse().ok()))?;
        let outcome = match kind {
            1 => Outcome::Arrived,
            2 => Outcome::Clicked,
            16 => Outcome::Failed("Xiaomi receipt: invalid regId".into()),
            other => Outcome::Failed(format!("Xiaomi receipt type {other}")),
        };
        let at = r.get("timestamp").and_then(|t| t.as_i64().or_else(|| t.as_str()?.parse().ok()));
        let targets = r.get("targets").and_then(Value::as_str).unwrap_or("");
        for token in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            out.push(VendorReceipt {
                message_id: message_id.clone(),
                token: token.to_owned(),
                outcome: outcome.clone(),
                at,
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn huawei_signatures_are_checked_as_documented() {
        use base64::Engine;
        let now = 1_563_105_451_261;
        let mac = crypto::hmac_sha256(b"cbkey", b"1563105451261a07bfa17-6d82-4b53-a9a2-07cfef5ceef1herald");
        let value = base64::engine::general_purpose::STANDARD.encode(mac);
        let header = format!("timestamp=1563105451261; nonce=a07bfa17-6d82-4b53-a9a2-07cfef5ceef1; value={value}");
        assert!(hms_signature_ok(&header, "herald", "cbkey", now));
        assert!(!hms_signature_ok(&header, "herald", "other", now), "another key");
        assert!(!hms_signature_ok(&header, "someone", "cbkey", now), "another user");
        assert!(!hms_signature_ok(&header, "herald", "cbkey", now + MAX_SKEW_MS + 1), "too old");
        assert!(!hms_signature_ok("timestamp=1; value=x", "herald", "cbkey", now));
    }

    #[test]
    fn huawei_bodies_of_both_versions_are_read() {
        let v1 = json!({"statuses": [{"biTag": "m1", "appid": "1", "token": "t1", "status": 0,
            "timestamp": 1_489_993_883_189i64, "requestId": "r"}, {"biTag": "m2", "appid": "1", "token": "t2",
            "status": 2, "timestamp": 1, "requestId": "r"}]});
        let got = parse_hms(&v1).unwrap();
        assert_eq!(
            got[0],
            VendorReceipt {
                message_id: "m1".into(),
                token: "t1".into(),
                outcome: Outcome::Arrived,
                at: Some(1_489_993_883_189)
            }
        );
        assert_eq!(got[1].outcome, Outcome::Failed("HMS receipt status 2".into()));
        let v2 = json!({"statuses": [{"token": "t3", "pushType": 0, "appPackageName": "p", "biTag": "m3",
            "requestId": "r", "deliveryStatus": {"result": 0, "timestamp": 5}}]});
        assert_eq!(parse_hms(&v2).unwrap()[0].at, Some(5));
        assert!(parse_hms(&json!({"nope": 1})).is_none());
    }

    #[test]
    fn xiaomi_forms_are_read_per_target() {
        let data = json!({"xm1": {"param": "m1", "type": 1, "targets": "r1,r2", "jobkey": "j", "barStatus": "Enable",
            "timestamp": 1_324_167_800_000i64}, "xm2": {"param": "m2", "type": 2, "targets": "r3", "timestamp": 7}});
        let form = serde_urlencoded::to_string([("data", data.to_string())]).unwrap();
        let mut got = parse_xiaomi(form.as_bytes()).unwrap();
        got.sort_by(|a, b| a.token.cmp(&b.token));
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].message_id.as_str(), got[0].outcome.clone()), ("m1", Outcome::Arrived));
        assert_eq!((got[2].token.as_str(), got[2].outcome.clone(), got[2].at), ("r3", Outcome::Clicked, Some(7)));
        assert!(parse_xiaomi(b"other=1").is_none());
    }
}
