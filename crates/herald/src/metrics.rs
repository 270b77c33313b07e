//! Prometheus counters, rendered as text at `/metrics`. A handful of process-wide atomics:
//! enough for the operator's first dashboards without a metrics framework.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Counter { name, help, value: AtomicU64::new(0) }
    }

    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static PUSHES_ACCEPTED: Counter =
    Counter::new("herald_pushes_accepted_total", "Push requests committed to the store.");
pub static DELIVERIES_WRITTEN: Counter =
    Counter::new("herald_deliveries_written_total", "QoS 1 deliveries written to device connections.");
pub static DELIVERIES_ACKED: Counter =
    Counter::new("herald_deliveries_acked_total", "Deliveries acknowledged by devices (PUBACK).");

const COUNTERS: &[&Counter] = &[&PUSHES_ACCEPTED, &DELIVERIES_WRITTEN, &DELIVERIES_ACKED];

pub fn render(connections: usize) -> String {
    let mut out = String::new();
    for c in COUNTERS {
        out.push_str(&format!("# HELP {} {}\n# TYPE {} counter\n{} {}\n", c.name, c.help, c.name, c.name, c.get()));
    }
    out.push_str(&format!(
        "# HELP herald_mqtt_connections Device connections held by this node.\n\
         # TYPE herald_mqtt_connections gauge\nherald_mqtt_connections {connections}\n"
    ));
    out
}
