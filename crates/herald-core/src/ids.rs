//! Identifier newtypes. A `DeviceId` can never stand where an `AppId` is expected, so the
//! compiler checks that every query is scoped to the right tenant.

use serde::{Deserialize, Serialize};

use crate::crypto;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value read from the store or from a request; callers validate
            /// caller-supplied values with [`valid_external_id`] first.
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The tenant. Owns keys, devices, tasks and messages.
    AppId
);
id_type!(
    /// A device, server-generated at registration; also the MQTT client id.
    DeviceId
);
id_type!(
    /// The app's own user identifier, bound to zero or more devices.
    UserId
);
id_type!(
    /// One rendered payload for one target; time-ordered.
    MessageId
);
id_type!(
    /// One push request; time-ordered.
    TaskId
);
id_type!(
    /// An API key of an app (HMAC secret or RSA public key).
    KeyId
);

impl AppId {
    pub fn generate() -> Self {
        AppId(format!("app{}", crypto::random_alnum(13)))
    }
}

impl DeviceId {
    pub fn generate() -> Self {
        DeviceId(format!("d{}", crypto::random_alnum(21)))
    }
}

impl KeyId {
    pub fn generate() -> Self {
        KeyId(format!("k{}", crypto::random_alnum(15)))
    }
}

impl MessageId {
    pub fn generate(now_ms: i64) -> Self {
        MessageId(format!("m{}", time_ordered(now_ms)))
    }

    /// The id of a broadcast: `b` instead of `m`, so that an acknowledgement goes straight to
    /// the broadcast's sparse records without a lookup.
    pub fn generate_broadcast(now_ms: i64) -> Self {
        MessageId(format!("b{}", time_ordered(now_ms)))
    }

    pub fn is_broadcast(&self) -> bool {
        self.0.starts_with('b')
    }

    /// The time-ordered part, for ordering messages of every kind together.
    pub fn order_key(&self) -> &str {
        self.0.get(1..).unwrap_or("")
    }
}

impl TaskId {
    pub fn generate(now_ms: i64) -> Self {
        TaskId(format!("t{}", time_ordered(now_ms)))
    }

    /// Sorts before the id of every task created at or after `at_ms`, and after every id
    /// created earlier.
    pub fn first_at(at_ms: i64) -> String {
        format!("t{:011x}", at_ms.max(0))
    }
}

/// 11 hex digits of milliseconds (good until the year 2527) then randomness: sorting the
/// ids sorts by creation time, which keeps "oldest first" cheap.
fn time_ordered(now_ms: i64) -> String {
    format!("{:011x}{}", now_ms.max(0), crypto::random_alnum(10))
}

/// Caller-supplied identifiers (userId, installId, msgKey, targets): 1 to 128 characters,
/// no control characters.
pub fn valid_external_id(value: &str) -> bool {
    !value.is_empty() && value.chars().count() <= 128 && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_time() {
        let a = MessageId::generate(1_700_000_000_000);
        let b = MessageId::generate(1_700_000_000_001);
        assert!(a < b);
        assert_ne!(MessageId::generate(5), MessageId::generate(5));
    }

    #[test]
    fn external_ids() {
        assert!(valid_external_id("user-42"));
        assert!(!valid_external_id(""));
        assert!(!valid_external_id("a\nb"));
        assert!(!valid_external_id(&"x".repeat(129)));
    }
}
