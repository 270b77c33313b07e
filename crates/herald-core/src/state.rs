//! The states and kinds Herald stores and shows, as types.
//!
//! Each enum is declared once, with its stored form (the text or number in the database,
//! which is also its JSON form), by [`stored_enum!`] or [`coded_enum!`]. Nothing else spells
//! those forms out: the code matches on the variants (exhaustively), serde goes through
//! `as_str`/`parse`, and the store's SQL takes its literals from a macro generated here
//! beside each enum (`delivery_status!(Pending, Sent)` expands to `"'pending', 'sent'"`), so
//! a typo in SQL is a compile error and a renamed state changes everywhere at once. The
//! schema's partial indexes are the one other place; a store test holds them to these.

/// A text-stored enum, and a macro (`$sql`) giving the SQL literal of one or more variants.
macro_rules! stored_enum {
    (
        $(#[$doc:meta])*
        pub enum $name:ident ($sql:ident, $d:tt) {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and JSON form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant of a stored or JSON form.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not one of {}",
                        [$($text),+].join(", ")
                    ))
                })
            }
        }

        /// SQL literals of
        #[doc = concat!("[`", stringify!($name), "`]")]
        /// variants, comma-separated: `(` one or more variant names `)`.
        #[macro_export]
        macro_rules! $sql {
            $( ($variant) => { concat!("'", $text, "'") }; )+
            ($d first:ident $d(, $d rest:ident)+) => {
                concat!($crate::$sql!($d first) $d(, ", ", $crate::$sql!($d rest))+)
            };
        }
    };
}

/// An integer-stored enum (MPS shows these as numbers), and its SQL literal macro.
macro_rules! coded_enum {
    (
        $(#[$doc:meta])*
        pub enum $name:ident ($sql:ident) {
            $( $(#[$vdoc:meta])* $variant:ident = $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and JSON form.
            pub const fn code(self) -> i64 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// The variant of a stored or JSON form.
            pub fn from_code(code: i64) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.code())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .enum_values(Some([$($code),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        /// The SQL literal of a
        #[doc = concat!("[`", stringify!($name), "`]")]
        /// variant.
        #[macro_export]
        macro_rules! $sql {
            $( ($variant) => { stringify!($code) }; )+
        }
    };
}

stored_enum! {
    /// Where one message is on its way to one device.
    ///
    /// `pending → sent → delivered → opened | ignored`, or `expired` (validity ended before an
    /// acknowledgement) or `revoked` (withdrawn by the app). `sent` is recorded only for a copy
    /// written to a connection that closed before acknowledging it.
    pub enum DeliveryStatus (delivery_status, $) {
        Pending = "pending",
        Sent = "sent",
        Delivered = "delivered",
        Opened = "opened",
        Ignored = "ignored",
        Expired = "expired",
        Revoked = "revoked",
    }
}

impl DeliveryStatus {
    /// Still to be delivered (while its validity lasts).
    pub const fn is_open(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Sent)
    }

    /// As the API shows it at `now`: an open delivery past its validity is `expired` even
    /// before the expiry sweep has written it.
    pub fn as_of(self, expires_at: i64, now: i64) -> DeliveryStatus {
        if self.is_open() && expires_at <= now { DeliveryStatus::Expired } else { self }
    }
}

/// The status of one target of a push, as the API shows it: the furthest any of its
/// deliveries got, or why it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetStatus {
    /// As far as its deliveries got (or `expired`, `revoked`).
    Delivery(DeliveryStatus),
    /// No such device in the app: recorded, never delivered.
    Undeliverable,
}

impl TargetStatus {
    /// The JSON form.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Delivery(s) => s.as_str(),
            TargetStatus::Undeliverable => "undeliverable",
        }
    }

    /// How far a delivery in this status got: the target shows its furthest delivery.
    const fn progress(self) -> u8 {
        use DeliveryStatus as D;
        match self {
            TargetStatus::Delivery(D::Opened) => 6,
            TargetStatus::Delivery(D::Ignored) => 5,
            TargetStatus::Delivery(D::Delivered) => 4,
            TargetStatus::Delivery(D::Sent) => 3,
            TargetStatus::Delivery(D::Pending) => 2,
            TargetStatus::Delivery(D::Expired | D::Revoked) | TargetStatus::Undeliverable => 1,
        }
    }

    /// The status of a target whose deliveries are `deliveries` (as of now), given whether
    /// it was undeliverable or revoked and whether its validity has ended.
    pub fn of_target(
        undeliverable: bool,
        revoked: bool,
        expired: bool,
        deliveries: impl IntoIterator<Item = DeliveryStatus>,
    ) -> TargetStatus {
        if undeliverable {
            return TargetStatus::Undeliverable;
        }
        if revoked {
            return TargetStatus::Delivery(DeliveryStatus::Revoked);
        }
        let best = deliveries.into_iter().map(TargetStatus::Delivery).max_by_key(|s| s.progress());
        match best {
            Some(s) if s.progress() > 1 => s,
            Some(_) => TargetStatus::Delivery(DeliveryStatus::Expired),
            None if expired => TargetStatus::Delivery(DeliveryStatus::Expired),
            None => TargetStatus::Delivery(DeliveryStatus::Pending),
        }
    }
}

impl serde::Serialize for TargetStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

stored_enum! {
    /// The kind of a push request (and of its task).
    pub enum PushType (push_type, $) {
        Simple = "simple",
        Template = "template",
        Multiple = "multiple",
        Broadcast = "broadcast",
    }
}

impl PushType {
    /// MPS's number for the type (QueryPushSchedulerList `type`).
    pub const fn mps_code(self) -> i64 {
        match self {
            PushType::Simple => 0,
            PushType::Template => 1,
            PushType::Multiple => 2,
            PushType::Broadcast => 3,
        }
    }

    pub fn from_mps_code(code: i64) -> Option<PushType> {
        PushType::ALL.iter().copied().find(|t| t.mps_code() == code)
    }

    /// Template, Multiple and Broadcast pushes fill a template.
    pub const fn uses_template(self) -> bool {
        !matches!(self, PushType::Simple)
    }
}

coded_enum! {
    /// Where a scheduled push is (MPS `executedStatus`).
    pub enum ScheduleStatus (schedule_status) {
        /// Its next firing is ahead.
        Waiting = 0,
        /// Fired (for a recurring push: its last occurrence has fired).
        Executed = 1,
        Cancelled = 2,
        /// Its time came while no node could send it within its validity.
        Missed = 3,
    }
}

coded_enum! {
    /// How a scheduled push repeats (MPS `strategyType`; 0, "now", is never stored).
    pub enum StrategyKind (strategy_kind) {
        /// Once, at a fixed time.
        Once = 1,
        /// Daily, weekly or monthly between two dates.
        Recurring = 2,
    }
}

coded_enum! {
    /// Which devices of the platform a broadcast reaches (MPS `pushStatus`).
    pub enum BroadcastAudience (audience) {
        /// Devices with a bound user.
        Bound = 0,
        All = 1,
        /// Devices without a user.
        Unbound = 2,
    }
}

stored_enum! {
    /// The way a message reaches a device: Herald's own MQTT connection, or a vendor's
    /// push service. The vendor names are also the keys of a device's `vendorTokens`.
    pub enum Channel (channel, $) {
        /// Herald's own MQTT connection.
        Own = "own",
        Apns = "apns",
        Fcm = "fcm",
        Hms = "hms",
        Xiaomi = "xiaomi",
        WebPush = "webpush",
    }
}

impl Channel {
    /// The vendor channels, whose tokens a device reports.
    pub const VENDORS: &'static [Channel] =
        &[Channel::Apns, Channel::Fcm, Channel::Hms, Channel::Xiaomi, Channel::WebPush];

    pub const fn is_vendor(self) -> bool {
        !matches!(self, Channel::Own)
    }
}

stored_enum! {
    /// The kind of an API key.
    pub enum KeyKind (key_kind, $) {
        /// A shared secret; requests are signed with HMAC-SHA256.
        Hmac = "hmac",
        /// The app's RSA public key; requests are signed with SHA256withRSA.
        Rsa = "rsa",
    }
}

stored_enum! {
    /// What a message is addressed to.
    pub enum TargetKind (target_kind, $) {
        Device = "device",
        User = "user",
        /// The app's devices of a platform (only as the idempotency scope of a broadcast's
        /// msgkey).
        Broadcast = "broadcast",
    }
}

stored_enum! {
    /// What a stored message carries to a device.
    pub enum MessageKind (message_kind, $) {
        /// A notification of a push.
        Notification = "notification",
        /// A control message withdrawing a notification the device got (see revoke).
        Revoke = "revoke",
    }
}

stored_enum! {
    /// The platform of a device.
    pub enum Platform (platform, $) {
        Android = "android",
        Ios = "ios",
        Harmonyos = "harmonyos",
        Web = "web",
    }
}

stored_enum! {
    /// What a device reports about a message it got.
    pub enum DeviceEvent (device_event, $) {
        Arrived = "arrived",
        Opened = "opened",
        Ignored = "ignored",
    }
}

stored_enum! {
    /// MPS `notifyType`: whether a vendor channel may carry the message.
    pub enum NotifyType (notify_type, $) {
        /// The own channel, or a vendor's where the app's policy allows (the default).
        Notify = "notify",
        /// Herald's own channel only.
        Transparent = "transparent",
    }
}

stored_enum! {
    /// How an app's messages choose between the own channel and a vendor's.
    pub enum RoutingPolicy (routing_policy, $) {
        /// The own channel when the device holds a connection at the push; else its vendor
        /// (the default).
        OwnFirst = "ownFirst",
        /// The vendor whenever the device has a usable token; the own channel copy waits
        /// for the device's next connection.
        VendorFirst = "vendorFirst",
        /// Both at once; the device drops the second copy by its messageId.
        Both = "both",
    }
}

stored_enum! {
    /// Where one vendor send stands.
    pub enum VendorSendStatus (vendor_send_status, $) {
        /// To be sent (again) at its `next_at`.
        Waiting = "waiting",
        /// The vendor accepted it.
        Sent = "sent",
        /// The vendor refused it for good, or retries ran out.
        Failed = "failed",
        /// The vendor called the token invalid.
        InvalidToken = "invalidToken",
        /// Its validity ended before a vendor took it.
        Expired = "expired",
        /// Revoked before it was sent.
        Revoked = "revoked",
        /// Revoked after a vendor took it: a copy that replaces it on the device (same
        /// collapse id, tag or notify id) was accepted by the vendor.
        Recalled = "recalled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_back() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(serde_json::from_value::<DeliveryStatus>(s.as_str().into()).unwrap(), *s);
        }
        for s in ScheduleStatus::ALL {
            assert_eq!(ScheduleStatus::from_code(s.code()), Some(*s));
        }
        for t in PushType::ALL {
            assert_eq!(PushType::from_mps_code(t.mps_code()), Some(*t));
        }
        assert_eq!(PushType::from_mps_code(4), None, "an unknown type is not a broadcast");
        assert!(serde_json::from_value::<KeyKind>("dsa".into()).unwrap_err().to_string().contains("hmac, rsa"));
    }

    #[test]
    fn sql_literals_come_from_the_declaration() {
        // (The list form, `delivery_status!(Pending, Sent)`, is checked where it is used: in
        // the store, which reaches these macros by path.)
        assert_eq!(delivery_status!(Pending), "'pending'");
        assert_eq!(schedule_status!(Cancelled), "2");
        assert_eq!(message_kind!(Revoke), "'revoke'");
    }

    #[test]
    fn a_target_shows_its_furthest_delivery() {
        use DeliveryStatus as D;
        use TargetStatus::Delivery;
        assert_eq!(TargetStatus::of_target(false, false, false, [D::Pending, D::Opened]), Delivery(D::Opened));
        assert_eq!(TargetStatus::of_target(false, false, false, [D::Expired, D::Sent]), Delivery(D::Sent));
        assert_eq!(TargetStatus::of_target(false, false, false, [D::Expired]), Delivery(D::Expired));
        assert_eq!(TargetStatus::of_target(false, false, false, []), Delivery(D::Pending));
        assert_eq!(TargetStatus::of_target(false, false, true, []), Delivery(D::Expired));
        assert_eq!(TargetStatus::of_target(false, true, false, [D::Delivered]), Delivery(D::Revoked));
        assert_eq!(TargetStatus::of_target(true, false, false, []), TargetStatus::Undeliverable);
        assert_eq!(serde_json::to_value(TargetStatus::Undeliverable).unwrap(), "undeliverable");
        assert_eq!(D::Sent.as_of(10, 10), D::Expired);
        assert_eq!(D::Delivered.as_of(10, 20), D::Delivered);
    }
}

stored_enum! {
    /// A change in a delivery's life, as the journal records it and a receipt shows it
    /// (`pushed` is counted, never sent as a receipt).
    pub enum Change (change, $) {
        /// A delivery was created (a push committed, or a user's message reached a device
        /// that bound the user); for a broadcast, once for its whole audience.
        Pushed = "pushed",
        /// Handed to a channel: written to a connection that closed before acknowledging,
        /// or taken by a vendor.
        Sent = "sent",
        /// Acknowledged by the device (PUBACK), reported `arrived`, or confirmed by a
        /// vendor's receipt.
        Delivered = "delivered",
        Opened = "opened",
        Ignored = "ignored",
        Expired = "expired",
        /// A vendor refused it (the reason says why); the own channel may still deliver it.
        Failed = "failed",
        Revoked = "revoked",
    }
}

stored_enum! {
    /// The length of an analytics bucket.
    pub enum Granularity (granularity, $) {
        Minute = "minute",
        Hour = "hour",
        Day = "day",
    }
}

impl Granularity {
    /// A bucket's length in milliseconds (days are UTC days).
    pub const fn millis(self) -> i64 {
        match self {
            Granularity::Minute => 60_000,
            Granularity::Hour => 3_600_000,
            Granularity::Day => 86_400_000,
        }
    }

    /// The start of the bucket `at` falls in.
    pub const fn bucket(self, at: i64) -> i64 {
        at - at.rem_euclid(self.millis())
    }
}
