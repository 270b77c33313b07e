//! What a status change counts in the analytics (DESIGN §8): each delivery crosses the
//! stages `pushed → sent → arrived → opened | ignored` at most once each, whichever way it
//! gets there (an `opened` reported before any acknowledgement crosses `sent` and `arrived`
//! too), so every count is a count of deliveries and each rate stays within 0..=1.

use crate::ids::{AppId, TaskId};
use crate::state::{Change, DeliveryStatus, Granularity, PushType};

/// The counters of one bucket and dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pushed: i64,
    pub sent: i64,
    pub arrived: i64,
    pub opened: i64,
    pub ignored: i64,
    pub expired: i64,
    pub failed: i64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.pushed += o.pushed;
        self.sent += o.sent;
        self.arrived += o.arrived;
        self.opened += o.opened;
        self.ignored += o.ignored;
        self.expired += o.expired;
        self.failed += o.failed;
    }

    /// The counts `n` times over (a broadcast's audience of `n` devices).
    pub fn times(mut self, n: i64) -> Counts {
        for c in [
            &mut self.pushed,
            &mut self.sent,
            &mut self.arrived,
            &mut self.opened,
            &mut self.ignored,
            &mut self.expired,
            &mut self.failed,
        ] {
            *c *= n;
        }
        self
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// The funnel stages a delivery in `status` has crossed: (sent, arrived, opened, ignored).
fn reached(status: DeliveryStatus) -> [bool; 4] {
    use DeliveryStatus as D;
    match status {
        D::Pending | D::Expired | D::Revoked => [false; 4],
        D::Sent => [true, false, false, false],
        D::Delivered => [true, true, false, false],
        D::Opened => [true, true, true, false],
        D::Ignored => [true, true, false, true],
    }
}

/// What `change` counts for a delivery that was in `prior` before it (`None`: it had no
/// row yet, as a broadcast's device before its first acknowledgement: pending). The store
/// records an `expired` delivery that had been sent as prior `sent`.
pub fn count(change: Change, prior: Option<DeliveryStatus>) -> Counts {
    let mut c = Counts::default();
    let to = match change {
        Change::Pushed => {
            c.pushed = 1;
            return c;
        }
        Change::Expired => {
            c.expired = 1;
            return c;
        }
        Change::Failed => {
            c.failed = 1;
            return c;
        }
        Change::Revoked => return c,
        Change::Sent => DeliveryStatus::Sent,
        Change::Delivered => DeliveryStatus::Delivered,
        Change::Opened => DeliveryStatus::Opened,
        Change::Ignored => DeliveryStatus::Ignored,
    };
    let before = reached(prior.unwrap_or(DeliveryStatus::Pending));
    let after = reached(to);
    let crossed = |i: usize| i64::from(after[i] && !before[i]);
    c.sent = crossed(0);
    c.arrived = crossed(1);
    c.opened = crossed(2);
    c.ignored = crossed(3);
    c
}

/// A rate as the API shows it: `part / whole`, 0 when nothing is in the whole, rounded to
/// four decimals.
pub fn rate(part: i64, whole: i64) -> f64 {
    if whole <= 0 { 0.0 } else { (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0 }
}

/// The push types whose tasks have counters of their own (`analytics.task_counts`): a set
/// of [`PushType`]s. MPS's task analytics cover Multiple and Broadcast tasks
/// ([`TaskCounted::MPS`]); a Simple or Template push, usually its own task of one to ten
/// targets, is counted in the app's counters by push type only (its targets' statuses are in
/// its task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCounted(u8);

impl TaskCounted {
    pub const MPS: TaskCounted = TaskCounted::of(&[PushType::Multiple, PushType::Broadcast]);
    pub const ALL: TaskCounted = TaskCounted::of(PushType::ALL);

    pub const fn of(types: &[PushType]) -> TaskCounted {
        let mut bits = 0;
        let mut i = 0;
        while i < types.len() {
            bits |= 1 << types[i].mps_code();
            i += 1;
        }
        TaskCounted(bits)
    }

    pub const fn contains(self, t: PushType) -> bool {
        self.0 & (1 << t.mps_code()) != 0
    }

    /// By the stored name of a push type; false for any other text.
    pub fn contains_name(self, name: &str) -> bool {
        PushType::parse(name).is_some_and(|t| self.contains(t))
    }
}

/// A query of the counters: an app's buckets of one granularity in `from..to`, with
/// optional filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountQuery {
    pub app_id: AppId,
    pub granularity: Granularity,
    pub from: i64,
    pub to: i64,
    pub platform: Option<String>,
    pub channel: Option<String>,
    pub push_type: Option<String>,
    pub task_id: Option<String>,
}

/// A task's counts over its life, and the minutes they fall in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCounts {
    pub task_id: TaskId,
    pub task_name: Option<String>,
    pub push_type: Option<PushType>,
    pub created_at: Option<i64>,
    /// The first and last minute with a count (their starts).
    pub first: i64,
    pub last: i64,
    pub counts: Counts,
}

/// An app's receipt webhook, as stored (the secret sealed with the master key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub app_id: AppId,
    pub url: String,
    pub enabled: bool,
    pub secret_sealed: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Failed tries of the outbox's head since the last success.
    pub attempts: i64,
    pub next_at: i64,
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A receipt waiting in an app's outbox, or given up (`reason`, `failed_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    pub seq: i64,
    /// The receipt's JSON, as it is posted.
    pub receipt: String,
    pub created_at: i64,
    pub reason: Option<String>,
    pub failed_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus as D;

    #[test]
    fn each_stage_is_crossed_once_whichever_way_a_delivery_goes() {
        let ack = count(Change::Delivered, Some(D::Pending));
        assert_eq!((ack.sent, ack.arrived), (1, 1));
        let ack_after_sent = count(Change::Delivered, Some(D::Sent));
        assert_eq!((ack_after_sent.sent, ack_after_sent.arrived), (0, 1));
        let opened_first = count(Change::Opened, None);
        assert_eq!((opened_first.sent, opened_first.arrived, opened_first.opened), (1, 1, 1));
        let opened_after_ignored = count(Change::Opened, Some(D::Ignored));
        assert_eq!(opened_after_ignored, Counts { opened: 1, ..Counts::default() });
        let opened_again = count(Change::Opened, Some(D::Opened));
        assert!(opened_again.is_zero());
        assert_eq!(count(Change::Expired, Some(D::Sent)), Counts { expired: 1, ..Counts::default() });
        assert_eq!(count(Change::Failed, None).failed, 1);
        assert!(count(Change::Revoked, Some(D::Pending)).is_zero());
        assert_eq!(count(Change::Pushed, None).times(7).pushed, 7);
    }

    #[test]
    fn rates_are_bounded_and_defined_on_an_empty_whole() {
        assert_eq!(rate(1, 3), 0.3333);
        assert_eq!(rate(0, 0), 0.0);
        assert_eq!(rate(5, 5), 1.0);
    }
}
