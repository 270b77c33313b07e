//! Herald's domain, without I/O: what every other crate of the workspace speaks.
//!
//! - [`ids`]: identifier newtypes (an `AppId` never stands where a `DeviceId` is expected);
//! - [`state`]: the states and kinds Herald stores and shows (delivery status, push type,
//!   schedule status, channel, key kind…), each mapped to its stored and JSON form once;
//! - [`model`]: the records the store keeps and the answers it gives;
//! - [`error`]: the table of API result codes and their HTTP statuses;
//! - [`limits`]: the request limits of the contract, with their defaults;
//! - [`push`], [`template`], [`schedule`], [`events`]: validation of push requests,
//!   `#name#` templates, schedule strategies and device events, as pure functions;
//! - [`signing`]: the canonical string of signed requests and bind proofs;
//! - [`crypto`]: HMAC, RSA verification, hashing and sealing secrets at rest;
//! - [`channel`]: the seam a vendor channel (APNs, FCM, …) implements.

pub mod acs3;
pub mod channel;
pub mod crypto;
pub mod error;
pub mod events;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod model;
pub mod push;
pub mod schedule;
pub mod signing;
pub mod state;
pub mod template;
pub mod untrusted;

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
