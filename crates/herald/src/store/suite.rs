//! The store contract as tests, stamped out per backend by [`store_suite!`]: every backend
//! must pass the same suite (SQLite here; PostgreSQL adds one line).

use super::*;
use crate::ids::{AppId, DeviceId, MessageId, TaskId, UserId};

pub fn app(id: &str) -> (AppRecord, ApiKeyRecord) {
    let app_id = AppId::new(id);
    (
        AppRecord {
            app_id: app_id.clone(),
            name: format!("{id} name"),
            app_key_hash: "hash".into(),
            bind_secret_sealed: "sealed".into(),
            trust_client_bind: false,
            created_at: 1,
        },
        ApiKeyRecord {
            key_id: KeyId::new(format!("{id}-key")),
            app_id,
            kind: KeyKind::Hmac,
            material: "sealed-secret".into(),
            created_at: 1,
            revoked_at: None,
        },
    )
}

pub async fn device(store: &dyn Store, app: &str, install: &str) -> DeviceId {
    store
        .register_device(DeviceRegistration {
            app_id: AppId::new(app),
            install_id: install.into(),
            new_device_id: DeviceId::generate(),
            token_hash: crate::crypto::sha256_hex(install.as_bytes()),
            platform: "android".into(),
            app_version: Some("1.0".into()),
            os_version: None,
            model: None,
            vendor_tokens: None,
            now: 10,
        })
        .await
        .unwrap()
        .device_id
}

pub fn push(app: &str, kind: TargetKind, targets: &[(&str, &str)], now: i64, ttl_ms: i64) -> NewPush {
    NewPush {
        skip_idempotency: false,
        task: NewTask {
            task_id: TaskId::generate(now),
            app_id: AppId::new(app),
            push_type: "simple",
            task_name: None,
            delivery_type: if kind == TargetKind::User { 3 } else { 1 },
            created_at: now,
            expires_at: now + ttl_ms,
        },
        messages: targets
            .iter()
            .map(|(target, key)| NewMessage {
                message_id: MessageId::generate(now),
                msg_key: key.to_string(),
                target_kind: kind,
                target: target.to_string(),
                payload: bytes::Bytes::from(format!("{{\"k\":\"{key}\"}}")),
            })
            .collect(),
    }
}

pub async fn apps_keys_and_revocation(store: &dyn Store) {
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    assert_eq!(store.app(&AppId::new("a1")).await.unwrap().unwrap().name, "a1 name");
    assert!(store.app(&AppId::new("nope")).await.unwrap().is_none());
    let key = store.api_key(&KeyId::new("a1-key")).await.unwrap().unwrap();
    assert_eq!((key.kind, key.revoked_at), (KeyKind::Hmac, None));
    assert!(store.revoke_api_key(&AppId::new("a1"), &KeyId::new("a1-key"), 5).await.unwrap());
    assert_eq!(store.api_key(&KeyId::new("a1-key")).await.unwrap().unwrap().revoked_at, Some(5));
    let (b, kb) = app("b1");
    store.create_app(b, kb).await.unwrap();
    assert!(!store.revoke_api_key(&AppId::new("a1"), &KeyId::new("b1-key"), 5).await.unwrap(), "another app's key");
    assert_eq!(store.apps().await.unwrap().len(), 2);
    assert_eq!(store.init_setting("s", "first").await.unwrap(), "first");
    assert_eq!(store.init_setting("s", "second").await.unwrap(), "first");
    assert_eq!(store.setting("s").await.unwrap().as_deref(), Some("first"));
}

pub async fn devices_register_once_per_install_id(store: &dyn Store) {
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    let d1 = device(store, "a1", "install-1").await;
    let again = device(store, "a1", "install-1").await;
    assert_eq!(d1, again);
    let creds = store.device_credentials(&d1).await.unwrap().unwrap();
    assert_eq!(creds.0, AppId::new("a1"));
    assert!(store.device(&AppId::new("other"), &d1).await.unwrap().is_none(), "scoped by app");
    let mut tokens = serde_json::Map::new();
    tokens.insert("fcm".into(), "t".into());
    assert!(store.report_device(&AppId::new("a1"), &d1, Some("2.0".into()), Some(tokens)).await.unwrap());
    let rec = store.device(&AppId::new("a1"), &d1).await.unwrap().unwrap();
    assert_eq!(rec.app_version.as_deref(), Some("2.0"));
    assert_eq!(rec.vendor_tokens["fcm"], "t");
}

pub async fn pushes_resolve_targets_within_the_app(store: &dyn Store) {
    for id in ["a1", "a2"] {
        let (a, k) = app(id);
        store.create_app(a, k).await.unwrap();
    }
    let mine = device(store, "a1", "i1").await;
    let theirs = device(store, "a2", "i2").await;
    let p =
        push("a1", TargetKind::Device, &[(mine.as_str(), "k1"), (theirs.as_str(), "k2"), ("ghost", "k3")], 100, 60_000);
    let ids: Vec<MessageId> = p.messages.iter().map(|m| m.message_id.clone()).collect();
    let c = store.commit_push(p, 100).await.unwrap();
    assert!(!c.replayed);
    assert_eq!(c.outcomes[0], (ids[0].clone(), TargetOutcome::Accepted { devices: vec![offline(&mine)] }));
    assert_eq!(c.outcomes[1], (ids[1].clone(), TargetOutcome::Undeliverable));
    assert_eq!(c.outcomes[2], (ids[2].clone(), TargetOutcome::Undeliverable));
    assert!(store.pending_deliveries(&theirs, 100, 10).await.unwrap().is_empty());
    let task = store.task(&AppId::new("a1"), &c.task_id).await.unwrap().unwrap();
    assert_eq!(task.messages.len(), 3);
    assert!(store.task(&AppId::new("a2"), &c.task_id).await.unwrap().is_none());
    assert!(store.message(&AppId::new("a2"), &ids[0]).await.unwrap().is_none());
}

pub async fn idempotency_holds_within_the_validity(store: &dyn Store) {
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    let d = device(store, "a1", "i1").await;
    let first = store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 1_000), 100).await.unwrap();
    let retry = store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 200, 1_000), 200).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.task_id, first.task_id);
    assert!(matches!(retry.outcomes[0].1, TargetOutcome::Duplicate { .. }));
    assert_eq!(store.pending_deliveries(&d, 300, 10).await.unwrap().len(), 1, "not stored twice");
    // After the first message's validity the key is free again.
    let later =
        store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 1_200, 1_000), 1_200).await.unwrap();
    assert!(!later.replayed);
    assert!(matches!(later.outcomes[0].1, TargetOutcome::Accepted { .. }));
}

pub async fn templates_are_unique_per_app_and_limited(store: &dyn Store) {
    for id in ["a1", "a2"] {
        let (a, k) = app(id);
        store.create_app(a, k).await.unwrap();
    }
    let t = |app: &str, name: &str| TemplateRecord {
        app_id: AppId::new(app),
        name: name.into(),
        title: "Hi #name#".into(),
        content: "You won #money#".into(),
        uri: None,
        desc_info: Some("d".into()),
        push_style: 0,
        silent: 0,
        created_at: 10,
        updated_at: 10,
    };
    assert_eq!(store.create_template(t("a1", "win"), 2).await.unwrap(), TemplateCreated::Created);
    assert_eq!(store.create_template(t("a1", "win"), 2).await.unwrap(), TemplateCreated::Exists);
    assert_eq!(store.create_template(t("a2", "win"), 2).await.unwrap(), TemplateCreated::Created, "per app");
    assert_eq!(store.create_template(t("a1", "lose"), 2).await.unwrap(), TemplateCreated::Created);
    assert_eq!(store.create_template(t("a1", "third"), 2).await.unwrap(), TemplateCreated::TooMany);
    let mut changed = t("a1", "win");
    changed.content = "New #x#".into();
    changed.updated_at = 20;
    assert!(store.update_template(changed.clone()).await.unwrap());
    let got = store.template(&AppId::new("a1"), "win").await.unwrap().unwrap();
    assert_eq!((got.content.as_str(), got.created_at, got.updated_at), ("New #x#", 10, 20));
    assert!(!store.update_template(t("a1", "ghost")).await.unwrap());
    let names: Vec<String> = store.templates(&AppId::new("a1")).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["lose", "win"]);
    assert!(store.delete_template(&AppId::new("a1"), "win").await.unwrap());
    assert!(!store.delete_template(&AppId::new("a1"), "win").await.unwrap());
    assert!(store.template(&AppId::new("a1"), "win").await.unwrap().is_none());
    assert!(store.template(&AppId::new("a2"), "win").await.unwrap().is_some());
}

fn offline(d: &DeviceId) -> Recipient {
    Recipient { device_id: d.clone(), online_node: None }
}

pub async fn presence_routes_pushes_and_binds_to_the_holding_node(store: &dyn Store) {
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    let (app_id, alice) = (AppId::new("a1"), UserId::new("alice"));
    let (d1, d2) = (device(store, "a1", "i1").await, device(store, "a1", "i2").await);
    let on = |node: &str, generation| Presence { node: node.into(), generation };
    assert_eq!(store.device_connected(&d1, &on("n1", 5), 100).await.unwrap(), None);
    // The same connection again replaces nothing; a newer one names the one it replaced.
    assert_eq!(store.device_connected(&d1, &on("n1", 5), 101).await.unwrap(), None);
    assert_eq!(store.device_connected(&d1, &on("n2", 9), 102).await.unwrap(), Some(on("n1", 5)));
    assert!(store.bind_user(&app_id, &d1, &alice, 103).await.unwrap().unwrap().online_node.as_deref() == Some("n2"));
    assert!(store.bind_user(&app_id, &d2, &alice, 103).await.unwrap().unwrap().online_node.is_none());
    let c = store.commit_push(push("a1", TargetKind::User, &[("alice", "k")], 110, 10_000), 110).await.unwrap();
    let TargetOutcome::Accepted { mut devices } = c.outcomes[0].1.clone() else { panic!("{c:?}") };
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let mut expected = vec![Recipient { device_id: d1.clone(), online_node: Some("n2".into()) }, offline(&d2)];
    expected.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    assert_eq!(devices, expected);
    // A late disconnect of the replaced connection leaves the newer one's presence.
    store.record(StatusUpdate::Disconnected { device_id: d1.clone(), presence: on("n1", 5), at: 120 });
    store.flush().await.unwrap();
    assert_eq!(store.stale_pending("n2", 200, 200, 10).await.unwrap(), vec![d1.clone()]);
    assert!(store.stale_pending("n2", 110, 200, 10).await.unwrap().is_empty(), "not older than the cut");
    assert!(store.stale_pending("n1", 200, 200, 10).await.unwrap().is_empty());
    store.record(StatusUpdate::Disconnected { device_id: d1.clone(), presence: on("n2", 9), at: 130 });
    store.flush().await.unwrap();
    assert!(store.stale_pending("n2", 200, 200, 10).await.unwrap().is_empty(), "gone with its connection");
    assert_eq!(store.device(&app_id, &d1).await.unwrap().unwrap().last_seen, Some(130));
    // A node's start forgets what an earlier run of it left.
    store.device_connected(&d2, &on("n3", 1), 140).await.unwrap();
    assert_eq!(store.node_started("n3").await.unwrap(), 1);
    assert_eq!(store.device_connected(&d2, &on("n4", 1), 150).await.unwrap(), None);
}

pub async fn deliveries_are_pending_until_acknowledged_or_expired(store: &dyn Store) {
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    let d = device(store, "a1", "i1").await;
    let short =
        store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "short")], 100, 50), 100).await.unwrap();
    let long =
        store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "long")], 101, 10_000), 101).await.unwrap();
    let pending = store.pending_deliveries(&d, 120, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| &p.message_id).collect::<Vec<_>>(),
        vec![&short.outcomes[0].0, &long.outcomes[0].0]
    );
    let later = store.pending_deliveries(&d, 200, 10).await.unwrap();
    assert_eq!(later.len(), 1, "an expired delivery is never handed out");
    assert_eq!(store.expire_due(200).await.unwrap(), 1);
    let long_id = long.outcomes[0].0.clone();
    store.record(StatusUpdate::Sent { message_id: long_id.clone(), device_id: d.clone(), at: 150 });
    assert!(store.pending_deliveries(&d, 200, 10).await.unwrap()[0].sent_before);
    store.record(StatusUpdate::Delivered { message_id: long_id.clone(), device_id: d.clone(), sent_at: 150, at: 210 });
    assert!(store.pending_deliveries(&d, 220, 10).await.unwrap().is_empty());
    store.record(StatusUpdate::Event {
        message_id: long_id.clone(),
        device_id: d.clone(),
        event: DeviceEvent::Opened,
        at: 230,
    });
    store.flush().await.unwrap();
    let m = store.message(&AppId::new("a1"), &long_id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].status, "opened");
    assert_eq!((m.deliveries[0].sent_at, m.deliveries[0].delivered_at), (Some(150), Some(210)));
    let s = store.message(&AppId::new("a1"), &short.outcomes[0].0).await.unwrap().unwrap();
    assert_eq!(s.deliveries[0].status, "expired");
}

pub async fn user_messages_follow_binds(store: &dyn Store) {
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    let (app_id, alice) = (AppId::new("a1"), UserId::new("alice"));
    let c = store.commit_push(push("a1", TargetKind::User, &[("alice", "k")], 100, 10_000), 100).await.unwrap();
    assert_eq!(c.outcomes[0].1, TargetOutcome::Accepted { devices: vec![] });
    let d = device(store, "a1", "i1").await;
    let bound = store.bind_user(&app_id, &d, &alice, 200).await.unwrap().unwrap();
    assert_eq!((bound.pending.len(), bound.online_node), (1, None));
    assert_eq!(store.user_devices(&app_id, &alice).await.unwrap().len(), 1);
    assert!(store.unbind_user(&app_id, &d, 300).await.unwrap());
    assert!(store.pending_deliveries(&d, 300, 10).await.unwrap().is_empty(), "unbound: the user's message is gone");
    assert!(store.user_devices(&app_id, &alice).await.unwrap().is_empty());
    // Binding again within the validity brings it back; after the validity it does not.
    assert_eq!(store.bind_user(&app_id, &d, &alice, 400).await.unwrap().unwrap().pending.len(), 1);
    let other = device(store, "a1", "i2").await;
    assert!(store.bind_user(&app_id, &other, &alice, 20_000).await.unwrap().unwrap().pending.is_empty());
    assert!(store.bind_user(&AppId::new("a2"), &d, &alice, 400).await.unwrap().is_none(), "another app's device");
}

pub async fn nonces_are_claimed_once_until_they_expire(store: &dyn Store) {
    let (k1, k2) = (KeyId::new("k1"), KeyId::new("k2"));
    assert!(store.claim_nonce(&k1, "nonce-0123456789ab", 100, 1_000).await.unwrap());
    assert!(!store.claim_nonce(&k1, "nonce-0123456789ab", 200, 1_100).await.unwrap(), "a replay");
    assert!(store.claim_nonce(&k2, "nonce-0123456789ab", 200, 1_100).await.unwrap(), "another key");
    assert!(store.claim_nonce(&k1, "nonce-0123456789ab", 1_000, 2_000).await.unwrap(), "after its expiry");
    // The expiry sweep may drop expired nonces; a live one stays.
    store.expire_due(1_500).await.unwrap();
    assert!(!store.claim_nonce(&k1, "nonce-0123456789ab", 1_600, 2_600).await.unwrap());
}

pub async fn leases_are_exclusive_until_they_expire(store: &dyn Store) {
    assert!(store.try_lease("sweep", "node-a", 100, 1_000).await.unwrap());
    assert!(!store.try_lease("sweep", "node-b", 500, 1_000).await.unwrap(), "held by node-a");
    assert!(store.try_lease("sweep", "node-a", 900, 1_000).await.unwrap(), "renewed by its holder");
    assert!(!store.try_lease("sweep", "node-b", 1_800, 1_000).await.unwrap(), "the renewal runs to 1,900");
    assert!(store.try_lease("other", "node-b", 1_800, 1_000).await.unwrap(), "leases are independent");
    assert!(store.try_lease("sweep", "node-b", 1_900, 1_000).await.unwrap(), "taken over after expiry");
    assert!(!store.try_lease("sweep", "node-a", 2_000, 1_000).await.unwrap());
}

/// Instantiates the suite for one backend: `store_suite!(name, <future of
/// Option<(Arc<dyn Store>, guard)>>)`; the guard removes the test's database when dropped.
#[macro_export]
macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use $crate::store::suite;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        // `None`: the backend is not configured here (the reason is printed).
                        let Some((store, guard)) = $make.await else { return };
                        suite::$name(store.as_ref()).await;
                        // Nothing in flight when the test's database goes away.
                        store.flush().await.expect("flush");
                        drop(store);
                        drop(guard);
                    }
                };
            }

            case!(apps_keys_and_revocation);
            case!(devices_register_once_per_install_id);
            case!(pushes_resolve_targets_within_the_app);
            case!(idempotency_holds_within_the_validity);
            case!(deliveries_are_pending_until_acknowledged_or_expired);
            case!(user_messages_follow_binds);
            case!(presence_routes_pushes_and_binds_to_the_holding_node);
            case!(templates_are_unique_per_app_and_limited);
            case!(nonces_are_claimed_once_until_they_expire);
            case!(leases_are_exclusive_until_they_expire);
        }
    };
}

/// The scheduler driven by a test clock: a recurring push fires once per occurrence, also
/// when a second dispatcher (a restart, or another node) looks at the same time; a firing
/// past its validity is recorded as missed; a late one within it is sent.
pub async fn scheduler_fires_each_occurrence_once(store: std::sync::Arc<dyn Store>) {
    use std::sync::Arc;

    use crate::dispatch::scheduler::{prepare, schedule_of};
    use crate::dispatch::{Dispatcher, Hub};
    use crate::schedule::Strategy;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;
    let t0 = 1_796_000_000_000 - 1_796_000_000_000 % DAY;
    let (a, k) = app("a1");
    store.create_app(a, k).await.unwrap();
    let d = device(store.as_ref(), "a1", "i1").await;
    let app_id = AppId::new("a1");
    let limits = crate::config::Limits::default();
    let body = serde_json::json!({"deliveryType": 1, "targetMsgkey": {d.as_str(): "daily"}, "title": "t", "content": "c",
        "expiredSeconds": 3600, "strategyType": 2,
        "strategyContent": {"startTime": t0, "endTime": t0 + 3 * DAY, "time": "08:00:00", "circleType": 1}});
    let strategy = Strategy::parse(body.as_object().unwrap(), t0).unwrap().unwrap();
    let prepared = prepare(store.as_ref(), &limits, "simple", &app_id, &body, t0).await.unwrap();
    let record = schedule_of(&app_id, "simple", &body, &prepared, &strategy, t0).unwrap();
    assert_eq!(record.push_time, t0 + 8 * H);
    store.create_schedule(record.clone()).await.unwrap();
    let node = |name: &str| {
        let bus = Arc::new(crate::bus::Bus::local(name));
        Arc::new(Dispatcher::new(store.clone(), Arc::new(Hub::new(10)), bus, name.into(), limits.clone()))
    };
    let (one, two) = (node("n1"), node("n2"));
    assert_eq!(one.fire_due(t0 + 7 * H).await.unwrap(), 0);
    assert_eq!(one.fire_due(t0 + 8 * H).await.unwrap(), 1);
    assert_eq!(one.fire_due(t0 + 8 * H).await.unwrap(), 0, "fired once");
    assert_eq!(two.fire_due(t0 + 8 * H + 1).await.unwrap(), 0, "not again by another dispatcher");
    assert_eq!(store.pending_deliveries(&d, t0 + 8 * H, 10).await.unwrap().len(), 1);
    // Day 2: looked at only 2 h after 08:00, past the 1 h validity: missed, nothing sent.
    assert_eq!(two.fire_due(t0 + DAY + 10 * H).await.unwrap(), 1);
    assert_eq!(store.pending_deliveries(&d, t0 + DAY + 10 * H, 10).await.unwrap().len(), 0);
    // Day 3: 30 min late, within the validity: sent.
    assert_eq!(one.fire_due(t0 + 2 * DAY + 8 * H + 30 * 60_000).await.unwrap(), 1);
    assert_eq!(store.pending_deliveries(&d, t0 + 2 * DAY + 9 * H, 10).await.unwrap().len(), 1);
    assert_eq!(one.fire_due(t0 + 30 * DAY).await.unwrap(), 0, "after endTime nothing is due");

    let family = store.schedules(&app_id, Some(&record.unique_id), 0, 0).await.unwrap();
    let parent = family.iter().find(|s| s.parent_id.is_none()).unwrap();
    assert_eq!(parent.status, SCHEDULE_EXECUTED, "finished after its last occurrence");
    let children: Vec<(i64, i64, bool)> = family
        .iter()
        .filter(|s| s.parent_id.as_deref() == Some(record.unique_id.as_str()))
        .map(|s| (s.push_time, s.status, s.task_id.is_some()))
        .collect();
    assert_eq!(
        children,
        vec![
            (t0 + 8 * H, SCHEDULE_EXECUTED, true),
            (t0 + DAY + 8 * H, SCHEDULE_MISSED, false),
            (t0 + 2 * DAY + 8 * H, SCHEDULE_EXECUTED, true)
        ]
    );
    assert_eq!(store.cancel_schedule(&app_id, &record.unique_id).await.unwrap(), Err(SCHEDULE_EXECUTED));

    // A one-off push cancelled before its time never fires.
    let once = serde_json::json!({"deliveryType": 1, "targetMsgkey": {d.as_str(): "once"}, "title": "t", "content": "c",
        "expiredSeconds": 60, "strategyType": 1, "strategyContent": {"fixedTime": t0 + 40 * DAY}});
    let strategy = Strategy::parse(once.as_object().unwrap(), t0 + 30 * DAY).unwrap().unwrap();
    let prepared = prepare(store.as_ref(), &limits, "simple", &app_id, &once, t0).await.unwrap();
    let record = schedule_of(&app_id, "simple", &once, &prepared, &strategy, t0 + 30 * DAY).unwrap();
    store.create_schedule(record.clone()).await.unwrap();
    assert_eq!(store.cancel_schedule(&app_id, &record.unique_id).await.unwrap(), Ok(true));
    assert_eq!(one.fire_due(t0 + 41 * DAY).await.unwrap(), 0);
    assert_eq!(store.cancel_schedule(&app_id, "s-none").await.unwrap(), Ok(false));
}
