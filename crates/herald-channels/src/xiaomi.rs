//! Xiaomi push: `POST {xiaomi_url}/v3/message/regid`, form-encoded, `Authorization:
//! key=<AppSecret>`; the answer is JSON `{result, code, description, reason, data: {id}}`.

use bytes::Bytes;
use herald_core::channel::{VendorNotification, VendorOutcome};
use http_body_util::Full;
use hyper::Request;
use serde_json::Value;

use crate::hms::encode;
use crate::http::HttpsClient;
use crate::setup::XiaomiCredential;
use crate::{ChannelsConfig, Payload, throttled, unavailable, unreachable};

/// Xiaomi's answer for a regId it does not know (or that left): the token is dropped.
/// Xiaomi documents the code table only in its SDKs; Herald takes the answer's `reason`
/// naming the regId as invalid (docs/channels.md says so).
fn names_invalid_regid(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("regid") && (r.contains("invalid") || r.contains("illegal") || r.contains("not found"))
}

pub(crate) async fn send(
    http: &HttpsClient,
    cfg: &ChannelsConfig,
    c: &XiaomiCredential,
    n: &VendorNotification,
) -> VendorOutcome {
    let now = herald_core::now_ms();
    let p = Payload::of(n, &cfg.recall_text);
    let silent = p.silent != 0;
    let data = if n.recall { crate::recall_json(&p.message_id) } else { n.payload.to_vec() };
    let device_json = String::from_utf8_lossy(&data);
    let mut form = vec![
        ("registration_id".to_string(), n.token.clone()),
        ("restricted_package_name".into(), c.package_name.clone()),
        ("title".into(), p.title.clone()),
        ("description".into(), p.content.clone()),
        ("payload".into(), device_json.into_owned()),
        ("pass_through".into(), if silent { "1" } else { "0" }.into()),
        ("notify_type".into(), "-1".into()),
        ("time_to_live".into(), (n.expires_at - now).max(1000).to_string()),
        // The same id on a later notification (a revoke's recall) replaces this one.
        ("notify_id".into(), crate::notify_id(&p.message_id).to_string()),
    ];
    if let Some(url) = &c.callback {
        // Receipts of delivery (1) and click (2), naming the message by our id.
        form.push(("extra.callback".into(), url.clone()));
        form.push(("extra.callback.param".into(), p.message_id.clone()));
        form.push(("extra.callback.type".into(), "3".into()));
    }
    if let Some(uri) = &p.uri {
        form.push(("extra.notify_effect".into(), "2".into()));
        form.push(("extra.intent_uri".into(), uri.clone()));
    }
    for (k, v) in p.string_data() {
        if let Value::String(v) = v {
            form.push((format!("extra.{k}"), v));
        }
    }
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    let url = format!("{}/v3/message/regid", cfg.xiaomi_url.trim_end_matches('/'));
    let req = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", format!("key={}", c.app_secret))
        .body(Full::new(Bytes::from(body.join("&"))));
    let req = match req {
        Ok(r) => r,
        Err(e) => return VendorOutcome::Failed { reason: format!("Xiaomi request: {e}") },
    };
    let answer = match http.send(req).await {
        Ok(a) => a,
        Err(e) => return unreachable("Xiaomi", e),
    };
    let status = answer.status.as_u16();
    let v = answer.json();
    let code = v.get("code").and_then(Value::as_i64).unwrap_or(-1);
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or("").to_owned();
    match status {
        200 if v.get("result").and_then(Value::as_str) == Some("ok") && code == 0 => {
            let id = v.pointer("/data/id").and_then(Value::as_str).map(str::to_owned);
            VendorOutcome::Accepted { vendor_id: id }
        }
        200 if names_invalid_regid(&reason) => {
            VendorOutcome::InvalidToken { reason: format!("Xiaomi {code} {reason}") }
        }
        429 => throttled("Xiaomi", &answer.headers, &reason),
        500.. => unavailable("Xiaomi", status, &answer.headers, &reason),
        _ => VendorOutcome::Failed { reason: format!("Xiaomi {status} {code} {reason}") },
    }
}
