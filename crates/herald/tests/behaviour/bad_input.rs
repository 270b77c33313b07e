//! Bad input: every refusal is a 4xx with a stable resultCode, and nothing is written.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::*;

fn code(r: &herald::http_client::Response) -> (u16, String) {
    (r.status, r.json()["resultCode"].as_str().unwrap_or("<none>").to_string())
}

#[tokio::test]
async fn push_validation_codes() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut device = TestDevice::connect(&creds).await;
    let base = || json!({"deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "k"}, "title": "t", "content": "c", "expiredSeconds": 60});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let eleven: serde_json::Map<String, Value> = (0..11).map(|i| (format!("d{i}"), json!(format!("k{i}")))).collect();
    let many_params: serde_json::Map<String, Value> = (0..21).map(|i| (format!("p{i}"), json!("v"))).collect();
    let cases = vec![
        (with("targetMsgkey", Value::Object(eleven)), 400, "SINGLE_PUSH_TARGET_TOO_MUCH"),
        (with("targetMsgkey", json!({})), 400, "TOKEN_OR_USERID_NULL"),
        (with("expiredSeconds", json!(0)), 400, "EXPIREDSECONDS_WRONG"),
        (with("expiredSeconds", json!("soon")), 400, "EXPIREDSECONDS_WRONG"),
        (with("expiredSeconds", json!(259_201)), 400, "EXPIREDTIME_TOO_LONG"),
        (with("title", json!(" ")), 400, "PAYLOAD_NOT_ENOUGH"),
        (with("content", Value::Null), 400, "PAYLOAD_NOT_ENOUGH"),
        (with("deliveryType", json!(9)), 400, "DELIVERY_TYPE_NOT_SUPPORTED"),
        (with("extendedParams", Value::Object(many_params)), 400, "EXTEND_PARAM_TO_MUCH"),
        (with("extendedParams", json!({"pushType": "x"})), 400, "INVALID_EXTEND_PARAM"),
        (with("content", json!("x".repeat(5000))), 400, "SINGLE_PUSH_CONTENT_TOO_LONG"),
        (with("silent", json!(7)), 400, "INVALID_PARAM"),
        (with("strategyType", json!(1)), 400, "INVALID_PARAM"),
        (json!(["not", "an", "object"]), 400, "INVALID_JSON"),
    ];
    for (body, status, want) in cases {
        let r = app.push_simple(body.clone()).await;
        assert_eq!(code(&r), (status, want.to_string()), "body {body}");
        assert!(r.json()["resultMessage"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = app.signed("POST", "/v1/push/simple", "{\"deliveryType\": 1, \"targetMsgkey\"").await;
    assert_eq!(code(&r), (400, "INVALID_JSON".into()));
    let huge = json!({"pad": "x".repeat(300_000)}).to_string();
    let r = app.signed("POST", "/v1/push/simple", &huge).await;
    assert_eq!(code(&r), (413, "REQUEST_TOO_LARGE".into()));
    let r = app.signed("GET", "/v1/nowhere", "").await;
    assert_eq!(code(&r), (404, "NOT_FOUND".into()));
    let r = app.signed("DELETE", "/v1/push/simple", "").await;
    assert_eq!(code(&r), (405, "METHOD_NOT_ALLOWED".into()));
    let r = app.task("tnosuchtask").await;
    assert_eq!(code(&r), (404, "TASK_NOT_EXIST".into()));

    // None of the refused requests left anything to deliver.
    let (_, m) = app.push_to_device(&creds.device_id, "valid", "valid").await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
}

#[tokio::test]
async fn signature_refusals() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let body =
        json!({"deliveryType": 1, "targetMsgkey": {"d": "k"}, "title": "t", "content": "c", "expiredSeconds": 60})
            .to_string();
    let send = |headers: Vec<(String, String)>, body: String| {
        let http = app.http.clone();
        async move {
            herald::http_client::request(&http, "POST", "/v1/push/simple", &headers, Bytes::from(body)).await.unwrap()
        }
    };
    let signed = |secret: &str, ts: i64, body: &str| {
        herald_core::signing::sign_hmac(&app.key_id, secret, "POST", "/v1/push/simple", body.as_bytes(), ts)
    };
    let now = herald_core::now_ms();

    let r = send(vec![], body.clone()).await;
    assert_eq!(code(&r), (401, "SIGNATURE_HEADERS_INVALID".into()));
    let r = send(signed("wrong-secret", now, &body), body.clone()).await;
    assert_eq!(code(&r), (401, "SIGNATURE_MISMATCH".into()));
    // Signed one body, sent another.
    let r = send(signed(&app.secret, now, &body), body.replace("\"t\"", "\"T\"")).await;
    assert_eq!(code(&r), (401, "SIGNATURE_MISMATCH".into()));
    let r = send(signed(&app.secret, now - 6 * 60_000, &body), body.clone()).await;
    assert_eq!(code(&r), (401, "TIMESTAMP_OUT_OF_WINDOW".into()));
    let r = send(signed(&app.secret, now + 6 * 60_000, &body), body.clone()).await;
    assert_eq!(code(&r), (401, "TIMESTAMP_OUT_OF_WINDOW".into()));
    let once = signed(&app.secret, now, &body);
    assert_eq!(send(once.clone(), body.clone()).await.status, 200);
    let r = send(once, body.clone()).await;
    assert_eq!(code(&r), (401, "NONCE_REUSED".into()));
    let mut unknown = signed(&app.secret, now, &body);
    unknown[0].1 = "knosuchkey".into();
    let r = send(unknown, body.clone()).await;
    assert_eq!(code(&r), (401, "API_KEY_INVALID".into()));
    assert!(server.log_contains("signed request refused"));

    // Query strings are part of the signature.
    let headers = herald_core::signing::sign_hmac(&app.key_id, &app.secret, "GET", "/v1/tasks/t1?b=2&a=1", b"", now);
    let r =
        herald::http_client::request(&app.http, "GET", "/v1/tasks/t1?a=1&b=2", &headers, Bytes::new()).await.unwrap();
    assert_eq!(code(&r), (404, "TASK_NOT_EXIST".into()), "sorted query must verify");
    let r =
        herald::http_client::request(&app.http, "GET", "/v1/tasks/t1?a=1&b=3", &headers, Bytes::new()).await.unwrap();
    assert_eq!(code(&r), (401, "SIGNATURE_MISMATCH".into()));
}

#[tokio::test]
async fn keys_can_be_added_revoked_and_rsa_keys_verify_sha256_with_rsa() {
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;

    let r = server.admin("POST", &format!("/admin/v1/apps/{}/keys", app.app_id), json!({"type": "hmac"})).await;
    assert_eq!(r.status, 200);
    let second = TestApp {
        key_id: r.json()["keyId"].as_str().unwrap().into(),
        secret: r.json()["secret"].as_str().unwrap().into(),
        ..app.clone()
    };
    assert_eq!(second.task("tx").await.json()["resultCode"], "TASK_NOT_EXIST");
    let r = server.admin("DELETE", &format!("/admin/v1/apps/{}/keys/{}", app.app_id, second.key_id), Value::Null).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(code(&second.task("tx").await), (401, "API_KEY_INVALID".into()));
    assert_eq!(app.task("tx").await.json()["resultCode"], "TASK_NOT_EXIST", "the first key still works");

    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = pair.public_key().as_ref().to_vec();
    let pem = format!("-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n", base64_lines(&der));
    let r = server
        .admin("POST", &format!("/admin/v1/apps/{}/keys", app.app_id), json!({"type": "rsa", "publicKey": pem}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let rsa_key = r.json()["keyId"].as_str().unwrap().to_string();
    let now = herald_core::now_ms().to_string();
    let nonce = "rsa-nonce-0123456789";
    let canonical = herald_core::signing::canonical_string("GET", "/v1/tasks/tx", None, &now, nonce, b"");
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), canonical.as_bytes(), &mut sig).unwrap();
    let headers = vec![
        ("X-Herald-Key".to_string(), rsa_key.clone()),
        ("X-Herald-Timestamp".to_string(), now.clone()),
        ("X-Herald-Nonce".to_string(), nonce.to_string()),
        ("X-Herald-Signature".to_string(), herald_core::crypto::b64url(&sig)),
    ];
    let r = herald::http_client::request(&app.http, "GET", "/v1/tasks/tx", &headers, Bytes::new()).await.unwrap();
    assert_eq!(code(&r), (404, "TASK_NOT_EXIST".into()), "RSA-signed request verifies");
    let mut tampered = headers.clone();
    tampered[2].1 = "rsa-nonce-9999999999".into();
    let r = herald::http_client::request(&app.http, "GET", "/v1/tasks/tx", &tampered, Bytes::new()).await.unwrap();
    assert_eq!(code(&r), (401, "SIGNATURE_MISMATCH".into()));

    let r = server
        .admin("POST", &format!("/admin/v1/apps/{}/keys", app.app_id), json!({"type": "rsa", "publicKey": "garbage"}))
        .await;
    assert_eq!(code(&r), (400, "INVALID_PARAM".into()));
    // Issue 12: a 1024-bit key was accepted (and no signature ever verified with it).
    let small = "-----BEGIN PUBLIC KEY-----\n\
        MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDC9oBzpV7sILiMVJzoLGu7S5j0\n\
        Za6pdq+ErBYZxmx932CgyvC5r8uH5CHsb3iBJRB3U49l7kCQQ3F0i9zM8E3Z+b2T\n\
        qJTE4dYxDVnXN85G5zqOfvqRPyKYMhgo1bf8Lf2lTFr88JWcOd2db0g+CjSI/7Sl\n\
        MWiaI67pn9b2YJXELwIDAQAB\n\
        -----END PUBLIC KEY-----\n";
    let r = server
        .admin("POST", &format!("/admin/v1/apps/{}/keys", app.app_id), json!({"type": "rsa", "publicKey": small}))
        .await;
    assert_eq!(code(&r), (400, "INVALID_PARAM".into()));
    assert!(r.json()["resultMessage"].as_str().unwrap().contains("2048"), "{:?}", r.json());
    let r = server.admin("POST", "/admin/v1/apps/appnosuch/keys", json!({"type": "hmac"})).await;
    assert_eq!(code(&r), (404, "APP_NOT_EXIST".into()));
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n")
}

/// Issue 12: refusals named Rust types and serde's words (`RegisterBody`, `expected i64`).
#[tokio::test]
async fn refusals_of_a_wrong_shape_speak_of_fields_not_rust_types() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let answers = [
        app.register_raw(json!({"platform": 5, "installId": "i"})).await,
        app.register_raw(json!(["android"])).await,
        app.register_raw(json!({"platform": "android", "installId": "i", "appVersion": {"x": 1}})).await,
        creds.device_call("/device/v1/bind", json!({"userId": "u", "bindProof": "p", "expiresAt": "soon"})).await,
        creds.device_call("/device/v1/bind", json!({"userId": "u", "expiresAt": 1.5})).await,
        app.signed("POST", "/v1/push/simple", &json!({"deliveryType": [3]}).to_string()).await,
    ];
    for r in answers {
        let message = r.json()["resultMessage"].as_str().unwrap_or_default().to_owned();
        assert_eq!(r.status, 400, "{:?}", r.json());
        for rust in ["Body", "struct", "i64", "u64", "`", "expected a", "expected i", "serde", "::"] {
            assert!(!message.contains(rust), "{message:?} contains {rust:?}");
        }
    }
}

#[tokio::test]
async fn admin_and_device_apis_refuse_without_credentials() {
    let Some(server) = start_server().await else { return };
    let r = server.call("POST", "/admin/v1/apps", &[], Bytes::from(json!({"name": "x"}).to_string())).await;
    assert_eq!(code(&r), (401, "ADMIN_UNAUTHORIZED".into()));
    let r = server.admin("POST", "/admin/v1/apps", json!({"name": ""})).await;
    assert_eq!(code(&r), (400, "INVALID_PARAM".into()));
    let r = server.admin("POST", "/admin/v1/apps", json!({"nom": "x"})).await;
    assert_eq!(code(&r), (400, "INVALID_PARAM".into()));
    let r = server.call("POST", "/device/v1/bind", &[], Bytes::from("{}")).await;
    assert_eq!(code(&r), (401, "DEVICE_TOKEN_INVALID".into()));
    let r = server.call("GET", "/healthz", &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
}
