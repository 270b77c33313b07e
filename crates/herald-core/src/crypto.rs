//! Every cryptographic primitive Herald uses, on one library (aws-lc-rs): HMAC-SHA256 for
//! request signing and bind proofs, RSA PKCS#1 v1.5 SHA-256 verification for RSA keys,
//! SHA-256 for stored token hashes, and AES-256-GCM to keep secrets encrypted at rest.

use aws_lc_rs::{aead, digest, hmac, rand, signature};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Random bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out).expect("system random source");
    out
}

/// A random string of `len` characters from [0-9a-z], for identifiers.
pub fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut raw = vec![0u8; len];
    rand::fill(&mut raw).expect("system random source");
    // 252 = 7 * 36: rejecting bytes at or above it keeps the characters uniform.
    let mut out = String::with_capacity(len);
    let mut i = 0;
    while out.len() < len {
        if i == raw.len() {
            rand::fill(&mut raw).expect("system random source");
            i = 0;
        }
        let b = raw[i];
        i += 1;
        if b < 252 {
            out.push(ALPHABET[(b % 36) as usize] as char);
        }
    }
    out
}

/// A bearer secret: 32 random bytes, base64url without padding (43 characters).
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// The bytes of lower- or upper-case hex; `None` for anything else.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes().chunks_exact(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

/// Constant-time check of an HMAC-SHA256 tag.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), data, tag).is_ok()
}

/// Alibaba Cloud's version 1 RPC signature (the older MPS SDKs) is HMAC-SHA1; nothing else
/// of Herald's uses SHA-1.
pub fn hmac_sha1_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key), data, tag).is_ok()
}

/// Equality of two secrets (or their hashes) in time that does not depend on where they
/// differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url without padding, tolerating padding and the standard alphabet that
/// some MPS clients send.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).ok().or_else(|| STANDARD.decode(text).ok())
}

/// The RSA key sizes (bits) requests are verified with: [`rsa_sha256_verify`] takes no
/// other, and keys under 2048 bits are breakable.
pub const RSA_KEY_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Checks that `der` is an RSA public key (SPKI or PKCS#1) of [`RSA_KEY_BITS`] that can
/// verify signatures.
pub fn rsa_public_key_valid(der: &[u8]) -> bool {
    aws_lc_rs::rsa::PublicKey::from_der(der).is_ok_and(|k| RSA_KEY_BITS.contains(&(k.modulus_len() * 8)))
}

/// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature (Java's SHA256withRSA).
pub fn rsa_sha256_verify(public_key_der: &[u8], message: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(message, sig)
        .is_ok()
}

/// Reads the DER body of a PEM public key ("PUBLIC KEY" or "RSA PUBLIC KEY").
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            break;
        } else if inside {
            body.push_str(line);
        }
    }
    if body.is_empty() {
        return None;
    }
    STANDARD.decode(body).ok()
}

/// The key that encrypts secrets at rest (HMAC API secrets, bind secrets). Nodes of one
/// cluster share it; a single node keeps it in its data directory.
pub struct MasterKey {
    aead: aead::LessSafeKey,
    /// A key for [`MasterKey::token`], derived from the master key (never used to encrypt).
    derive: Vec<u8>,
}

impl MasterKey {
    pub fn from_bytes(raw: &[u8; 32]) -> Self {
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, raw).expect("32-byte AES key");
        MasterKey { aead: aead::LessSafeKey::new(key), derive: hmac_sha256(raw, b"herald derived tokens v1") }
    }

    /// A token for `purpose` that only holders of the master key can compute (every node of
    /// a cluster computes the same): base64url of HMAC-SHA256 under a key derived from the
    /// master key. Names unguessable URLs such as a vendor's receipt callback.
    pub fn token(&self, purpose: &str) -> String {
        b64url(&hmac_sha256(&self.derive, purpose.as_bytes()))
    }

    /// Parses a base64 (standard or url-safe) encoding of 32 bytes.
    pub fn from_base64(text: &str) -> Option<Self> {
        let raw: [u8; 32] = b64url_decode(text.trim())?.try_into().ok()?;
        Some(Self::from_bytes(&raw))
    }

    /// Encrypts `plaintext`; the result is base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<12>();
        let mut in_out = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce_bytes), aead::Aad::empty(), &mut in_out)
            .expect("AES-GCM seal");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        b64url(&out)
    }

    /// Decrypts what [`MasterKey::seal`] produced; `None` when it was sealed with another key.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = b64url_decode(sealed)?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(12);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self.aead.open_in_place(nonce, aead::Aad::empty(), &mut in_out).ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(hex_decode(&hex(&[0, 1, 0xab, 0xff])), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(hex_decode("ABff"), Some(vec![0xab, 0xff]));
        assert_eq!(hex_decode(""), Some(vec![]));
        for bad in ["a", "zz", "0g", "é0", "+1"] {
            assert_eq!(hex_decode(bad), None, "{bad}");
        }
    }

    /// Issue 12: a 1024-bit key was accepted (and then no signature ever verified).
    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        let small = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDC9oBzpV7sILiMVJzoLGu7S5j0
Za6pdq+ErBYZxmx932CgyvC5r8uH5CHsb3iBJRB3U49l7kCQQ3F0i9zM8E3Z+b2T
qJTE4dYxDVnXN85G5zqOfvqRPyKYMhgo1bf8Lf2lTFr88JWcOd2db0g+CjSI/7Sl
MWiaI67pn9b2YJXELwIDAQAB
-----END PUBLIC KEY-----";
        assert!(!rsa_public_key_valid(&pem_to_der(small).unwrap()));
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        assert!(rsa_public_key_valid(aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref()));
    }

    #[test]
    fn seal_then_open() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = key.seal(b"api secret");
        assert!(!sealed.contains("api secret"));
        assert_eq!(key.open(&sealed).unwrap(), b"api secret");
        assert!(MasterKey::from_bytes(&[8u8; 32]).open(&sealed).is_none());
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(hmac_sha256_verify(b"Jefe", b"what do ya want for nothing?", &tag));
        assert!(!hmac_sha256_verify(b"Jefe", b"what do ya want for nothing!", &tag));
    }

    #[test]
    fn alnum_has_requested_length() {
        assert_eq!(random_alnum(21).len(), 21);
        assert!(random_alnum(40).chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
