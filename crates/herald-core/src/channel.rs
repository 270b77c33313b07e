//! The seam a vendor channel implements (APNs, FCM, Huawei Push Kit, Xiaomi, Web Push).
//!
//! The dispatcher routes each delivery: to the device's own connection when it holds one,
//! else, as the app's policy and the message's `notifyType` allow, to the vendor of one of
//! the device's tokens (DESIGN §7). A vendor sender turns one notification into one request
//! to its vendor and says what the vendor answered; retries, pooling and token hygiene are
//! the sender's and the dispatcher's business, not the vendor's wire format's.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::ids::{AppId, DeviceId, MessageId};
use crate::state::Channel;

/// One notification for one device through one vendor.
#[derive(Debug, Clone)]
pub struct VendorNotification {
    pub app_id: AppId,
    pub device_id: DeviceId,
    pub message_id: MessageId,
    /// The device's token at this vendor: a string, or Web Push's subscription object.
    pub token: Value,
    /// The same JSON the own channel delivers (title, content, uri, extendedParams, ids…),
    /// from which the sender builds its vendor's body.
    pub payload: Bytes,
    /// The end of the message's validity (Unix ms): the vendor's expiry is set from it.
    pub expires_at: i64,
}

/// What a vendor answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorOutcome {
    /// Accepted for delivery; the vendor's id of the message when it gives one.
    Accepted { vendor_id: Option<String> },
    /// The vendor says the token is no longer valid: the device's token is marked.
    InvalidToken { reason: String },
    /// Throttled or temporarily unavailable: retry, not before `after` when it says.
    Retry { after: Option<Duration>, reason: String },
    /// Refused for good (a bad request, credentials the vendor rejects…).
    Failed { reason: String },
}

/// A vendor's push service, as the dispatcher uses it: one implementation per vendor.
pub trait VendorSender: Send + Sync {
    /// The channel this sender serves.
    fn channel(&self) -> Channel;

    /// Sends one notification and reports the vendor's answer.
    fn send<'a>(&'a self, n: &'a VendorNotification) -> Pin<Box<dyn Future<Output = VendorOutcome> + Send + 'a>>;
}
