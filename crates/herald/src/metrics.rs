//! Prometheus counters of one node, rendered as text at `/metrics`. A few atomics held by
//! the node (not process-wide statics: several nodes may share a process, as in the tests),
//! enough for the operator's first dashboards without a metrics framework.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::ids::AppId;
use herald_core::state::Channel;
use parking_lot::Mutex;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one node.
#[derive(Default)]
pub struct Metrics {
    /// Push requests (and firings of schedules) committed to the store.
    pub pushes_accepted: Counter,
    /// QoS 1 deliveries written to device connections.
    pub deliveries_written: Counter,
    /// Deliveries acknowledged by devices (PUBACK).
    pub deliveries_acked: Counter,
    /// Vendor sends by channel, app and outcome, and their latency.
    pub vendor: VendorMetrics,
    /// Status changes counted into the analytics by this node.
    pub changes_counted: Counter,
    /// Receipts acknowledged by webhooks (2xx), posts refused or failed, receipts given up.
    pub receipts_posted: Counter,
    pub receipt_posts_failed: Counter,
    pub receipts_given_up: Counter,
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// The upper bounds (seconds) of the vendor send-latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// One channel's latency histogram: counts per bucket (cumulative when rendered), sum, count.
#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Vendor sends per channel and app: sent, failed, invalid_token, retried; and the time a
/// vendor took to answer, per channel.
#[derive(Default)]
pub struct VendorMetrics {
    outcomes: Mutex<BTreeMap<(Channel, AppId, &'static str), u64>>,
    latency: Mutex<BTreeMap<Channel, Histogram>>,
    /// APNs certificates' ends (Unix ms) by app, as this node last saw them.
    certificates: Mutex<BTreeMap<AppId, i64>>,
}

impl VendorMetrics {
    pub fn record(&self, channel: Channel, app: &AppId, outcome: &'static str, took: Option<Duration>) {
        *self.outcomes.lock().entry((channel, app.clone(), outcome)).or_default() += 1;
        if let Some(took) = took {
            let secs = took.as_secs_f64();
            let mut latency = self.latency.lock();
            let h = latency.entry(channel).or_default();
            if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
                h.buckets[i] += 1;
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// The app's APNs certificate ends at `not_after` (Unix ms); `None`: it has none now.
    pub fn certificate(&self, app: &AppId, not_after: Option<i64>) {
        let mut certificates = self.certificates.lock();
        match not_after {
            Some(at) => certificates.insert(app.clone(), at),
            None => certificates.remove(app),
        };
    }

    /// How many sends of `channel` ended with `outcome`, over every app.
    pub fn total(&self, channel: Channel, outcome: &str) -> u64 {
        self.outcomes.lock().iter().filter(|((c, _, o), _)| *c == channel && *o == outcome).map(|(_, n)| n).sum()
    }

    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP herald_apns_certificate_expiry_seconds Seconds until an app's APNs certificate expires \
             (negative: expired); Herald warns from 30 days.\n# TYPE herald_apns_certificate_expiry_seconds gauge\n",
        );
        let now = herald_core::now_ms();
        for (app, at) in self.certificates.lock().iter() {
            out.push_str(&format!("herald_apns_certificate_expiry_seconds{{app=\"{app}\"}} {}\n", (at - now) / 1000));
        }
        out.push_str(
            "# HELP herald_vendor_sends_total Vendor sends by channel, app and outcome (sent, failed, \
             invalid_token, retried).\n# TYPE herald_vendor_sends_total counter\n",
        );
        for ((channel, app, outcome), n) in self.outcomes.lock().iter() {
            // App ids are Herald's own (checked when created): safe as label values.
            out.push_str(&format!(
                "herald_vendor_sends_total{{channel=\"{channel}\",app=\"{app}\",outcome=\"{outcome}\"}} {n}\n"
            ));
        }
        out.push_str(
            "# HELP herald_vendor_send_seconds Time a vendor took to answer one send.\n\
             # TYPE herald_vendor_send_seconds histogram\n",
        );
        for (channel, h) in self.latency.lock().iter() {
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                out.push_str(&format!(
                    "herald_vendor_send_seconds_bucket{{channel=\"{channel}\",le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "herald_vendor_send_seconds_bucket{{channel=\"{channel}\",le=\"+Inf\"}} {}\n\
                 herald_vendor_send_seconds_sum{{channel=\"{channel}\"}} {}\n\
                 herald_vendor_send_seconds_count{{channel=\"{channel}\"}} {}\n",
                h.count, h.sum, h.count
            ));
        }
    }
}

impl Metrics {
    /// The Prometheus text of the counters, of the connections this node holds, and of its
    /// bus: connected or not, since when not, and whether the cluster is degraded (a node
    /// lost the bus, so deliveries between nodes wait for the resync).
    pub fn render(&self, connections: usize, bus: &crate::bus::Bus, degraded: bool) -> String {
        let counters = [
            ("herald_pushes_accepted_total", "Push requests committed to the store.", &self.pushes_accepted),
            (
                "herald_deliveries_written_total",
                "QoS 1 deliveries written to device connections.",
                &self.deliveries_written,
            ),
            ("herald_deliveries_acked_total", "Deliveries acknowledged by devices (PUBACK).", &self.deliveries_acked),
            ("herald_changes_counted_total", "Status changes counted into the analytics.", &self.changes_counted),
            ("herald_receipts_posted_total", "Receipts acknowledged by app webhooks.", &self.receipts_posted),
            ("herald_receipt_posts_failed_total", "Receipt POSTs refused or unanswered.", &self.receipt_posts_failed),
            (
                "herald_receipts_given_up_total",
                "Receipts given up after receipts.max_age_secs.",
                &self.receipts_given_up,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in counters {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", c.get()));
        }
        out.push_str(&format!(
            "# HELP herald_mqtt_connections Device connections held by this node.\n\
             # TYPE herald_mqtt_connections gauge\nherald_mqtt_connections {connections}\n"
        ));
        if bus.is_cluster() {
            let down_secs = bus.down_since().map_or(0, |since| (herald_core::now_ms() - since).max(0) / 1000);
            out.push_str(&format!(
                "# HELP herald_bus_connected 1 while this node is connected to the bus (NATS), 0 while it has lost it.\n\
                 # TYPE herald_bus_connected gauge\nherald_bus_connected {}\n\
                 # HELP herald_bus_down_seconds How long this node has been without the bus (0 while connected).\n\
                 # TYPE herald_bus_down_seconds gauge\nherald_bus_down_seconds {down_secs}\n\
                 # HELP herald_cluster_degraded 1 while a node of the cluster has lost the bus and deliveries \
                 between nodes go through the store.\n\
                 # TYPE herald_cluster_degraded gauge\nherald_cluster_degraded {}\n",
                u8::from(bus.available()),
                u8::from(degraded)
            ));
        }
        self.vendor.render(&mut out);
        out
    }
}
