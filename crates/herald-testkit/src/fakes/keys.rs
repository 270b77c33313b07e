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

/// An APNs certificate as Keychain exports it: a `.p12` file holding a client certificate
/// signed by `ca` (subject CN `common_name`, ending `valid_days` from today, negative for an
/// expired one) and its key, sealed with `password`.
pub fn apns_p12(ca: &super::TestCa, common_name: &str, valid_days: i64, password: &str) -> Vec<u8> {
    let (cert, key) = ca.client_cert(common_name, civil_date(herald_core::now_ms() / 86_400_000 + valid_days));
    let chain = p12_keystore::PrivateKeyChain::new(
        herald_core::crypto::random_bytes::<8>().to_vec(),
        p12_keystore::PrivateKey::from_der(&key).expect("key"),
        [p12_keystore::Certificate::from_der(&cert).expect("certificate")],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("apns", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().expect("write .p12")
}

/// The `.p12` in base64, as `PUT /v1/channels/apns` takes it.
pub fn apns_p12_base64(ca: &super::TestCa, common_name: &str, valid_days: i64, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(apns_p12(ca, common_name, valid_days, password))
}

/// The (year, month, day) of a day counted from 1970-01-01 (the proleptic Gregorian calendar).
fn civil_date(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
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

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), (1970, 1, 1));
        assert_eq!(super::civil_date(11_016), (2000, 2, 29));
        assert_eq!(super::civil_date(47_481), (2099, 12, 31));
    }
}
