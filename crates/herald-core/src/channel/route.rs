//! Which channel carries a message to a device (DESIGN §7): the own channel when the device
//! is connected (under the default policy), else the vendor of a token the device reported,
//! as the message's `notifyType`, the app's channels and its routing policy allow.

use serde_json::{Map, Value};

use crate::state::{Channel, Platform, RoutingPolicy};

/// An app's routing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub policy: RoutingPolicy,
    /// The vendors tried for an Android device, first to last.
    pub android_order: Vec<Channel>,
}

/// Android vendors, in the default order: the phone maker's service first (it reaches a
/// phone whose maker kills background sockets), FCM last.
pub const ANDROID_VENDORS: [Channel; 3] = [Channel::Hms, Channel::Xiaomi, Channel::Fcm];

impl Default for Routing {
    fn default() -> Self {
        Routing { policy: RoutingPolicy::OwnFirst, android_order: ANDROID_VENDORS.to_vec() }
    }
}

impl Routing {
    /// Reads the stored order (`hms,xiaomi,fcm`); a bad stored value falls back to the default.
    pub fn from_stored(policy: &str, order: &str) -> Routing {
        Routing {
            policy: RoutingPolicy::parse(policy).unwrap_or(RoutingPolicy::OwnFirst),
            android_order: parse_order(order.split(',').map(str::to_owned))
                .unwrap_or_else(|_| ANDROID_VENDORS.to_vec()),
        }
    }

    pub fn stored_order(&self) -> String {
        self.android_order.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Whether a message goes to a vendor for a device: `notify` is the message's
    /// `notifyType` (false for `transparent`), `online` whether the device held a connection
    /// when the push committed.
    pub fn wants_vendor(&self, notify: bool, online: bool) -> bool {
        notify
            && match self.policy {
                RoutingPolicy::OwnFirst => !online,
                RoutingPolicy::VendorFirst | RoutingPolicy::Both => true,
            }
    }

    /// Whether the own channel's copy is handed to the device's connection now, given that
    /// a vendor took the message (`vendor_routed`). Either way it stays pending in the store
    /// until delivered, revoked or expired.
    pub fn own_now(&self, vendor_routed: bool) -> bool {
        !(vendor_routed && self.policy == RoutingPolicy::VendorFirst)
    }

    /// The vendor and stored token that carry a message to a device of `platform` with
    /// `tokens`, among the app's `configured` channels; `None` when no vendor can.
    pub fn vendor_for(
        &self,
        platform: Platform,
        tokens: &Map<String, Value>,
        configured: &[Channel],
    ) -> Option<(Channel, String)> {
        let order: &[Channel] = match platform {
            Platform::Ios => &[Channel::Apns, Channel::Fcm],
            Platform::Android => &self.android_order,
            Platform::Harmonyos => &[Channel::Hms],
            Platform::Web => &[Channel::WebPush],
        };
        order.iter().filter(|c| configured.contains(c)).find_map(|c| {
            let token = tokens.get(c.as_str())?.as_str()?;
            Some((*c, token.to_owned()))
        })
    }
}

/// An Android vendor order as an app sets it: each of hms, xiaomi and fcm at most once.
pub fn parse_order(names: impl IntoIterator<Item = String>) -> Result<Vec<Channel>, String> {
    let mut order = Vec::new();
    for name in names {
        let channel = Channel::parse(name.trim())
            .filter(|c| ANDROID_VENDORS.contains(c))
            .ok_or_else(|| "androidOrder may name hms, xiaomi and fcm".to_string())?;
        if order.contains(&channel) {
            return Err(format!("androidOrder names {channel} twice"));
        }
        order.push(channel);
    }
    if order.is_empty() {
        return Err("androidOrder names no vendor".into());
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn android_follows_the_app_order_among_configured_channels() {
        let r = Routing::default();
        let t = tokens(json!({"fcm": "f", "xiaomi": "x", "hms": "h"}));
        let all = [Channel::Fcm, Channel::Hms, Channel::Xiaomi];
        assert_eq!(r.vendor_for(Platform::Android, &t, &all), Some((Channel::Hms, "h".into())));
        assert_eq!(
            r.vendor_for(Platform::Android, &t, &[Channel::Fcm, Channel::Xiaomi]),
            Some((Channel::Xiaomi, "x".into()))
        );
        let fcm_first = Routing { android_order: vec![Channel::Fcm, Channel::Hms], ..Routing::default() };
        assert_eq!(fcm_first.vendor_for(Platform::Android, &t, &all), Some((Channel::Fcm, "f".into())));
        assert_eq!(r.vendor_for(Platform::Android, &tokens(json!({"apns": "a"})), &[Channel::Apns]), None);
    }

    #[test]
    fn ios_uses_apns_and_web_uses_web_push() {
        let r = Routing::default();
        let t = tokens(json!({"apns": "a", "webpush": "{}"}));
        assert_eq!(r.vendor_for(Platform::Ios, &t, &[Channel::Apns]), Some((Channel::Apns, "a".into())));
        assert_eq!(r.vendor_for(Platform::Ios, &t, &[]), None);
        assert_eq!(r.vendor_for(Platform::Web, &t, &[Channel::WebPush]), Some((Channel::WebPush, "{}".into())));
    }

    #[test]
    fn policy_and_notify_type_decide() {
        let own = Routing::default();
        assert!(own.wants_vendor(true, false));
        assert!(!own.wants_vendor(true, true));
        assert!(!own.wants_vendor(false, false), "transparent stays on the own channel");
        let both = Routing { policy: RoutingPolicy::Both, ..Routing::default() };
        assert!(both.wants_vendor(true, true) && both.own_now(true));
        let vendor = Routing { policy: RoutingPolicy::VendorFirst, ..Routing::default() };
        assert!(vendor.wants_vendor(true, true) && !vendor.own_now(true) && vendor.own_now(false));
    }

    #[test]
    fn orders_are_checked_and_stored_back() {
        assert!(parse_order(["fcm".into(), "fcm".into()]).is_err());
        assert!(parse_order(["apns".into()]).is_err());
        let r = Routing::from_stored("both", "fcm,hms");
        assert_eq!(r.stored_order(), "fcm,hms");
        assert_eq!(Routing::from_stored("?", "bad").android_order, ANDROID_VENDORS.to_vec());
    }
}
