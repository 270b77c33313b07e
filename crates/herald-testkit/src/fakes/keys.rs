//! Keys, subscriptions and certificates as the vendors hand them to an app.

use aws_lc_rs::agreement;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::FakeVendor;

/// A browser's subscription: the private key and auth secret stay with the fake; the
/// `PushSubscription` JSON goes to the device's `vendorTokens.webpush`.
pub fn subscription(fake: &FakeVendor, id: &str) -> Value {
    let private = agreement::PrivateKey::generate(&agreement::ECDH_P256).expect("key");
    let public = private.compute_public_key().expect("public").as_ref().to_vec();
    let auth = herald_core::crypto::random_bytes::<16>().to_vec();
    let path = format!("/push/{id}");
    let sub = json!({
        "endpoint": format!("{}{path}", fake.url()),
        "keys": {"p256dh": B64.encode(&public), "auth": B64.encode(&auth)},
    });
    fake.expect().webpush.push((path, private, auth));
    sub
}

/// An APNs `.p8` key: (PEM, public point).
pub fn apns_key() -> (String, Vec<u8>) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair =
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
    (pem("PRIVATE KEY", pkcs8.as_ref()), pair.public_key().as_ref().to_vec())
}

/// A service account whose token URI is `fake`'s: (the JSON, the public key, PKCS#1 DER).
pub fn service_account(fake: &FakeVendor, project: &str) -> (Value, Vec<u8>) {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
    let email = format!("herald@{project}.iam.gserviceaccount.com");
    let account = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": "k1",
        "private_key": pem("PRIVATE KEY", pkcs8.as_ref()),
        "client_email": email,
        "token_uri": format!("{}/token", fake.url()),
    });
    let public = pair.public_key().as_ref().to_vec();
    fake.expect().fcm_key = Some((public.clone(), email, project.to_string()));
    (account, public)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// An APNs certificate as Keychain exports it: a `.p12` holding a client certificate signed
/// by `ca` (subject CN `common_name`, valid until `not_after`) and its key, sealed with
/// `password`; base64, as `PUT /v1/channels/apns` takes it.
pub fn apns_p12(ca: &super::TestCa, common_name: &str, not_after: (i32, u8, u8), password: &str) -> String {
    let (cert, key) = ca.client_cert(common_name, not_after);
    let chain = p12_keystore::PrivateKeyChain::new(
        herald_core::crypto::random_bytes::<8>().to_vec(),
        p12_keystore::PrivateKey::from_der(&key).expect("key"),
        [p12_keystore::Certificate::from_der(&cert).expect("certificate")],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("apns", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    let der = store.writer(password).write().expect("write .p12");
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// An app's APNs token-auth channel: the `PUT /v1/channels/apns` body (a fresh `.p8` key,
/// key id `KEY1234567`, team `TEAM123456`, topic `com.example.app`) and what the fake APNs
/// is to expect of it.
pub fn apns_token_channel(environment: &str) -> (Value, super::Expect) {
    let (pem, public) = apns_key();
    let body = json!({"authType": "token", "keyId": "KEY1234567", "teamId": "TEAM123456",
        "bundleId": "com.example.app", "environment": environment, "privateKey": pem});
    let expect = super::Expect {
        apns_key: Some((public, "KEY1234567".into(), "TEAM123456".into(), "com.example.app".into())),
        ..super::Expect::default()
    };
    (body, expect)
}
