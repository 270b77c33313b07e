//! Vendor channels (APNs, FCM, Huawei Push Kit, Xiaomi, Web Push), as the rest of Herald
//! sees them without I/O:
//!
//! - [`tokens`]: the tokens a device reports, checked and put in their one stored form;
//! - [`route`]: which channel carries a message to a device (DESIGN §7), a pure function of
//!   the device, the app's channels and its routing policy;
//! - [`VendorNotification`] and [`VendorOutcome`]: what the dispatcher hands a sender and
//!   what the sender says the vendor answered (the senders live in `herald-channels`).

pub mod route;
pub mod tokens;

use std::time::Duration;

use bytes::Bytes;

use crate::ids::{AppId, DeviceId, MessageId};
use crate::state::Channel;
pub use crate::state::{RoutingPolicy, VendorSendStatus};

/// One notification for one device through one vendor.
#[derive(Debug, Clone)]
pub struct VendorNotification {
    pub app_id: AppId,
    pub device_id: DeviceId,
    pub message_id: MessageId,
    pub channel: Channel,
    /// The device's token at this vendor in its stored form ([`tokens::stored_form`]).
    pub token: String,
    /// The same JSON the own channel delivers (title, content, uri, extendedParams, ids…),
    /// from which the sender builds its vendor's body.
    pub payload: Bytes,
    /// The end of the message's validity (Unix ms): the vendor's expiry is set from it.
    pub expires_at: i64,
    /// A recall: the message was revoked after the vendor took it; the sender sends a copy
    /// that replaces it on the device (same collapse id, tag, notify id or topic), built
    /// from `payload` (the revoked message's).
    pub recall: bool,
}

/// What a vendor answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorOutcome {
    /// Accepted for delivery; the vendor's id of the message when it gives one.
    Accepted { vendor_id: Option<String> },
    /// The vendor says the token is no longer valid: the device's token is marked.
    InvalidToken { reason: String },
    /// Throttled (`throttled`: slow this app's channel down) or temporarily unavailable:
    /// retry, not before `after` when the vendor says.
    Retry { after: Option<Duration>, throttled: bool, reason: String },
    /// Refused for good (a bad request, credentials the vendor rejects…).
    Failed { reason: String },
}

impl VendorOutcome {
    /// The outcome's name in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            VendorOutcome::Accepted { .. } => "sent",
            VendorOutcome::InvalidToken { .. } => "invalid_token",
            VendorOutcome::Retry { .. } => "retried",
            VendorOutcome::Failed { .. } => "failed",
        }
    }
}
