//! The store's side of receipts and analytics: each change journalled once, counted once
//! by every dimension, and turned into receipts in order for an app whose webhook is on.

use herald_core::ids::AppId;
use herald_core::ledger::{CountQuery, Counts, TaskCounted, WebhookRecord};
use herald_core::model::StatusUpdate;
use herald_core::state::{DeviceEvent, Granularity, Platform, PushType, TargetKind};

use super::*;

fn query(app: &str, granularity: Granularity) -> CountQuery {
    CountQuery {
        app_id: AppId::new(app),
        granularity,
        from: 0,
        to: 10_000_000,
        platform: None,
        channel: None,
        push_type: None,
        task_id: None,
    }
}

pub fn webhook(app: &str, enabled: bool, now: i64) -> WebhookRecord {
    WebhookRecord {
        app_id: AppId::new(app),
        url: "http://127.0.0.1:9/receipts".into(),
        enabled,
        secret_sealed: "sealed".into(),
        created_at: now,
        updated_at: now,
        attempts: 0,
        next_at: now,
        last_success: None,
        last_error_at: None,
        last_error: None,
    }
}

pub async fn changes_are_counted_once_and_receipted_in_order(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
    store.put_webhook(webhook("a1", true, 1)).await.unwrap();
    let android = device(store, "a1", "i1").await;
    let Registered::Created(ios) = store.register_device(registration("a1", "i2", Platform::Ios, 10)).await.unwrap()
    else {
        panic!("i2 was registered before")
    };
    let ios = ios.device_id;
    let other_app = device(store, "a2", "i3").await;
    let (a, i) = (android.as_str(), ios.as_str());
    let first = store.commit_push(push("a1", TargetKind::Device, &[(a, "k1"), (i, "k2")], 60_000, 600_000), 60_000);
    let first = first.await.unwrap();
    let (m_android, m_ios) = (first.outcomes[0].0.clone(), first.outcomes[1].0.clone());
    let second = store.commit_push(push("a1", TargetKind::Device, &[(a, "k3")], 120_000, 600_000), 120_000);
    let second = second.await.unwrap();
    let m2 = second.outcomes[0].0.clone();
    store
        .commit_push(push("a2", TargetKind::Device, &[(other_app.as_str(), "k")], 60_000, 600_000), 60_000)
        .await
        .unwrap();
    let event = |m: &MessageId, d: &DeviceId, event: DeviceEvent, at: i64| StatusUpdate::Event {
        message_id: m.clone(),
        device_id: d.clone(),
        event,
        at,
        received_at: at,
    };
    store.record(StatusUpdate::Delivered {
        message_id: m_android.clone(),
        device_id: android.clone(),
        sent_at: 61_000,
        at: 61_000,
    });
    store.record(StatusUpdate::Sent { message_id: m_ios.clone(), device_id: ios.clone(), at: 61_500 });
    store.record(event(&m_android, &android, DeviceEvent::Opened, 62_000));
    // Repeated, and reported by a device the message was not for: nothing more.
    store.record(event(&m_android, &android, DeviceEvent::Opened, 63_000));
    store.record(event(&m_android, &android, DeviceEvent::Arrived, 63_000));
    store.record(event(&m_android, &ios, DeviceEvent::Opened, 63_000));
    // Ignored without an acknowledgement first: it was sent and it arrived.
    store.record(event(&m2, &android, DeviceEvent::Ignored, 125_000));
    store.flush().await.unwrap();
    assert_eq!(store.expire_due(700_000).await.unwrap(), 2, "the iOS copy, never acknowledged, and a2's");
    let b = store.commit_broadcast(broadcast("a1", "news", 180_000, 600_000), 180_000).await.unwrap();

    let (entries, receipts) = store.tally(1_000, 800_000, TaskCounted::ALL).await.unwrap();
    assert_eq!(entries, 11, "4 deliveries and 1 broadcast pushed, 6 changes");
    assert_eq!(receipts, 5, "a1's changes: no receipts of pushes, none for a2 (no webhook)");
    assert_eq!(store.tally(1_000, 800_000, TaskCounted::ALL).await.unwrap(), (0, 0), "each entry is counted once");

    let all = |pushed, sent, arrived, opened, ignored, expired| Counts {
        pushed,
        sent,
        arrived,
        opened,
        ignored,
        expired,
        failed: 0,
    };
    for g in Granularity::ALL {
        let total = store.count_total(query("a1", *g)).await.unwrap();
        assert_eq!(total, all(4, 3, 2, 1, 1, 1), "{g}");
    }
    let ios_only = CountQuery { platform: Some("ios".into()), ..query("a1", Granularity::Minute) };
    assert_eq!(store.count_total(ios_only).await.unwrap(), all(1, 1, 0, 0, 0, 1));
    let broadcasts = CountQuery { push_type: Some("broadcast".into()), ..query("a1", Granularity::Hour) };
    assert_eq!(store.count_total(broadcasts).await.unwrap(), all(1, 0, 0, 0, 0, 0), "its one Android device");
    let series = store.count_series(query("a1", Granularity::Minute), 100).await.unwrap();
    assert_eq!(
        series,
        vec![
            (60_000, all(2, 2, 1, 1, 0, 0)),
            (120_000, all(1, 1, 1, 0, 1, 0)),
            (180_000, all(1, 0, 0, 0, 0, 0)),
            (660_000, all(0, 0, 0, 0, 0, 1)),
        ]
    );
    assert_eq!(store.count_total(query("a2", Granularity::Day)).await.unwrap(), all(1, 0, 0, 0, 0, 1));
    let task = store.count_task(&AppId::new("a1"), &first.task_id).await.unwrap().unwrap();
    assert_eq!((task.first, task.last, task.counts), (60_000, 660_000, all(2, 2, 1, 1, 0, 1)));
    assert!(store.count_task(&AppId::new("a2"), &first.task_id).await.unwrap().is_none(), "another app's");
    let (n, tasks) = store.count_tasks(query("a1", Granularity::Day), 0, 10).await.unwrap();
    assert_eq!(n, 3);
    assert!(tasks.iter().any(|t| t.task_id == b.task_id && t.counts.pushed == 1));
    assert_eq!(tasks[0].task_id, b.task_id, "newest first");
    // Only the tasks created in the span are listed, with their counts over their life: the
    // second task (created at 120 s), not the first (60 s) nor the broadcast (180 s).
    let since_100s = CountQuery { from: 100_000, to: 130_000, ..query("a1", Granularity::Day) };
    let (n, tasks) = store.count_tasks(since_100s, 0, 10).await.unwrap();
    assert_eq!((n, tasks.len()), (1, 1));
    assert_eq!((tasks[0].task_id.as_str(), tasks[0].counts), (second.task_id.as_str(), all(1, 1, 1, 0, 1, 0)));

    // The receipts: each message's in the order of its changes (status updates applied in one
    // transaction may be journalled in another order across deliveries).
    let head = store.outbox_head(&AppId::new("a1"), 100).await.unwrap();
    let statuses: Vec<(String, String)> = head
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.receipt).unwrap();
            (v["messageId"].as_str().unwrap().to_owned(), v["status"].as_str().unwrap().to_owned())
        })
        .collect();
    let of = |m: &MessageId| -> Vec<&str> {
        statuses.iter().filter(|(id, _)| id == m.as_str()).map(|(_, s)| s.as_str()).collect()
    };
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    assert_eq!(of(&m_android), ["delivered", "opened"]);
    assert_eq!(of(&m_ios), ["sent", "expired"]);
    assert_eq!(of(&m2), ["ignored"]);
    assert_eq!(
        statuses.last().unwrap(),
        &(m_ios.as_str().to_owned(), "expired".to_owned()),
        "a later transaction's last"
    );
    let first_at = statuses.iter().position(|(id, s)| id == m_android.as_str() && s == "delivered").unwrap();
    let first_receipt: serde_json::Value = serde_json::from_str(&head[first_at].receipt).unwrap();
    assert_eq!(first_receipt["msgKey"], "k1");
    assert_eq!(first_receipt["target"], a);
    assert_eq!(first_receipt["deviceId"], a);
    assert_eq!(first_receipt["channel"], "own");
    assert_eq!(first_receipt["taskId"], first.task_id.as_str());
    assert_eq!(first_receipt["at"], 61_000);
    assert!(store.outbox_head(&AppId::new("a2"), 100).await.unwrap().is_empty());

    // The counters drop by age, per granularity.
    assert_eq!(store.drop_counts(Granularity::Minute, 200_000).await.unwrap(), 5);
    let left = store.count_series(query("a1", Granularity::Minute), 100).await.unwrap();
    assert_eq!(left, vec![(660_000, all(0, 0, 0, 0, 0, 1))]);
    assert_eq!(store.count_total(query("a1", Granularity::Day)).await.unwrap(), all(4, 3, 2, 1, 1, 1));
    // A task's own counters are kept apart (by the task's age), and any granularity's total or
    // series filtered by the task reads them.
    let first_only = |g| CountQuery { task_id: Some(first.task_id.as_str().to_owned()), ..query("a1", g) };
    assert_eq!(store.count_total(first_only(Granularity::Day)).await.unwrap(), all(2, 2, 1, 1, 0, 1));
    let by_hour = store.count_series(first_only(Granularity::Hour), 100).await.unwrap();
    assert_eq!(by_hour, vec![(0, all(2, 2, 1, 1, 0, 1))]);
    let by_minute = store.count_series(first_only(Granularity::Minute), 100).await.unwrap();
    assert_eq!(by_minute, vec![(60_000, all(2, 2, 1, 1, 0, 0)), (660_000, all(0, 0, 0, 0, 0, 1))]);
    assert_eq!(store.drop_task_counts(120_000).await.unwrap(), 5, "the first task's 3 rows and a2's 2");
    assert!(store.count_task(&AppId::new("a1"), &first.task_id).await.unwrap().is_none());
    assert!(store.count_task(&AppId::new("a1"), &second.task_id).await.unwrap().is_some(), "created at 120 s");
}

/// By default (MPS's task analytics) only Multiple and Broadcast tasks have counters of their
/// own; a Simple push is counted in the app's counters, by its push type.
pub async fn only_the_chosen_push_types_have_task_counters(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let d = device(store, "a1", "i1").await;
    let simple = push("a1", TargetKind::Device, &[(d.as_str(), "k1")], 60_000, 600_000);
    let mut multiple = push("a1", TargetKind::Device, &[(d.as_str(), "k2")], 60_000, 600_000);
    multiple.task.push_type = PushType::Multiple;
    let simple = store.commit_push(simple, 60_000).await.unwrap().task_id;
    let multiple = store.commit_push(multiple, 60_000).await.unwrap().task_id;
    let b = store.commit_broadcast(broadcast("a1", "news", 60_000, 600_000), 60_000).await.unwrap();
    assert_eq!(store.tally(100, 70_000, TaskCounted::MPS).await.unwrap(), (3, 0));
    let app = AppId::new("a1");
    let pushed = |n| Counts { pushed: n, ..Counts::default() };
    assert_eq!(store.count_total(query("a1", Granularity::Minute)).await.unwrap(), pushed(3));
    let simple_only = CountQuery { push_type: Some("simple".into()), ..query("a1", Granularity::Day) };
    assert_eq!(store.count_total(simple_only).await.unwrap(), pushed(1), "in the app's counters");
    assert!(store.count_task(&app, &simple).await.unwrap().is_none(), "a Simple task has no counters of its own");
    assert_eq!(store.count_task(&app, &multiple).await.unwrap().map(|t| t.counts), Some(pushed(1)));
    assert_eq!(store.count_task(&app, &b.task_id).await.unwrap().map(|t| t.counts), Some(pushed(1)));
    let (n, tasks) = store.count_tasks(query("a1", Granularity::Day), 0, 10).await.unwrap();
    assert_eq!(n, 2, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.push_type != Some(PushType::Simple)));
}

pub async fn an_outbox_is_sent_claimed_given_up_and_replayed(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let app = AppId::new("a1");
    store.put_webhook(webhook("a1", true, 1)).await.unwrap();
    let d = device(store, "a1", "i1").await;
    for (i, at) in [100, 200, 300].into_iter().enumerate() {
        let p = push("a1", TargetKind::Device, &[(d.as_str(), &format!("k{i}"))], at, 600_000);
        let done = store.commit_push(p, at).await.unwrap();
        let m = done.outcomes[0].0.clone();
        store.record(StatusUpdate::Delivered { message_id: m, device_id: d.clone(), sent_at: at, at: at + 1 });
    }
    store.flush().await.unwrap();
    assert_eq!(store.tally(100, 1_000, TaskCounted::MPS).await.unwrap().1, 3);
    assert_eq!(store.due_webhooks("n1", 1_000, 10).await.unwrap(), vec![app.clone()]);
    assert!(store.claim_webhook(&app, "n1", 31_000, 1_000).await.unwrap());
    assert!(!store.claim_webhook(&app, "n2", 31_000, 2_000).await.unwrap(), "held by n1");
    assert!(store.due_webhooks("n2", 2_000, 10).await.unwrap().is_empty());
    let head = store.outbox_head(&app, 2).await.unwrap();
    assert_eq!(head.len(), 2);
    store.receipts_failed(&app, 1, 5_000, 2_000, "503".into()).await.unwrap();
    assert!(store.due_webhooks("n1", 4_000, 10).await.unwrap().is_empty(), "backing off");
    let w = store.webhook(&app).await.unwrap().unwrap();
    assert_eq!((w.attempts, w.next_at, w.last_error.as_deref()), (1, 5_000, Some("503")));
    store.receipts_sent(&app, head.iter().map(|r| r.seq).collect(), 5_000).await.unwrap();
    assert_eq!(store.outbox_size(&app).await.unwrap(), 1);
    store.release_webhook(&app, "n1").await.unwrap();
    assert!(store.claim_webhook(&app, "n2", 40_000, 6_000).await.unwrap(), "released");
    // The last one is given up, listed, and replayed at the tail with a fresh age.
    assert_eq!(store.give_up_receipts(&app, 1_001, "gave up after 24 h".into(), 7_000).await.unwrap(), 1);
    assert_eq!(store.outbox_size(&app).await.unwrap(), 0);
    let (n, failures) = store.receipt_failures(&app, 0, 10).await.unwrap();
    assert_eq!((n, failures[0].reason.as_deref()), (1, Some("gave up after 24 h")));
    assert_eq!(store.replay_receipts(&app, Some(vec![failures[0].seq]), 8_000).await.unwrap(), 1);
    assert_eq!(store.receipt_failures(&app, 0, 10).await.unwrap().0, 0);
    let again = store.outbox_head(&app, 10).await.unwrap();
    assert_eq!((again.len(), again[0].created_at, again[0].receipt.clone()), (1, 8_000, failures[0].receipt.clone()));
    // Off: nothing more is queued.
    store.put_webhook(webhook("a1", false, 9_000)).await.unwrap();
    let p = push("a1", TargetKind::Device, &[(d.as_str(), "k9")], 9_000, 600_000);
    let m = store.commit_push(p, 9_000).await.unwrap().outcomes[0].0.clone();
    store.record(StatusUpdate::Delivered { message_id: m, device_id: d.clone(), sent_at: 9_000, at: 9_001 });
    store.flush().await.unwrap();
    assert_eq!(store.tally(100, 10_000, TaskCounted::MPS).await.unwrap(), (2, 0));
    assert!(store.due_webhooks("n1", 10_000, 10).await.unwrap().is_empty(), "off");
}

pub async fn a_store_without_the_journal_counts_nothing(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    store.put_webhook(webhook("a1", true, 1)).await.unwrap();
    let d = device(store, "a1", "i1").await;
    store.set_journal(false);
    let m = store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 600_000), 100).await.unwrap();
    let m = m.outcomes[0].0.clone();
    store.record(StatusUpdate::Delivered { message_id: m.clone(), device_id: d.clone(), sent_at: 101, at: 102 });
    store.flush().await.unwrap();
    assert_eq!(store.tally(100, 1_000, TaskCounted::MPS).await.unwrap(), (0, 0), "nothing journalled");
    store.set_journal(true);
    store.record(StatusUpdate::Event {
        message_id: m,
        device_id: d,
        event: DeviceEvent::Opened,
        at: 103,
        received_at: 103,
    });
    store.flush().await.unwrap();
    assert_eq!(store.tally(100, 1_000, TaskCounted::MPS).await.unwrap(), (1, 1), "journalled again once on");
}

/// Two counters at once (a node that outlived its lease, say) never count an entry twice:
/// the one that finds entries gone from under it rolls back.
pub async fn two_counters_at_once_count_each_entry_once(s: &Subject) {
    let store = s.store.clone();
    create_app(store.as_ref(), "a1").await;
    let d = device(store.as_ref(), "a1", "i1").await;
    for i in 0..200 {
        let p = push("a1", TargetKind::Device, &[(d.as_str(), &format!("k{i}"))], 1_000 + i, 600_000);
        store.commit_push(p, 1_000 + i).await.unwrap();
    }
    let mut rounds = 0;
    loop {
        let (a, b) = (store.clone(), store.clone());
        let (x, y) = tokio::join!(a.tally(500, 5_000, TaskCounted::MPS), b.tally(500, 5_000, TaskCounted::MPS));
        let counted = [x, y].into_iter().filter_map(Result::ok).map(|(n, _)| n).sum::<usize>();
        rounds += 1;
        if counted == 0 || rounds > 5 {
            break;
        }
    }
    let total = store.count_total(query("a1", Granularity::Day)).await.unwrap();
    assert_eq!(total.pushed, 200, "each push counted once");
}

/// A run of status updates longer than one group's share is applied whole, each update
/// once and in its delivery's order: 300 devices' acknowledgements of a broadcast (on
/// SQLite more than one savepoint's worth, on PostgreSQL two rounds), each `Sent` then
/// `Delivered`.
pub async fn a_long_run_of_status_updates_is_applied_whole(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let mut devices = Vec::new();
    for i in 0..300 {
        devices.push(device(store, "a1", &format!("i{i}")).await);
    }
    let b = store.commit_broadcast(broadcast("a1", "news", 100, 600_000), 100).await.unwrap();
    for d in &devices {
        store.record(StatusUpdate::Sent { message_id: b.message_id.clone(), device_id: d.clone(), at: 200 });
        store.record(StatusUpdate::Delivered {
            message_id: b.message_id.clone(),
            device_id: d.clone(),
            sent_at: 200,
            at: 300,
        });
    }
    store.flush().await.unwrap();
    let view = store.task(&AppId::new("a1"), &b.task_id).await.unwrap().unwrap().broadcast.unwrap();
    assert_eq!(view.counts, vec![(herald_core::state::DeliveryStatus::Delivered, 300)]);
    let (entries, _) = store.tally(1_000, 800_000, TaskCounted::ALL).await.unwrap();
    assert_eq!(entries, 1 + 2 * 300, "pushed once, then sent and delivered for each device");
}
