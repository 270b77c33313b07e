//! Prometheus counters of one node, rendered as text at `/metrics`. A few atomics held by
//! the node (not process-wide statics: several nodes may share a process, as in the tests),
//! enough for the operator's first dashboards without a metrics framework.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Metrics {
    /// The Prometheus text of the counters, and of the connections this node holds.
    pub fn render(&self, connections: usize) -> String {
        let counters = [
            ("herald_pushes_accepted_total", "Push requests committed to the store.", &self.pushes_accepted),
            (
                "herald_deliveries_written_total",
                "QoS 1 deliveries written to device connections.",
                &self.deliveries_written,
            ),
            ("herald_deliveries_acked_total", "Deliveries acknowledged by devices (PUBACK).", &self.deliveries_acked),
        ];
        let mut out = String::new();
        for (name, help, c) in counters {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", c.get()));
        }
        out.push_str(&format!(
            "# HELP herald_mqtt_connections Device connections held by this node.\n\
             # TYPE herald_mqtt_connections gauge\nherald_mqtt_connections {connections}\n"
        ));
        out
    }
}
