//! Who may open an MQTT connection: per source address, at most
//! `mqtt.max_connections_per_address` open at once, and new connections limited by a token
//! bucket (`mqtt.connects_per_second_per_address`, `mqtt.connect_burst_per_address`), so that
//! one host can neither take a node's descriptors nor flood it with CONNECTs, and a
//! reconnect storm behind one NAT is spread over seconds instead of landing at once.
//! Addresses in `mqtt.limits_exempt` (a local TLS proxy's; by default the loopback's) are
//! not limited. An IPv6 address counts as its /64 (one host holds a whole /64, and would
//! otherwise get a bucket, and an entry here, per address). A refused connection is told
//! when to come back, if the node has room to answer it (see `Gateway::refuse`), and
//! closed otherwise.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::MqttConfig;
use crate::rate::{Bucket, source};

pub(super) struct Admission {
    max_open: usize,
    per_second: f64,
    burst: f64,
    exempt: Vec<IpAddr>,
    addresses: Mutex<HashMap<IpAddr, Address>>,
}

struct Address {
    open: usize,
    bucket: Bucket,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    TooManyOpen,
    /// With the time until the address's bucket has a token again.
    TooFast(std::time::Duration),
}

impl Admission {
    pub(super) fn new(cfg: &MqttConfig) -> Admission {
        Admission {
            max_open: cfg.max_connections_per_address,
            per_second: f64::from(cfg.connects_per_second_per_address),
            burst: f64::from(cfg.connect_burst_per_address),
            exempt: cfg.limits_exempt.clone(),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a connection from `ip` (to be [`Admission::release`]d when it ends):
    /// `Ok(true)` when it is counted, `Ok(false)` when its address is exempt.
    pub(super) fn admit(&self, ip: IpAddr, now: Instant) -> Result<bool, Refused> {
        if self.exempt.contains(&ip) {
            return Ok(false);
        }
        let mut addresses = self.addresses.lock();
        let a = addresses.entry(source(ip)).or_insert(Address { open: 0, bucket: Bucket::full(self.burst, now) });
        if self.max_open > 0 && a.open >= self.max_open {
            return Err(Refused::TooManyOpen);
        }
        a.bucket.take(1.0, self.per_second, self.burst, now).map_err(Refused::TooFast)?;
        a.open += 1;
        Ok(true)
    }

    pub(super) fn release(&self, ip: IpAddr) {
        if let Some(a) = self.addresses.lock().get_mut(&source(ip)) {
            a.open = a.open.saturating_sub(1);
        }
    }

    /// Forgets addresses with nothing open whose bucket has refilled: what is kept is
    /// bounded by the connections open and the last few seconds' attempts.
    pub(super) fn sweep(&self, now: Instant) {
        self.addresses.lock().retain(|_, a| a.open > 0 || !a.bucket.refilled_by(self.per_second, self.burst, now));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admission(max_open: usize, per_second: u32, burst: u32) -> Admission {
        let cfg = MqttConfig {
            max_connections_per_address: max_open,
            connects_per_second_per_address: per_second,
            connect_burst_per_address: burst,
            limits_exempt: vec!["127.0.0.1".parse().unwrap()],
            ..MqttConfig::default()
        };
        Admission::new(&cfg)
    }

    #[test]
    fn open_connections_per_address_are_capped() {
        let a = admission(2, 1000, 1000);
        let (ip, other, t) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), Instant::now());
        assert_eq!(a.admit(ip, t), Ok(true));
        assert_eq!(a.admit(ip, t), Ok(true));
        assert_eq!(a.admit(ip, t), Err(Refused::TooManyOpen));
        assert_eq!(a.admit(other, t), Ok(true), "another address is not held back");
        a.release(ip);
        assert_eq!(a.admit(ip, t), Ok(true));
        assert_eq!(a.admit("127.0.0.1".parse().unwrap(), t), Ok(false), "exempt");
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let a = admission(2, 1000, 1000);
        let t = Instant::now();
        assert_eq!(a.admit("2001:db8:1:2::1".parse().unwrap(), t), Ok(true));
        assert_eq!(a.admit("2001:db8:1:2:ffff::9".parse().unwrap(), t), Ok(true));
        assert_eq!(a.admit("2001:db8:1:2:abcd::1".parse().unwrap(), t), Err(Refused::TooManyOpen));
        assert_eq!(a.admit("2001:db8:1:3::1".parse().unwrap(), t), Ok(true), "another /64");
        a.release("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a.admit("2001:db8:1:2::7".parse().unwrap(), t), Ok(true));
    }

    #[test]
    fn new_connections_per_address_follow_a_token_bucket() {
        let a = admission(0, 2, 3);
        let (ip, t) = ("10.0.0.1".parse().unwrap(), Instant::now());
        for _ in 0..3 {
            assert_eq!(a.admit(ip, t), Ok(true));
        }
        assert_eq!(a.admit(ip, t), Err(Refused::TooFast(Duration::from_millis(500))));
        assert_eq!(a.admit(ip, t + Duration::from_millis(500)), Ok(true), "one token back after 0.5 s");
        assert!(matches!(a.admit(ip, t + Duration::from_millis(500)), Err(Refused::TooFast(_))));
        for _ in 0..5 {
            a.release(ip);
        }
        a.sweep(t + Duration::from_millis(600));
        assert_eq!(a.addresses.lock().len(), 1, "its bucket is not full yet");
        a.sweep(t + Duration::from_secs(3));
        assert!(a.addresses.lock().is_empty());
    }
}
