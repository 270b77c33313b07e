//! The soak's ledger: what the pushes and deliveries were, and what each fault cost.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::Fault;

/// What the soak saw, and what the ledger found.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub cycles: usize,
    /// Pushes answered 200.
    pub accepted: usize,
    /// Pushes answered with a refusal (non-200): the node was starting or stopping.
    pub refused: usize,
    /// Pushes without an answer (the node died with the request in flight): either outcome
    /// is right, so they are not checked.
    pub unanswered: usize,
    /// Deliveries devices received, and how many of them were a second copy.
    pub delivered: usize,
    pub duplicates: usize,
    /// Accepted pushes their device never got (must be empty).
    pub lost: Vec<String>,
    /// Refused pushes some device got (must be empty).
    pub refused_delivered: Vec<String>,
    /// Deliveries to a device the push was not for (must be 0).
    pub misdelivered: usize,
    /// Cluster: per kind of fault, what it cost.
    pub faults: Vec<FaultStats>,
    /// Delivery latency of the pushes sent before the first fault.
    pub baseline: Option<Latency>,
    /// Cluster: deliveries later than [`LATE`], to follow in the nodes' logs.
    pub late: Vec<Late>,
}

/// A delivery is listed as late past this: the worst a bus outage should cost (a look in
/// the store every `cluster.degraded_resync_ms`, 1 s, for deliveries older than 250 ms)
/// plus a margin.
pub const LATE: Duration = Duration::from_millis(1_500);

/// A delivery later than [`LATE`]: the push, when it was sent, and how late it came.
#[derive(Debug, Clone)]
pub struct Late {
    /// The fault whose window the push was answered in.
    pub fault: &'static str,
    pub sent_unix_ms: i64,
    /// From the fault's strike to the push's request.
    pub after_fault: Duration,
    pub latency: Duration,
    /// Delivered after the next fault struck: it met that one too.
    pub overlapped: Option<&'static str>,
    pub device: String,
    pub message_id: String,
}

/// Delivery latency (from the push request sent to the device's receipt of the message).
#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub count: usize,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Latency { p50: at(0.5), p99: at(0.99), max: samples[samples.len() - 1], count: samples.len() })
    }
}

/// What one kind of fault cost, over every time it struck. A fault's window runs from the
/// moment it struck to the next fault (or the end of the pushes).
#[derive(Debug, Default, Clone)]
pub struct FaultStats {
    pub kind: &'static str,
    pub count: usize,
    /// The longest time from the fault's repair (restart done) to the next accepted push.
    pub longest_recovery: Duration,
    /// Pushes of its windows answered with a refusal, and their resultCodes.
    pub refused: usize,
    pub refused_codes: BTreeSet<String>,
    /// Pushes of its windows without an answer (sent to a node that died).
    pub unanswered: usize,
    /// Summed over the faults: from the first refused push's request to the last one's.
    pub refused_for: Duration,
    /// Delivery latency of the accepted pushes of its windows.
    pub latency: Option<Latency>,
    /// The same, of those delivered before the next fault struck: what this fault cost
    /// alone (a push whose doorbell a bus fault lost, delivered after a PostgreSQL restart
    /// that followed, waited for both).
    pub alone: Option<Latency>,
    /// Accepted pushes of its windows delivered after the next fault struck.
    pub overlapped: usize,
    /// Accepted pushes of its windows never delivered (must be 0).
    pub lost: usize,
    /// The longest time from a fault to the last push of its window that was refused,
    /// unanswered, lost or late (over 3x the baseline p99, at least 100 ms): after it,
    /// everything was as before the fault.
    pub full_recovery: Duration,
    /// Device connections lost in its windows.
    pub disconnects: usize,
}

impl Ledger {
    /// True when nothing accepted was lost, nothing refused delivered, nothing misdelivered.
    pub fn holds(&self) -> bool {
        self.lost.is_empty() && self.refused_delivered.is_empty() && self.misdelivered == 0
    }
}

impl std::fmt::Display for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fault cycles; pushes: {} accepted, {} refused, {} unanswered; deliveries: {} ({} duplicates); \
             lost {}, refused but delivered {}, misdelivered {}",
            self.cycles,
            self.accepted,
            self.refused,
            self.unanswered,
            self.delivered,
            self.duplicates,
            self.lost.len(),
            self.refused_delivered.len(),
            self.misdelivered
        )?;
        for fault in &self.faults {
            let longest = fault.longest_recovery.as_secs_f64();
            write!(f, "; {} {} (longest recovery {longest:.1} s)", fault.count, fault.kind)?;
        }
        Ok(())
    }
}

impl Ledger {
    /// The faults' costs as a Markdown table (the one in docs/operations.md).
    pub fn fault_table(&self) -> String {
        let ms = |d: Duration| format!("{}", d.as_millis());
        let mut out = String::new();
        if let Some(b) = self.baseline {
            out.push_str(&format!(
                "Baseline (before the first fault): delivery p50 {} ms, p99 {} ms, max {} ms over {} pushes.\n\n",
                ms(b.p50),
                ms(b.p99),
                ms(b.max),
                b.count
            ));
        }
        out.push_str(
            "| fault | times | pushes refused (codes) | refused for (s) | unanswered | delivery p50 / p99 / max (ms) | \
             delivered after the next fault; p99 / max of the others (ms) | accepted lost | device disconnects | \
             full recovery (s) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for f in &self.faults {
            let codes = if f.refused_codes.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.refused_codes.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            let latency =
                f.latency.map_or("-".to_string(), |l| format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max)));
            let alone = f.alone.map_or("-".to_string(), |l| format!("{} / {}", ms(l.p99), ms(l.max)));
            out.push_str(&format!(
                "| {} | {} | {}{codes} | {:.1} | {} | {latency} | {}; {alone} | {} | {} | {:.1} |\n",
                f.kind,
                f.count,
                f.refused,
                f.refused_for.as_secs_f64(),
                f.unanswered,
                f.overlapped,
                f.lost,
                f.disconnects,
                f.full_recovery.as_secs_f64()
            ));
        }
        out
    }

    /// The statistics of the fault named `kind`.
    /// The late deliveries, a line each, in the nodes' log time (UTC).
    pub fn late_list(&self) -> String {
        self.late
            .iter()
            .map(|l| {
                let ms = l.sent_unix_ms.rem_euclid(86_400_000);
                let sent =
                    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
                let overlapped =
                    l.overlapped.map(|next| format!(", delivered after a {next} struck")).unwrap_or_default();
                format!(
                    "- {} ms: sent {sent} UTC, {} ms after a {} struck{overlapped}; device {}, message {}\n",
                    l.latency.as_millis(),
                    l.after_fault.as_millis(),
                    l.fault,
                    l.device,
                    l.message_id
                )
            })
            .collect()
    }

    pub fn fault(&self, kind: Fault) -> &FaultStats {
        self.faults.iter().find(|f| f.kind == kind.name()).unwrap_or_else(|| panic!("no {} in the soak", kind.name()))
    }
}

/// A fault as it struck: when, and when it was repaired.
pub(super) struct Struck {
    /// Its index in the soak's faults.
    pub(super) kind: usize,
    pub(super) at: Instant,
}

/// What the pushes were: msgKey → (target device, outcome); and each one, timed.
#[derive(Default)]
pub(super) struct Pushes {
    pub(super) accepted: HashMap<String, String>,
    pub(super) refused: HashMap<String, String>,
    pub(super) unanswered: usize,
    pub(super) log: Vec<PushRecord>,
}

/// One push: its msgKey, when its request was sent and answered, and how.
pub(super) struct PushRecord {
    pub(super) key: String,
    pub(super) sent: Instant,
    /// When the answer came (or the request was given up): the fault whose window holds
    /// this time is the one the push met.
    pub(super) answered: Instant,
    pub(super) outcome: Outcome,
}

pub(super) enum Outcome {
    Accepted,
    /// Refused, with the answer's resultCode.
    Refused(String),
    Unanswered,
}

/// What each kind of fault (named by `kinds`) cost, from the timed pushes and deliveries;
/// sets `baseline` from the pushes sent before the first fault.
pub(super) fn costs(
    kinds: Vec<FaultStats>,
    struck: &[Struck],
    log: &[PushRecord],
    deliveries: &[(String, String, String, Instant)],
    disconnects: &[Instant],
    baseline: &mut Option<Latency>,
    late: &mut Vec<Late>,
) -> Vec<FaultStats> {
    let (now, now_unix) = (Instant::now(), herald_core::now_ms());
    let unix_ms = |at: Instant| now_unix - now.saturating_duration_since(at).as_millis() as i64;
    let mut first: HashMap<&str, Instant> = HashMap::new();
    for (_, key, _, at) in deliveries {
        let e = first.entry(key.as_str()).or_insert(*at);
        *e = (*e).min(*at);
    }
    let latency = |p: &PushRecord| first.get(p.key.as_str()).map(|at| at.saturating_duration_since(p.sent));
    let names: Vec<&'static str> = kinds.iter().map(|k| k.kind).collect();
    let is_accepted = |p: &PushRecord| matches!(p.outcome, Outcome::Accepted);
    let before = struck.first().map(|s| s.at);
    *baseline = Latency::of(
        log.iter().filter(|p| before.is_none_or(|b| p.answered < b) && is_accepted(p)).filter_map(latency).collect(),
    );
    let slow = baseline.map_or(Duration::from_millis(100), |b| (3 * b.p99).max(Duration::from_millis(100)));
    let end = log.last().map_or_else(Instant::now, |p| p.answered + Duration::from_secs(1));
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut alone: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut kinds = kinds;
    for (i, s) in struck.iter().enumerate() {
        let until = struck.get(i + 1).map_or(end, |next| next.at);
        let window: Vec<&PushRecord> = log.iter().filter(|p| p.answered >= s.at && p.answered < until).collect();
        let delivered: Vec<Option<Duration>> = window.iter().filter(|p| is_accepted(p)).map(|p| latency(p)).collect();
        let stats = &mut kinds[s.kind];
        let refused: Vec<&&PushRecord> = window.iter().filter(|p| matches!(p.outcome, Outcome::Refused(_))).collect();
        stats.refused += refused.len();
        for p in &refused {
            if let Outcome::Refused(code) = &p.outcome {
                stats.refused_codes.insert(code.clone());
            }
        }
        if let (Some(a), Some(b)) = (refused.first(), refused.last()) {
            stats.refused_for += b.answered.saturating_duration_since(a.sent);
        }
        stats.unanswered += window.iter().filter(|p| matches!(p.outcome, Outcome::Unanswered)).count();
        stats.lost += delivered.iter().filter(|l| l.is_none()).count();
        let next = struck.get(i + 1);
        let after_next = |p: &PushRecord| next.filter(|n| first.get(p.key.as_str()).is_some_and(|at| *at >= n.at));
        for p in window.iter().filter(|p| is_accepted(p)) {
            match (latency(p), after_next(p)) {
                (Some(_), Some(_)) => stats.overlapped += 1,
                (Some(l), None) => alone[s.kind].push(l),
                (None, _) => {}
            }
            if let Some(l) = latency(p).filter(|l| *l > LATE) {
                let (device, message_id) =
                    deliveries.iter().find(|d| d.1 == p.key).map(|d| (d.0.clone(), d.2.clone())).unwrap_or_default();
                late.push(Late {
                    fault: stats.kind,
                    sent_unix_ms: unix_ms(p.sent),
                    after_fault: p.sent.saturating_duration_since(s.at),
                    latency: l,
                    overlapped: after_next(p).map(|n| names[n.kind]),
                    device,
                    message_id,
                });
            }
        }
        samples[s.kind].extend(delivered.into_iter().flatten());
        let bad = |p: &&PushRecord| !matches!(p.outcome, Outcome::Accepted) || latency(p).is_none_or(|l| l > slow);
        if let Some(last_bad) = window.iter().rev().find(|p| bad(p)) {
            stats.full_recovery = stats.full_recovery.max(last_bad.answered.saturating_duration_since(s.at));
        }
        stats.disconnects += disconnects.iter().filter(|t| **t >= s.at && **t < until).count();
    }
    for ((stats, samples), alone) in kinds.iter_mut().zip(samples).zip(alone) {
        stats.latency = Latency::of(samples);
        stats.alone = Latency::of(alone);
    }
    kinds
}

pub(super) fn ledger(cycles: usize, pushes: &Pushes, deliveries: &[(String, String, String, Instant)]) -> Ledger {
    let mut seen = HashSet::new();
    let mut l = Ledger {
        cycles,
        accepted: pushes.accepted.len(),
        refused: pushes.refused.len(),
        unanswered: pushes.unanswered,
        delivered: deliveries.len(),
        ..Ledger::default()
    };
    let mut reached = HashSet::new();
    for (device, key, message_id, _) in deliveries {
        if !seen.insert((device.clone(), message_id.clone())) {
            l.duplicates += 1;
        }
        let target = pushes.accepted.get(key).or_else(|| pushes.refused.get(key));
        if target.is_some_and(|t| t != device) {
            l.misdelivered += 1;
        }
        if pushes.refused.contains_key(key) {
            l.refused_delivered.push(key.clone());
        }
        reached.insert((device.clone(), key.clone()));
    }
    l.lost = pushes
        .accepted
        .iter()
        .filter(|(key, device)| !reached.contains(&((*device).clone(), (*key).clone())))
        .map(|(key, _)| key.clone())
        .collect();
    l.lost.sort();
    l.refused_delivered.sort();
    l.refused_delivered.dedup();
    l
}
