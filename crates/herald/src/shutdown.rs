//! A cloneable shutdown signal shared by the server's tasks: the trigger fires once, on
//! SIGTERM or Ctrl-C or when a test stops the server, and every task's `wait` resolves.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Signal(watch::Receiver<bool>);

pub struct Trigger(watch::Sender<bool>);

pub fn channel() -> (Trigger, Signal) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Signal(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Signal {
    /// Resolves once the trigger fired (or was dropped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// For periodic work: `while shutdown.every(&mut ticks).await { … }` runs the body at
    /// each tick of `ticks` (from [`ticks`]) until shutdown.
    pub async fn every(&self, ticks: &mut tokio::time::Interval) -> bool {
        tokio::select! {
            _ = ticks.tick() => true,
            _ = self.wait() => false,
        }
    }
}

/// An interval whose first tick is now, and that waits a whole period after a late tick
/// (periodic work never runs twice back to back).
pub fn ticks(period: std::time::Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}
