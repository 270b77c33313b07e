//! The cases of the contract: one function per area of [`Store`], each run on every
//! backend by [`crate::store_suite!`].

use herald_core::ids::{AppId, DeviceId, KeyId, MessageId, TaskId, UserId};
use herald_core::model::*;
use herald_core::state::*;

use super::*;
use crate::{Cancelled, FireOutcome, Registered, StoreError, TemplateCreated};

pub async fn apps_keys_settings_and_leases(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    assert_eq!(store.app(&AppId::new("a1")).await.unwrap().unwrap().name, "a1 name");
    assert!(store.app(&AppId::new("nope")).await.unwrap().is_none());
    let key = store.api_key(&KeyId::new("a1-key")).await.unwrap().unwrap();
    assert_eq!((key.kind, key.revoked_at), (KeyKind::Hmac, None));
    let rsa = ApiKeyRecord {
        key_id: KeyId::new("a1-rsa"),
        kind: KeyKind::Rsa,
        material: "der".into(),
        created_at: 2,
        ..key.clone()
    };
    store.create_api_key(rsa.clone()).await.unwrap();
    assert_eq!(store.api_keys(&AppId::new("a1")).await.unwrap(), vec![key, rsa], "oldest first");
    assert!(store.revoke_api_key(&AppId::new("a1"), &KeyId::new("a1-key"), 5).await.unwrap());
    assert!(store.revoke_api_key(&AppId::new("a1"), &KeyId::new("a1-key"), 9).await.unwrap(), "still its key");
    assert_eq!(store.api_key(&KeyId::new("a1-key")).await.unwrap().unwrap().revoked_at, Some(5), "the first time");
    // Its use is recorded with the next writes, and never moves back.
    store.record(StatusUpdate::KeyUsed { key_id: KeyId::new("a1-rsa"), at: 60_000 });
    store.record(StatusUpdate::KeyUsed { key_id: KeyId::new("a1-rsa"), at: 30_000 });
    store.flush().await.unwrap();
    assert_eq!(store.api_key(&KeyId::new("a1-rsa")).await.unwrap().unwrap().last_used_at, Some(60_000));
    create_app(store, "b1").await;
    assert!(!store.revoke_api_key(&AppId::new("a1"), &KeyId::new("b1-key"), 5).await.unwrap(), "another app's key");
    let rename = AppUpdate { name: Some("b1 renamed".into()), ..AppUpdate::default() };
    assert!(store.update_app(&AppId::new("b1"), rename.clone()).await.unwrap());
    assert!(!store.update_app(&AppId::new("nope"), rename).await.unwrap());
    let trust = AppUpdate { trust_client_bind: Some(true), ..AppUpdate::default() };
    assert!(store.update_app(&AppId::new("b1"), trust).await.unwrap());
    let b1 = store.app(&AppId::new("b1")).await.unwrap().unwrap();
    assert_eq!((b1.name.as_str(), b1.trust_client_bind), ("b1 renamed", true), "each field on its own");
    assert_eq!(b1.workspace_id, None);
    // The MPS workspace: set, kept by other changes, cleared by "".
    let workspace = |w: &str| AppUpdate { workspace_id: Some(w.into()), ..AppUpdate::default() };
    assert!(store.update_app(&AppId::new("b1"), workspace("PROD")).await.unwrap());
    assert!(store.update_app(&AppId::new("b1"), AppUpdate::default()).await.unwrap());
    let b1 = store.app(&AppId::new("b1")).await.unwrap().unwrap();
    assert_eq!((b1.workspace_id.as_deref(), b1.trust_client_bind), (Some("PROD"), true));
    assert!(store.update_app(&AppId::new("b1"), workspace("")).await.unwrap());
    assert_eq!(store.app(&AppId::new("b1")).await.unwrap().unwrap().workspace_id, None);
    let (mut c1, c1_key) = app("c1");
    c1.workspace_id = Some("default".into());
    store.create_app(c1.clone(), c1_key).await.unwrap();
    assert_eq!(store.app(&AppId::new("c1")).await.unwrap().unwrap(), c1, "stored as created");
    let apps: Vec<String> = store.apps().await.unwrap().into_iter().map(|a| a.app_id.into_string()).collect();
    assert_eq!(apps, vec!["a1", "b1", "c1"]);
    assert_eq!(store.setting("s").await.unwrap(), None);
    assert_eq!(store.init_setting("s", "first").await.unwrap(), "first");
    assert_eq!(store.init_setting("s", "second").await.unwrap(), "first");
    assert_eq!(store.setting("s").await.unwrap().as_deref(), Some("first"));

    assert!(store.try_lease("sweep", "node-a", 100, 1_000).await.unwrap());
    assert!(!store.try_lease("sweep", "node-b", 500, 1_000).await.unwrap(), "held by node-a");
    assert!(store.try_lease("sweep", "node-a", 900, 1_000).await.unwrap(), "renewed by its holder");
    assert!(!store.try_lease("sweep", "node-b", 1_800, 1_000).await.unwrap(), "the renewal runs to 1,900");
    assert!(store.try_lease("other", "node-b", 1_800, 1_000).await.unwrap(), "leases are independent");
    assert!(store.try_lease("sweep", "node-b", 1_900, 1_000).await.unwrap(), "taken over after expiry");
    assert!(!store.try_lease("sweep", "node-a", 2_000, 1_000).await.unwrap());
    let leases = store.cluster().await.unwrap().leases;
    assert_eq!(leases, vec![("other".into(), "node-b".into(), 2_800), ("sweep".into(), "node-b".into(), 2_900)]);
}

pub async fn console_sessions_expire_and_end(s: &Subject) {
    let store = s.store.as_ref();
    let session =
        |id: &str, expires_at| ConsoleSession { id_hash: id.into(), who: "ops".into(), created_at: 100, expires_at };
    store.put_console_session(session("s1", 1_000), 100).await.unwrap();
    store.put_console_session(session("s2", 5_000), 100).await.unwrap();
    assert_eq!(store.console_session("s1", 999).await.unwrap(), Some(session("s1", 1_000)));
    assert_eq!(store.console_session("s1", 1_000).await.unwrap(), None, "expired");
    assert_eq!(store.console_session("other", 500).await.unwrap(), None);
    // A later sign-in drops the expired ones.
    store.put_console_session(session("s3", 9_000), 2_000).await.unwrap();
    assert!(!store.end_console_session("s1").await.unwrap(), "dropped as expired");
    assert!(store.end_console_session("s2").await.unwrap());
    assert_eq!(store.console_session("s2", 2_001).await.unwrap(), None, "signed out");
    assert!(store.console_session("s3", 2_001).await.unwrap().is_some());
}

pub async fn nonces_are_claimed_once_until_they_expire(s: &Subject) {
    let store = s.store.as_ref();
    let (k1, k2) = (KeyId::new("k1"), KeyId::new("k2"));
    assert!(store.claim_nonce(&k1, "nonce-0123456789ab", 100, 1_000).await.unwrap());
    assert!(!store.claim_nonce(&k1, "nonce-0123456789ab", 200, 1_100).await.unwrap(), "a replay");
    assert!(store.claim_nonce(&k2, "nonce-0123456789ab", 200, 1_100).await.unwrap(), "another key");
    assert!(store.claim_nonce(&k1, "nonce-0123456789ab", 1_000, 2_000).await.unwrap(), "after its expiry");
    // The expiry sweep may drop expired nonces; a live one stays.
    store.expire_due(1_500).await.unwrap();
    assert!(!store.claim_nonce(&k1, "nonce-0123456789ab", 1_600, 2_600).await.unwrap());
}

pub async fn an_install_registers_once_and_renews_only_with_its_token(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let first = registration("a1", "install-1", Platform::Ios, 10);
    let Registered::Created(d) = store.register_device(first.clone()).await.unwrap() else { panic!("created") };
    assert_eq!(
        (d.platform, d.install_id.as_str(), d.app_version.as_deref()),
        (Platform::Ios, "install-1", Some("1.0"))
    );
    assert_eq!(store.device_by_token_hash(&first.token_hash).await.unwrap().unwrap().device_id, d.device_id);

    // Again without the device's token, or with another: refused, the device untouched.
    let mut again = registration("a1", "install-1", Platform::Android, 20);
    assert_eq!(store.register_device(again.clone()).await.unwrap(), Registered::Taken);
    again.proof_token_hash = Some(again.token_hash.clone());
    assert_eq!(store.register_device(again.clone()).await.unwrap(), Registered::Taken);
    assert!(store.device_by_token_hash(&first.token_hash).await.unwrap().is_some(), "the old token still works");
    assert!(store.device_by_token_hash(&again.token_hash).await.unwrap().is_none());

    // With it: the same device, a new token; absent fields keep their values.
    again.proof_token_hash = Some(first.token_hash.clone());
    again.app_version = None;
    let Registered::Renewed(renewed) = store.register_device(again.clone()).await.unwrap() else { panic!("renewed") };
    assert_eq!((renewed.device_id.clone(), renewed.platform), (d.device_id.clone(), Platform::Android));
    assert_eq!(renewed.app_version.as_deref(), Some("1.0"));
    assert!(store.device_by_token_hash(&first.token_hash).await.unwrap().is_none(), "the old token is gone");
    assert_eq!(store.device_credentials(&d.device_id).await.unwrap(), Some((AppId::new("a1"), again.token_hash)));
    assert_eq!(store.device_credentials(&DeviceId::new("dnone")).await.unwrap(), None);

    // The same installId in another app is another device.
    create_app(store, "a2").await;
    let other = device(store, "a2", "install-1").await;
    assert_ne!(other, d.device_id);
    assert!(store.device(&AppId::new("a2"), &d.device_id).await.unwrap().is_none(), "scoped by app");
}

pub async fn reports_merge_vendor_tokens(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let d = device(store, "a1", "i1").await;
    let tokens = |v: serde_json::Value| v.as_object().cloned();
    let app = AppId::new("a1");
    assert!(
        store
            .report_device(&app, &d, Some("2.0".into()), tokens(serde_json::json!({"fcm": "t", "hms": "h"})))
            .await
            .unwrap()
    );
    assert!(store.report_device(&app, &d, None, tokens(serde_json::json!({"hms": null, "apns": "a"}))).await.unwrap());
    let rec = store.device(&app, &d).await.unwrap().unwrap();
    assert_eq!(rec.app_version.as_deref(), Some("2.0"), "absent: kept");
    assert_eq!(serde_json::Value::Object(rec.vendor_tokens), serde_json::json!({"fcm": "t", "apns": "a"}));
    assert!(!store.report_device(&AppId::new("a2"), &d, None, None).await.unwrap(), "another app's device");
}

/// What the store holds but cannot read as its type is an error on every backend (with the
/// cause in its message), not skipped or read as empty.
pub async fn corrupt_rows_are_errors(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let d = device(store, "a1", "i1").await;
    s.raw("UPDATE api_keys SET kind = 'dsa'").await;
    for result in
        [store.api_key(&KeyId::new("a1-key")).await.map(|_| ()), store.api_keys(&AppId::new("a1")).await.map(|_| ())]
    {
        match result {
            Err(StoreError::Internal(why)) => assert!(why.contains("key kind \"dsa\""), "{why}"),
            other => panic!("an unknown key kind must be an error: {other:?}"),
        }
    }
    s.raw("UPDATE devices SET vendor_tokens = 'not json'").await;
    match store.device(&AppId::new("a1"), &d).await {
        Err(StoreError::Internal(why)) => assert!(why.contains("vendor_tokens"), "{why}"),
        other => panic!("malformed vendor tokens must be an error: {other:?}"),
    }
}

pub async fn pushes_resolve_targets_within_the_app(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
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
    let summary = &task.summary;
    assert_eq!((summary.push_type, summary.delivery_type, summary.expires_at), (PushType::Simple, 1, 60_100));
    let mut views: Vec<(&str, bool, usize)> =
        task.messages.iter().map(|m| (m.msg_key.as_str(), m.undeliverable, m.deliveries.len())).collect();
    views.sort();
    assert_eq!(views, vec![("k1", false, 1), ("k2", true, 0), ("k3", true, 0)]);
    assert!(task.broadcast.is_none());
    let m = store.message(&AppId::new("a1"), &ids[0]).await.unwrap().unwrap();
    assert_eq!((m.target_kind, m.deliveries[0].status), (TargetKind::Device, DeliveryStatus::Pending));
    assert!(store.task(&AppId::new("a2"), &c.task_id).await.unwrap().is_none());
    assert!(store.message(&AppId::new("a2"), &ids[0]).await.unwrap().is_none());
}

pub async fn tasks_are_listed_newest_first_by_filter_and_page(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
    let d = device(store, "a1", "i1").await;
    // Five simple pushes made at 100, 200 .. 500, valid 1,000 ms; one broadcast at 600;
    // one push of another app.
    let mut made = Vec::new();
    for (i, at) in [100, 200, 300, 400, 500].into_iter().enumerate() {
        let c = store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), &format!("k{i}"))], at, 1_000), at);
        made.push(c.await.unwrap().task_id);
    }
    let b = store.commit_broadcast(broadcast("a1", "b", 600, 1_000), 600).await.unwrap();
    store.commit_push(push("a2", TargetKind::Device, &[("x", "k")], 700, 1_000), 700).await.unwrap();
    let app = AppId::new("a1");
    let ids = |page: &[herald_core::model::TaskSummary]| page.iter().map(|t| t.task_id.clone()).collect::<Vec<_>>();

    let (total, page) = store.tasks(&app, &TaskFilter::default(), 0, 3).await.unwrap();
    assert_eq!(total, 6, "the other app's task is not among them");
    assert_eq!(ids(&page), vec![b.task_id.clone(), made[4].clone(), made[3].clone()]);
    assert_eq!((page[0].push_type, page[1].push_type), (PushType::Broadcast, PushType::Simple));
    assert_eq!((page[1].created_at, page[1].expires_at, page[1].delivery_type), (500, 1_500, 1));
    let (_, second) = store.tasks(&app, &TaskFilter::default(), 3, 3).await.unwrap();
    assert_eq!(ids(&second), vec![made[2].clone(), made[1].clone(), made[0].clone()]);

    let simple = TaskFilter { push_type: Some(PushType::Simple), ..TaskFilter::default() };
    assert_eq!(store.tasks(&app, &simple, 0, 10).await.unwrap().0, 5);
    let window = TaskFilter { created_from: 200, created_to: 400, ..TaskFilter::default() };
    assert_eq!(ids(&store.tasks(&app, &window, 0, 10).await.unwrap().1), vec![made[2].clone(), made[1].clone()]);
    // At 1,350: the pushes of 100, 200 and 300 have expired, the rest are live.
    let expired = TaskFilter { expires_by: 1_350, ..TaskFilter::default() };
    assert_eq!(store.tasks(&app, &expired, 0, 10).await.unwrap().0, 3);
    let live = TaskFilter { expires_after: 1_350, ..TaskFilter::default() };
    assert_eq!(
        ids(&store.tasks(&app, &live, 0, 10).await.unwrap().1),
        vec![b.task_id, made[4].clone(), made[3].clone()]
    );
    assert_eq!(store.tasks(&AppId::new("nobody"), &TaskFilter::default(), 0, 10).await.unwrap(), (0, vec![]));
}

pub async fn devices_are_listed_newest_first_by_filter_and_page(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
    let mut made = Vec::new();
    for (i, (platform, at)) in
        [(Platform::Android, 10), (Platform::Ios, 20), (Platform::Android, 30)].into_iter().enumerate()
    {
        match store.register_device(registration("a1", &format!("i{i}"), platform, at)).await.unwrap() {
            Registered::Created(d) => made.push(d.device_id),
            other => panic!("{other:?}"),
        }
    }
    device(store, "a2", "other").await;
    let app = AppId::new("a1");
    store.bind_user(&app, &made[1], &UserId::new("alice"), 40).await.unwrap().unwrap();
    let ids = |page: &[DeviceRecord]| page.iter().map(|d| d.device_id.clone()).collect::<Vec<_>>();

    let (total, page) = store.devices(&app, &DeviceFilter::default(), 0, 2).await.unwrap();
    assert_eq!(total, 3, "the other app's device is not among them");
    assert_eq!(ids(&page), vec![made[2].clone(), made[1].clone()]);
    assert_eq!(ids(&store.devices(&app, &DeviceFilter::default(), 2, 2).await.unwrap().1), vec![made[0].clone()]);
    let by = |f: DeviceFilter| async move { ids(&store.devices(&AppId::new("a1"), &f, 0, 10).await.unwrap().1) };
    assert_eq!(by(DeviceFilter { user_id: Some("alice".into()), ..Default::default() }).await, vec![made[1].clone()]);
    assert_eq!(by(DeviceFilter { install_id: Some("i0".into()), ..Default::default() }).await, vec![made[0].clone()]);
    let android = DeviceFilter { platform: Some(Platform::Android), ..Default::default() };
    assert_eq!(by(android).await, vec![made[2].clone(), made[0].clone()]);
    let one = DeviceFilter { device_id: Some(made[0].as_str().into()), ..Default::default() };
    assert_eq!(by(one).await, vec![made[0].clone()]);
    let theirs = DeviceFilter { install_id: Some("other".into()), ..Default::default() };
    assert!(by(theirs).await.is_empty(), "another app's device is not found by its installId");
}

pub async fn idempotency_holds_within_the_validity(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let d = device(store, "a1", "i1").await;
    let first = store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 1_000), 100).await.unwrap();
    let retry = push("a1", TargetKind::Device, &[(d.as_str(), "k")], 200, 1_000);
    let retry_task = retry.task.task_id.clone();
    let retry = store.commit_push(retry, 200).await.unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.task_id, first.task_id);
    assert!(store.task(&AppId::new("a1"), &retry_task).await.unwrap().is_none(), "a retry keeps nothing");
    assert!(matches!(retry.outcomes[0].1, TargetOutcome::Duplicate { .. }));
    assert_eq!(store.pending_deliveries(&d, 300, 10).await.unwrap().len(), 1, "not stored twice");
    // A repeat with a new target is not a retry: the new target is sent, the old one not.
    let mixed = push("a1", TargetKind::Device, &[(d.as_str(), "k"), (d.as_str(), "k2")], 250, 1_000);
    let mixed = store.commit_push(mixed, 250).await.unwrap();
    assert!(!mixed.replayed);
    assert!(matches!(mixed.outcomes[0].1, TargetOutcome::Duplicate { .. }));
    assert!(matches!(mixed.outcomes[1].1, TargetOutcome::Accepted { .. }));
    // After the first message's validity the key is free again.
    let later =
        store.commit_push(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 1_200, 1_000), 1_200).await.unwrap();
    assert!(!later.replayed);
    assert!(matches!(later.outcomes[0].1, TargetOutcome::Accepted { .. }));
    // A firing of a schedule claims no key: it repeats its msgKey on purpose.
    let mut firing = push("a1", TargetKind::Device, &[(d.as_str(), "k")], 1_300, 1_000);
    firing.skip_idempotency = true;
    assert!(matches!(store.commit_push(firing, 1_300).await.unwrap().outcomes[0].1, TargetOutcome::Accepted { .. }));
}

pub async fn deliveries_are_pending_until_acknowledged_or_expired(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
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
    assert_eq!(pending[0].payload, "{\"k\":\"short\"}");
    assert_eq!(store.pending_deliveries(&d, 120, 1).await.unwrap().len(), 1, "at most the limit");
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
        received_at: 230,
    });
    // Events never move a delivery back.
    store.record(StatusUpdate::Event {
        message_id: long_id.clone(),
        device_id: d.clone(),
        event: DeviceEvent::Arrived,
        at: 240,
        received_at: 240,
    });
    store.flush().await.unwrap();
    let m = store.message(&AppId::new("a1"), &long_id).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].status, DeliveryStatus::Opened);
    assert_eq!((m.deliveries[0].sent_at, m.deliveries[0].delivered_at), (Some(150), Some(210)));
    let s = store.message(&AppId::new("a1"), &short.outcomes[0].0).await.unwrap().unwrap();
    assert_eq!(s.deliveries[0].status, DeliveryStatus::Expired);
}

pub async fn user_messages_follow_binds(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let (app_id, alice, bob) = (AppId::new("a1"), UserId::new("alice"), UserId::new("bob"));
    let c = store.commit_push(push("a1", TargetKind::User, &[("alice", "k")], 100, 10_000), 100).await.unwrap();
    assert_eq!(c.outcomes[0].1, TargetOutcome::Accepted { devices: vec![] });
    let d = device(store, "a1", "i1").await;
    let bound = store.bind_user(&app_id, &d, &alice, 200).await.unwrap().unwrap();
    assert_eq!((bound.pending.len(), bound.online_node), (1, None));
    let listed: Vec<DeviceId> =
        store.user_devices(&app_id, &alice).await.unwrap().into_iter().map(|d| d.device_id).collect();
    assert_eq!(listed, vec![d.clone()]);
    let rec = store.device(&app_id, &d).await.unwrap().unwrap();
    assert_eq!((rec.user_id, rec.bound_at), (Some(alice.clone()), Some(200)));
    // Another user replaces alice: her undelivered message no longer goes to this device.
    assert!(store.bind_user(&app_id, &d, &bob, 250).await.unwrap().unwrap().pending.is_empty());
    assert!(store.pending_deliveries(&d, 250, 10).await.unwrap().is_empty());
    assert!(store.unbind_user(&app_id, &d, 300).await.unwrap());
    assert!(store.user_devices(&app_id, &bob).await.unwrap().is_empty());
    // Binding again within the validity brings it back; after the validity it does not.
    assert_eq!(store.bind_user(&app_id, &d, &alice, 400).await.unwrap().unwrap().pending.len(), 1);
    assert!(store.unbind_user(&app_id, &d, 450).await.unwrap());
    assert!(store.pending_deliveries(&d, 450, 10).await.unwrap().is_empty(), "unbound: the user's message is gone");
    let other = device(store, "a1", "i2").await;
    assert!(store.bind_user(&app_id, &other, &alice, 20_000).await.unwrap().unwrap().pending.is_empty());
    assert!(store.bind_user(&AppId::new("a2"), &d, &alice, 400).await.unwrap().is_none(), "another app's device");
    assert!(!store.unbind_user(&AppId::new("a2"), &d, 400).await.unwrap());
}

pub async fn presence_routes_pushes_and_binds_to_the_holding_node(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let (app_id, alice) = (AppId::new("a1"), UserId::new("alice"));
    let (d1, d2) = (device(store, "a1", "i1").await, device(store, "a1", "i2").await);
    assert_eq!(store.device_connected(&d1, &on("n1", 5), 100).await.unwrap(), None);
    // The same connection again replaces nothing; a newer one names the one it replaced.
    assert_eq!(store.device_connected(&d1, &on("n1", 5), 101).await.unwrap(), None);
    assert_eq!(store.device_connected(&d1, &on("n2", 9), 102).await.unwrap(), Some(on("n1", 5)));
    assert_eq!(store.device(&app_id, &d1).await.unwrap().unwrap().online_node.as_deref(), Some("n2"));
    store.device_connected(&d2, &on("n2", 10), 102).await.unwrap();
    assert_eq!(store.cluster().await.unwrap().connections, vec![("n2".to_string(), 2)], "per node, from presence");
    store.record(StatusUpdate::Disconnected { device_id: d2.clone(), presence: on("n2", 10), at: 102 });
    store.flush().await.unwrap();
    assert_eq!(store.cluster().await.unwrap().connections, vec![("n2".to_string(), 1)]);
    assert!(store.bind_user(&app_id, &d1, &alice, 103).await.unwrap().unwrap().online_node.as_deref() == Some("n2"));
    assert!(store.bind_user(&app_id, &d2, &alice, 103).await.unwrap().unwrap().online_node.is_none());
    let c = store.commit_push(push("a1", TargetKind::User, &[("alice", "k")], 110, 10_000), 110).await.unwrap();
    let TargetOutcome::Accepted { mut devices } = c.outcomes[0].1.clone() else { panic!("{c:?}") };
    devices.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let mut expected = vec![
        Recipient { device_id: d1.clone(), online_node: Some("n2".into()), vendor: None, own_now: true },
        offline(&d2),
    ];
    expected.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    assert_eq!(devices, expected);
    // A late disconnect of the replaced connection leaves the newer one's presence.
    store.record(StatusUpdate::Disconnected { device_id: d1.clone(), presence: on("n1", 5), at: 120 });
    store.flush().await.unwrap();
    assert_eq!(store.stale_pending("n2", 200, 0, 200, 10).await.unwrap(), vec![d1.clone()]);
    let later = store.stale_pending("n2", 200, 190, 200, 10).await.unwrap();
    assert_eq!(later, vec![d1.clone()], "deliveries are not windowed, broadcasts are");
    assert!(store.stale_pending("n2", 110, 0, 200, 10).await.unwrap().is_empty(), "not older than the cut");
    assert!(store.stale_pending("n1", 200, 0, 200, 10).await.unwrap().is_empty());
    store.record(StatusUpdate::Disconnected { device_id: d1.clone(), presence: on("n2", 9), at: 130 });
    store.flush().await.unwrap();
    assert!(store.stale_pending("n2", 200, 0, 200, 10).await.unwrap().is_empty(), "gone with its connection");
    let rec = store.device(&app_id, &d1).await.unwrap().unwrap();
    assert_eq!((rec.last_seen, rec.online_node), (Some(130), None));
    // A node's start forgets what an earlier run of it left.
    store.device_connected(&d2, &on("n3", 1), 140).await.unwrap();
    assert_eq!(store.node_started("n3").await.unwrap(), 1);
    assert_eq!(store.device_connected(&d2, &on("n4", 1), 150).await.unwrap(), None);
}

pub async fn broadcasts_reach_their_audience_once(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
    let app = AppId::new("a1");
    let (online, offline_one) = (device(store, "a1", "i1").await, device(store, "a1", "i2").await);
    let ios = match store.register_device(registration("a1", "i3", Platform::Ios, 10)).await.unwrap() {
        Registered::Created(d) => d.device_id,
        other => panic!("{other:?}"),
    };
    let elsewhere = device(store, "a2", "i4").await;
    for (d, node) in [(&online, "n1"), (&ios, "n1"), (&elsewhere, "n1")] {
        store.device_connected(d, &on(node, 1), 50).await.unwrap();
    }
    let b = broadcast("a1", "news", 100, 10_000);
    let done = store.commit_broadcast(b.clone(), 100).await.unwrap();
    assert!(!done.replayed);
    assert_eq!(store.broadcast_recipients(&done.message_id, "n1").await.unwrap(), vec![online.clone()]);
    assert!(store.broadcast_recipients(&done.message_id, "n2").await.unwrap().is_empty());
    // The same msgkey again within its validity is the earlier broadcast.
    let again = store.commit_broadcast(broadcast("a1", "news", 200, 10_000), 200).await.unwrap();
    assert_eq!(
        (again.replayed, again.message_id.clone(), again.task_id.clone()),
        (true, done.message_id.clone(), done.task_id.clone())
    );
    // Devices that qualify find it among their pending deliveries until they acknowledge it.
    let pending = store.pending_deliveries(&offline_one, 300, 10).await.unwrap();
    assert_eq!(pending.iter().map(|p| &p.message_id).collect::<Vec<_>>(), vec![&done.message_id]);
    assert!(store.pending_deliveries(&ios, 300, 10).await.unwrap().is_empty(), "another platform");
    assert!(store.pending_deliveries(&elsewhere, 300, 10).await.unwrap().is_empty(), "another app");
    // Not acknowledged since before the cut by a device connected here: stale.
    assert_eq!(store.stale_pending("n1", 200, 0, 300, 10).await.unwrap(), vec![online.clone()]);
    assert!(store.stale_pending("n1", 100, 0, 300, 10).await.unwrap().is_empty(), "not older than the cut");
    assert_eq!(store.stale_pending("n1", 200, 100, 300, 10).await.unwrap(), vec![online.clone()], "in the window");
    assert!(store.stale_pending("n1", 200, 101, 300, 10).await.unwrap().is_empty(), "created before the window");
    store.record(StatusUpdate::Sent { message_id: done.message_id.clone(), device_id: online.clone(), at: 310 });
    assert!(store.pending_deliveries(&online, 320, 10).await.unwrap()[0].sent_before);
    assert_eq!(store.stale_pending("n1", 200, 0, 330, 10).await.unwrap(), vec![online.clone()], "sent is not received");
    store.record(StatusUpdate::Delivered {
        message_id: done.message_id.clone(),
        device_id: online.clone(),
        sent_at: 310,
        at: 320,
    });
    store.record(StatusUpdate::Event {
        message_id: done.message_id.clone(),
        device_id: offline_one.clone(),
        event: DeviceEvent::Opened,
        at: 330,
        received_at: 330,
    });
    // Another app's device (and the iOS device, of another platform) reporting this
    // broadcast writes nothing.
    for other in [&elsewhere, &ios] {
        store.record(StatusUpdate::Event {
            message_id: done.message_id.clone(),
            device_id: other.clone(),
            event: DeviceEvent::Opened,
            at: 330,
            received_at: 330,
        });
    }
    // A device's word about an id that is no broadcast writes nothing.
    store.record(StatusUpdate::Event {
        message_id: MessageId::new("bnone"),
        device_id: online.clone(),
        event: DeviceEvent::Opened,
        at: 330,
        received_at: 330,
    });
    assert!(store.pending_deliveries(&online, 340, 10).await.unwrap().is_empty());
    assert!(store.pending_deliveries(&offline_one, 340, 10).await.unwrap().is_empty());
    assert!(store.stale_pending("n1", 200, 0, 340, 10).await.unwrap().is_empty());
    let view = store.task(&app, &done.task_id).await.unwrap().unwrap().broadcast.unwrap();
    assert_eq!(
        (view.message_id, view.msg_key.as_str(), view.eligible, view.revoked_at),
        (done.message_id.clone(), "news", 2, None)
    );
    assert_eq!(view.counts, vec![(DeliveryStatus::Delivered, 1), (DeliveryStatus::Opened, 1)]);
    assert!(store.pending_deliveries(&offline_one, 20_000, 10).await.unwrap().is_empty(), "expired");
}

pub async fn a_revoke_withdraws_and_recalls(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let app = AppId::new("a1");
    let (got_it, waiting) = (device(store, "a1", "i1").await, device(store, "a1", "i2").await);
    let p = push("a1", TargetKind::Device, &[(got_it.as_str(), "k"), (waiting.as_str(), "k")], 100, 10_000);
    let c = store.commit_push(p, 100).await.unwrap();
    let (m1, m2) = (c.outcomes[0].0.clone(), c.outcomes[1].0.clone());
    store.record(StatusUpdate::Delivered { message_id: m1.clone(), device_id: got_it.clone(), sent_at: 110, at: 120 });
    store.flush().await.unwrap();
    let what = |target: &DeviceId| RevokeTarget::Message { msg_key: "k".into(), target: target.as_str().into() };
    assert!(store.revoke(&app, what(&got_it), 200, 150).await.unwrap().is_none(), "sent before the window");
    let done = store.revoke(&app, what(&got_it), 200, 0).await.unwrap().unwrap();
    assert_eq!((done.messages.clone(), done.withdrawn), (vec![m1.clone()], 0));
    assert_eq!(done.recalls.len(), 1);
    let recall = &done.recalls[0];
    assert_eq!((recall.devices.clone(), recall.expires_at), (vec![offline(&got_it)], 10_100));
    let control: serde_json::Value = serde_json::from_slice(&recall.payload).unwrap();
    assert_eq!((control["type"].as_str(), control["messageId"].as_str()), (Some("revoke"), Some(m1.as_str())));
    let pending = store.pending_deliveries(&got_it, 210, 10).await.unwrap();
    assert_eq!(pending.iter().map(|p| &p.message_id).collect::<Vec<_>>(), vec![&recall.message_id], "the recall waits");
    assert_eq!(store.message(&app, &m1).await.unwrap().unwrap().revoked_at, Some(200));
    assert!(store.revoke(&app, what(&got_it), 250, 0).await.unwrap().unwrap().messages.is_empty(), "revoked before");

    // A task: its open delivery is withdrawn, nobody got it, so no recall.
    let done = store.revoke(&app, RevokeTarget::Task(c.task_id.clone()), 300, 0).await.unwrap().unwrap();
    assert_eq!((done.messages, done.withdrawn, done.recalls.len()), (vec![m2.clone()], 1, 0));
    assert!(store.pending_deliveries(&waiting, 310, 10).await.unwrap().is_empty());
    let m = store.message(&app, &m2).await.unwrap().unwrap();
    assert_eq!(m.deliveries[0].status, DeliveryStatus::Revoked);
    assert!(store.revoke(&app, RevokeTarget::Task(TaskId::new("tnone")), 300, 0).await.unwrap().is_none());

    // A broadcast's task: the broadcast is revoked, devices that acknowledged it are recalled.
    let b = store.commit_broadcast(broadcast("a1", "news", 400, 10_000), 400).await.unwrap();
    store.record(StatusUpdate::Delivered {
        message_id: b.message_id.clone(),
        device_id: got_it.clone(),
        sent_at: 410,
        at: 420,
    });
    store.flush().await.unwrap();
    let done = store.revoke(&app, RevokeTarget::Task(b.task_id.clone()), 500, 0).await.unwrap().unwrap();
    assert_eq!(done.messages, vec![b.message_id.clone()]);
    assert_eq!(done.recalls[0].devices, vec![offline(&got_it)]);
    assert!(store.pending_deliveries(&waiting, 510, 10).await.unwrap().is_empty(), "the broadcast is withdrawn");
    let view = store.task(&app, &b.task_id).await.unwrap().unwrap().broadcast.unwrap();
    assert_eq!(view.revoked_at, Some(500));
    let again = store.revoke(&app, RevokeTarget::Task(b.task_id.clone()), 600, 0).await.unwrap().unwrap();
    assert!(again.messages.is_empty() && again.recalls.is_empty(), "revoked before");
    assert!(store.revoke(&AppId::new("a2"), RevokeTarget::Task(b.task_id), 600, 0).await.unwrap().is_none());
}

fn schedule(app: &str, id: &str, push_time: i64, kind: StrategyKind, template: Option<&str>) -> ScheduleRecord {
    ScheduleRecord {
        unique_id: id.into(),
        parent_id: None,
        app_id: AppId::new(app),
        push_type: if template.is_some() { PushType::Template } else { PushType::Simple },
        delivery_type: 1,
        template_name: template.map(str::to_owned),
        title: Some("t".into()),
        content: Some("c".into()),
        body: "{}".into(),
        strategy_kind: kind,
        strategy: "{}".into(),
        push_time,
        expires_ms: 1_000,
        status: ScheduleStatus::Waiting,
        task_id: None,
        created_at: 1,
    }
}

pub async fn schedules_fire_once_and_cancel(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let app = AppId::new("a1");
    let d = device(store, "a1", "i1").await;
    store.create_schedule(schedule("a1", "s1", 1_000, StrategyKind::Once, None)).await.unwrap();
    store.create_schedule(schedule("a1", "s2", 2_000, StrategyKind::Recurring, Some("tpl"))).await.unwrap();
    store.create_schedule(schedule("a1", "s3", 3_000, StrategyKind::Once, None)).await.unwrap();
    assert!(store.due_schedules(999, 10).await.unwrap().is_empty());
    let due: Vec<String> = store.due_schedules(2_500, 10).await.unwrap().into_iter().map(|s| s.unique_id).collect();
    assert_eq!(due, vec!["s1", "s2"], "earliest first");
    assert_eq!(store.due_schedules(2_500, 1).await.unwrap().len(), 1);
    assert!(store.template_in_use(&app, "tpl").await.unwrap());
    assert!(!store.template_in_use(&app, "other").await.unwrap());

    // A one-off firing commits its push once, whoever claims it.
    let firing = push("a1", TargetKind::Device, &[(d.as_str(), "k")], 1_000, 1_000);
    let task = firing.task.task_id.clone();
    let claim = FireClaim {
        unique_id: "s1".into(),
        due: 1_000,
        next: None,
        recurring: false,
        firing: Some(Firing::Push(firing)),
    };
    let FireOutcome::Fired(Fired::Push(c)) = store.fire_schedule(claim.clone(), 1_001).await.unwrap() else {
        panic!("fired")
    };
    assert_eq!(c.task_id, task);
    assert!(matches!(store.fire_schedule(claim, 1_002).await.unwrap(), FireOutcome::Taken));
    assert_eq!(store.pending_deliveries(&d, 1_010, 10).await.unwrap().len(), 1);
    let s1 = store.schedules(&app, Some("s1"), 0, 0).await.unwrap();
    assert_eq!((s1[0].status, s1[0].task_id.as_deref()), (ScheduleStatus::Executed, Some(task.as_str())));

    // A recurring one: a missed firing is recorded, the row moves to its next time.
    let claim = FireClaim { unique_id: "s2".into(), due: 2_000, next: Some(5_000), recurring: true, firing: None };
    assert!(matches!(store.fire_schedule(claim, 2_001).await.unwrap(), FireOutcome::Missed));
    let family = store.schedules(&app, Some("s2"), 0, 0).await.unwrap();
    let rows: Vec<(Option<&str>, i64, ScheduleStatus)> =
        family.iter().map(|s| (s.parent_id.as_deref(), s.push_time, s.status)).collect();
    assert_eq!(rows, vec![(Some("s2"), 2_000, ScheduleStatus::Missed), (None, 5_000, ScheduleStatus::Waiting)]);
    assert_eq!(family[0].template_name.as_deref(), Some("tpl"), "a firing keeps what its parent sends");

    // The app's schedules by push time; cancel only what waits.
    let listed: Vec<String> =
        store.schedules(&app, None, 1_000, 3_000).await.unwrap().into_iter().map(|s| s.unique_id).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(store.cancel_schedule(&app, "s3").await.unwrap(), Cancelled::Cancelled);
    assert_eq!(store.cancel_schedule(&app, "s3").await.unwrap(), Cancelled::NotWaiting(ScheduleStatus::Cancelled));
    assert_eq!(store.cancel_schedule(&app, "s1").await.unwrap(), Cancelled::NotWaiting(ScheduleStatus::Executed));
    assert_eq!(store.cancel_schedule(&app, "none").await.unwrap(), Cancelled::NotFound);
    assert_eq!(store.cancel_schedule(&AppId::new("a2"), "s2").await.unwrap(), Cancelled::NotFound, "another app's");
    assert!(store.due_schedules(10_000, 10).await.unwrap().iter().all(|s| s.unique_id == "s2"));
}

pub async fn templates_are_unique_per_app_and_limited(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
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
    changed.uri = Some("app://#x#".into());
    changed.updated_at = 20;
    assert!(store.update_template(changed.clone()).await.unwrap());
    let got = store.template(&AppId::new("a1"), "win").await.unwrap().unwrap();
    assert_eq!(got, TemplateRecord { created_at: 10, ..changed });
    assert!(!store.update_template(t("a1", "ghost")).await.unwrap());
    let names: Vec<String> = store.templates(&AppId::new("a1")).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["lose", "win"]);
    assert!(store.delete_template(&AppId::new("a1"), "win").await.unwrap());
    assert!(!store.delete_template(&AppId::new("a1"), "win").await.unwrap());
    assert!(store.template(&AppId::new("a1"), "win").await.unwrap().is_none());
    assert!(store.template(&AppId::new("a2"), "win").await.unwrap().is_some());
}
