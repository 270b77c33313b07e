//! Token buckets: the per-address CONNECT limit of the gateway and the per-app flow control
//! of the API ([`FlowControl`]) both spend tokens that come back at a steady rate up to a
//! burst.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::error::{ApiError, ErrorCode};
use herald_core::ids::AppId;
use parking_lot::Mutex;

/// Tokens left, and when they were last counted.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, refilled: now }
    }

    /// Takes `n` tokens, refilled at `rate` a second up to `burst`; `Err` with how long until
    /// `n` would be there when they are not.
    pub fn take(&mut self, n: f64, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.refilled = now;
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        Err(Duration::from_secs_f64((n - self.tokens) / rate.max(f64::MIN_POSITIVE)))
    }

    /// True when the bucket has been full for a while: it can be forgotten.
    pub fn refilled_by(&self, rate: f64, burst: f64, now: Instant) -> bool {
        let full_after = (burst - self.tokens) / rate.max(f64::MIN_POSITIVE);
        now.saturating_duration_since(self.refilled).as_secs_f64() >= full_after
    }
}

/// What per-address limits count by: an IPv4 address, or an IPv6 address's /64 (one host
/// holds a whole /64, and would otherwise get an entry per address it picks).
pub fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

/// Connections open per source address, at most `max` each (0: no limit), `exempt`
/// addresses not counted. An entry lives while its address has a connection open.
pub struct OpenPerAddress {
    max: usize,
    exempt: Vec<IpAddr>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; it is uncounted when this is dropped.
pub struct Opened {
    counter: Arc<OpenPerAddress>,
    source: Option<IpAddr>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let Some(source) = self.source else { return };
        let mut open = self.counter.open.lock();
        if let Some(n) = open.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                open.remove(&source);
            }
        }
    }
}

impl OpenPerAddress {
    pub fn new(max: usize, exempt: Vec<IpAddr>) -> Arc<OpenPerAddress> {
        Arc::new(OpenPerAddress { max, exempt, open: Mutex::new(HashMap::new()) })
    }

    /// Counts a connection from `ip`; `None` when its address has `max` open already.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> Option<Opened> {
        let ip = ip.to_canonical();
        if self.max == 0 || self.exempt.contains(&ip) {
            return Some(Opened { counter: self.clone(), source: None });
        }
        let source = source(ip);
        let mut open = self.open.lock();
        let n = open.entry(source).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Opened { counter: self.clone(), source: Some(source) })
    }
}

/// One bucket per app: a rate and a burst (0: no limit).
struct PerApp {
    what: &'static str,
    rate: f64,
    burst: f64,
    apps: Mutex<HashMap<AppId, Bucket>>,
}

impl PerApp {
    fn new(what: &'static str, rate: u32, burst: u32) -> PerApp {
        PerApp { what, rate: f64::from(rate), burst: f64::from(burst), apps: Mutex::new(HashMap::new()) }
    }

    fn take(&self, app: &AppId, n: usize, now: Instant) -> Result<(), ApiError> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let mut apps = self.apps.lock();
        // Looked up before it is inserted: no copy of the app id per request.
        if !apps.contains_key(app) {
            apps.insert(app.clone(), Bucket::full(self.burst, now));
        }
        let bucket = apps.get_mut(app).expect("inserted above");
        bucket.take(n as f64, self.rate, self.burst, now).map_err(|wait| {
            let mut e = ApiError::new(
                ErrorCode::FlowControl,
                format!(
                    "this app sends more than {} {} a second to this node; retry in {} ms",
                    self.rate,
                    self.what,
                    wait.as_millis().max(1)
                ),
            );
            e.retry_after = Some(wait);
            e
        })
    }
}

/// Per-app limits of one node: signed API requests a second, and push targets a second (a
/// broadcast counts one). An app over either gets `FLOW_CONTROL` (429) and nothing is
/// done; the other apps are not held back. The buckets live in memory, one per app that
/// sent a verified request; each node of a cluster keeps its own.
pub struct FlowControl {
    requests: PerApp,
    pushes: PerApp,
}

impl FlowControl {
    pub fn new(limits: &herald_core::limits::Limits) -> FlowControl {
        FlowControl {
            requests: PerApp::new("requests", limits.app_requests_per_second, limits.app_request_burst),
            pushes: PerApp::new("push targets", limits.app_pushes_per_second, limits.app_push_burst),
        }
    }

    /// One signed request of `app`.
    pub fn request(&self, app: &AppId) -> Result<(), ApiError> {
        self.requests.take(app, 1, Instant::now())
    }

    /// A push of `app` to `targets` targets.
    pub fn push(&self, app: &AppId, targets: usize) -> Result<(), ApiError> {
        self.pushes.take(app, targets, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t = Instant::now();
        let mut b = Bucket::full(3.0, t);
        for _ in 0..3 {
            assert_eq!(b.take(1.0, 2.0, 3.0, t), Ok(()));
        }
        assert_eq!(b.take(1.0, 2.0, 3.0, t), Err(Duration::from_millis(500)));
        assert_eq!(b.take(1.0, 2.0, 3.0, t + Duration::from_millis(500)), Ok(()));
        assert_eq!(b.take(2.0, 2.0, 3.0, t + Duration::from_millis(500)), Err(Duration::from_secs(1)));
        assert!(!b.refilled_by(2.0, 3.0, t + Duration::from_secs(1)));
        assert!(b.refilled_by(2.0, 3.0, t + Duration::from_secs(2)));
    }

    #[test]
    fn open_connections_per_address_are_capped_and_given_back() {
        let per = OpenPerAddress::new(2, vec!["127.0.0.1".parse().unwrap()]);
        let (a, b): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
        let first = per.open(a).unwrap();
        let _second = per.open(a).unwrap();
        assert!(per.open(a).is_none(), "a third from one address");
        assert!(per.open(b).is_some(), "another address has its own count");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let (_x, _y) = (per.open(v6).unwrap(), per.open("2001:db8::2".parse().unwrap()).unwrap());
        assert!(per.open("2001:db8::3".parse().unwrap()).is_none(), "one /64 is one address");
        drop(first);
        assert!(per.open(a).is_some(), "a closed connection gives its place back");
        let exempt: Vec<_> = (0..5).map(|_| per.open("127.0.0.1".parse().unwrap())).collect();
        assert!(exempt.iter().all(Option::is_some));
        drop(exempt);
        assert_eq!(per.open.lock().len(), 2, "entries only for addresses with connections open");
    }

    #[test]
    fn one_app_over_its_limit_does_not_hold_back_another() {
        let p = PerApp::new("push targets", 10, 20);
        let (a, b, t) = (AppId::new("app-a"), AppId::new("app-b"), Instant::now());
        assert!(p.take(&a, 20, t).is_ok());
        let e = p.take(&a, 5, t).unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::FlowControl, Some(Duration::from_millis(500))));
        assert!(e.message.contains("10 push targets a second"), "{}", e.message);
        assert!(p.take(&b, 20, t).is_ok(), "another app has its own bucket");
        assert!(p.take(&a, 5, t + Duration::from_millis(500)).is_ok());
        let unlimited = PerApp::new("requests", 0, 0);
        assert!((0..1000).all(|_| unlimited.take(&a, 100, t).is_ok()));
    }
}
