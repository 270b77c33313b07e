//! The JSON Web Tokens the vendors want: ES256 (APNs provider tokens, VAPID) and RS256
//! (Google's OAuth assertions), signed with jsonwebtoken on aws-lc-rs.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// A signed token with `kid` in its header (when given).
pub(crate) fn sign<C: Serialize>(
    alg: Algorithm,
    kid: Option<&str>,
    claims: &C,
    key: &EncodingKey,
) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).map_err(|e| format!("signing a token: {e}"))
}
