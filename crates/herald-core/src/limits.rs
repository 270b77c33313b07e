//! The request limits of the contract (DESIGN §4, MPS's numbers by default). The `[limits]`
//! table of the configuration file; validated with the rest of the configuration.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_simple_targets: usize,
    pub max_expired_seconds: i64,
    pub max_extended_params: usize,
    pub max_title_chars: usize,
    pub max_content_bytes: usize,
    pub max_payload_bytes: usize,
    pub signature_window_secs: i64,
    /// How far back a message or task can be revoked (s); MPS: 7 days.
    pub revoke_window_secs: i64,
    /// Characters in a template name.
    pub max_template_name_chars: usize,
    /// Templates per app.
    pub max_templates_per_app: usize,
    /// Items of `targetMsg` in one Multiple push.
    pub max_multiple_targets: usize,
    /// Keys of one `targetMsg` item's own extendedParams.
    pub max_multiple_extended_params: usize,
    /// How long a cached API key is trusted before it is read again (revocations made on
    /// another node take effect within this time).
    pub key_cache_secs: u64,
    /// Longest a bind proof may be valid (s): an `expiresAt` further from now is refused,
    /// and a proof is accepted once.
    pub bind_proof_max_secs: i64,
    /// Characters in a push's or a template's `uri`.
    pub max_uri_chars: usize,
    /// Signed API requests one app may send one node a second (0: no limit), after a burst.
    pub app_requests_per_second: u32,
    pub app_request_burst: u32,
    /// Push targets one app may send one node a second (a broadcast counts one; 0: no
    /// limit), after a burst.
    pub app_pushes_per_second: u32,
    pub app_push_burst: u32,
}

impl Limits {
    /// Refuses a `uri` longer than [`Limits::max_uri_chars`].
    pub fn check_uri(&self, uri: Option<&str>) -> Result<(), crate::error::ApiError> {
        match uri {
            Some(u) if u.chars().count() > self.max_uri_chars => Err(crate::error::ApiError::new(
                crate::error::ErrorCode::InvalidParam,
                format!("uri is longer than {} characters", self.max_uri_chars),
            )),
            _ => Ok(()),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 256 * 1024,
            max_simple_targets: 10,
            max_expired_seconds: 259_200,
            max_extended_params: 20,
            max_title_chars: 200,
            max_content_bytes: 4096,
            max_payload_bytes: 16 * 1024,
            signature_window_secs: 300,
            key_cache_secs: 10,
            revoke_window_secs: 7 * 86_400,
            max_template_name_chars: 200,
            max_templates_per_app: 100,
            max_multiple_targets: 100,
            max_multiple_extended_params: 9,
            bind_proof_max_secs: 600,
            max_uri_chars: 2048,
            app_requests_per_second: 2_000,
            app_request_burst: 4_000,
            app_pushes_per_second: 20_000,
            app_push_burst: 40_000,
        }
    }
}
