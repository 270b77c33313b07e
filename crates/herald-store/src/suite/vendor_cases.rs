//! The contract of vendor channels: channel settings, routing into the vendor outbox at the
//! push's commit, claims, finishes and invalid tokens.

use herald_core::channel::route::Routing;
use herald_core::ids::{AppId, DeviceId, MessageId};
use herald_core::model::*;
use herald_core::state::*;
use serde_json::json;

use super::*;

fn channel(app: &str, kind: Channel, at: i64) -> ChannelRecord {
    ChannelRecord {
        app_id: AppId::new(app),
        kind,
        settings: json!({"bundleId": "com.example"}).as_object().cloned().unwrap(),
        secret_sealed: "sealed".into(),
        created_at: at,
        updated_at: at,
        health: ChannelHealth::default(),
    }
}

async fn device_with(
    store: &dyn Store,
    app: &str,
    install: &str,
    platform: Platform,
    tokens: serde_json::Value,
) -> DeviceId {
    let mut reg = registration(app, install, platform, 10);
    reg.vendor_tokens = tokens.as_object().cloned();
    match store.register_device(reg).await.unwrap() {
        Registered::Created(d) => d.device_id,
        other => panic!("{other:?}"),
    }
}

/// Claims every channel's due sends.
async fn claim_all(store: &dyn Store, now: i64) -> Vec<VendorSend> {
    let mut all = Vec::new();
    for c in Channel::VENDORS {
        all.extend(store.claim_vendor_sends(*c, now, 60_000, 10).await.unwrap());
    }
    all
}

fn done(s: &VendorSend, status: VendorSendStatus, at: i64) -> VendorSendDone {
    VendorSendDone {
        message_id: s.message_id.clone(),
        device_id: s.device_id.clone(),
        app_id: s.app_id.clone(),
        channel: s.channel,
        token: s.token.clone(),
        status,
        attempts: s.attempts + 1,
        next_at: at,
        vendor_id: (status == VendorSendStatus::Sent).then(|| "v-1".to_string()),
        reason: (status != VendorSendStatus::Sent).then(|| "Because".to_string()),
        at,
    }
}

pub async fn channels_and_routing_are_kept_per_app(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    create_app(store, "a2").await;
    let app = AppId::new("a1");
    store.put_channel(channel("a1", Channel::Apns, 5)).await.unwrap();
    store.put_channel(channel("a1", Channel::Fcm, 6)).await.unwrap();
    let mut again = channel("a1", Channel::Apns, 9);
    again.settings.insert("keyId".into(), json!("K"));
    store.put_channel(again).await.unwrap();
    let apns = store.channel(&app, Channel::Apns).await.unwrap().unwrap();
    assert_eq!((apns.created_at, apns.updated_at, apns.settings["keyId"].clone()), (5, 9, json!("K")));
    let kinds: Vec<Channel> = store.channels(&app).await.unwrap().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![Channel::Apns, Channel::Fcm]);
    assert!(store.channels(&AppId::new("a2")).await.unwrap().is_empty(), "another app's");
    assert!(store.delete_channel(&app, Channel::Fcm).await.unwrap());
    assert!(!store.delete_channel(&app, Channel::Fcm).await.unwrap());
    assert_eq!(store.routing(&app).await.unwrap(), Some(Routing::default()));
    let r = Routing { policy: RoutingPolicy::Both, android_order: vec![Channel::Fcm, Channel::Hms] };
    assert!(store.set_routing(&app, r.clone()).await.unwrap());
    assert_eq!(store.routing(&app).await.unwrap(), Some(r));
    assert_eq!(store.routing(&AppId::new("nope")).await.unwrap(), None);
}

pub async fn offline_devices_get_vendor_sends_that_are_claimed_once(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let app = AppId::new("a1");
    store.put_channel(channel("a1", Channel::Apns, 5)).await.unwrap();
    store.put_channel(channel("a1", Channel::Hms, 5)).await.unwrap();
    let apns = "ab".repeat(32);
    let ios = device_with(store, "a1", "i1", Platform::Ios, json!({"apns": apns})).await;
    let huawei = device_with(store, "a1", "i2", Platform::Android, json!({"hms": "h1", "fcm": "f1"})).await;
    let online = device_with(store, "a1", "i3", Platform::Ios, json!({"apns": "cd".repeat(32)})).await;
    let bare = device(store, "a1", "i4").await;
    store.device_connected(&online, &on("n1", 1), 50).await.unwrap();
    let targets = [(ios.as_str(), "k1"), (huawei.as_str(), "k2"), (online.as_str(), "k3"), (bare.as_str(), "k4")];
    let c = store.commit_push(push("a1", TargetKind::Device, &targets, 100, 10_000), 100).await.unwrap();
    let vendors: Vec<Option<Channel>> = c
        .outcomes
        .iter()
        .map(|(_, o)| match o {
            TargetOutcome::Accepted { devices } => devices[0].vendor,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(vendors, vec![Some(Channel::Apns), Some(Channel::Hms), None, None]);
    // A transparent message stays on the own channel.
    let mut quiet = push("a1", TargetKind::Device, &[(ios.as_str(), "k5")], 100, 10_000);
    quiet.messages[0].vendor = false;
    store.commit_push(quiet, 100).await.unwrap();

    assert!(claim_all(store, 99).await.is_empty(), "not due before the push");
    let mut claimed = claim_all(store, 100).await;
    claimed.sort_by_key(|s| s.channel);
    assert_eq!(claimed.len(), 2);
    assert!(claim_all(store, 101).await.is_empty(), "claimed already");
    let (a, h) = (&claimed[0], &claimed[1]);
    assert_eq!((a.channel, a.token.as_str(), a.attempts), (Channel::Apns, apns.as_str(), 0));
    assert_eq!((h.channel, h.token.as_str()), (Channel::Hms, "h1"));
    assert_eq!(a.payload.as_deref(), Some("{\"k\":\"k1\"}"));

    // The vendor took one; the other's token is invalid.
    store
        .finish_vendor_sends(vec![done(a, VendorSendStatus::Sent, 120), done(h, VendorSendStatus::InvalidToken, 121)])
        .await
        .unwrap();
    let view = store.message(&app, &a.message_id).await.unwrap().unwrap();
    assert_eq!(view.deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(view.vendor_sends[0].status, VendorSendStatus::Sent);
    assert_eq!(view.vendor_sends[0].vendor_id.as_deref(), Some("v-1"));
    let health = store.channel(&app, Channel::Apns).await.unwrap().unwrap().health;
    assert_eq!(health.last_success, Some(120));
    let tokens = store.device(&app, &huawei).await.unwrap().unwrap().vendor_tokens;
    assert_eq!(serde_json::Value::Object(tokens), json!({"fcm": "f1"}), "the invalid token is gone");
    let (total, page) = store.invalid_tokens(&app, 0, 10).await.unwrap();
    assert_eq!((total, page[0].token.as_str(), page[0].channel), (1, "h1", Channel::Hms));
    assert_eq!(store.invalid_tokens(&AppId::new("a2"), 0, 10).await.unwrap().0, 0);
    // A fresh token replaces it.
    store.report_device(&app, &huawei, None, json!({"hms": "h2"}).as_object().cloned()).await.unwrap();
    assert_eq!(store.invalid_tokens(&app, 0, 10).await.unwrap().0, 0);
    // A finish after the first changes nothing.
    store.finish_vendor_sends(vec![done(a, VendorSendStatus::Failed, 130)]).await.unwrap();
    let view = store.message(&app, &a.message_id).await.unwrap().unwrap();
    assert_eq!(view.vendor_sends[0].status, VendorSendStatus::Sent);
}

pub async fn retries_wait_and_revokes_withdraw_vendor_sends(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    let app = AppId::new("a1");
    store.put_channel(channel("a1", Channel::Fcm, 5)).await.unwrap();
    let d1 = device_with(store, "a1", "i1", Platform::Android, json!({"fcm": "f1"})).await;
    let d2 = device_with(store, "a1", "i2", Platform::Android, json!({"fcm": "f2"})).await;
    let c = store
        .commit_push(push("a1", TargetKind::Device, &[(d1.as_str(), "k1"), (d2.as_str(), "k2")], 100, 10_000), 100)
        .await
        .unwrap();
    let claimed = claim_all(store, 100).await;
    let first = claimed.iter().find(|s| s.device_id == d1).unwrap();
    let mut retry = done(first, VendorSendStatus::Waiting, 110);
    retry.next_at = 500;
    let second = claimed.iter().find(|s| s.device_id == d2).unwrap();
    store.finish_vendor_sends(vec![retry, done(second, VendorSendStatus::Sent, 110)]).await.unwrap();
    assert!(claim_all(store, 499).await.is_empty(), "not before its time");
    let again = claim_all(store, 500).await;
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    // An expired claim (its node died) is claimed again.
    assert_eq!(claim_all(store, 60_501).await.len(), 1);
    let health = store.channel(&app, Channel::Fcm).await.unwrap().unwrap().health;
    assert_eq!((health.last_error_at, health.last_error.as_deref()), (Some(110), Some("Because")));

    let task = RevokeTarget::Task(c.task_id.clone());
    let revoked = store.revoke(&app, task, 600, 0).await.unwrap().unwrap();
    assert_eq!(revoked.vendor_recalls, 1, "the vendor had taken d2's copy: a recall is queued");
    let recalls = claim_all(store, 600).await;
    assert_eq!(recalls.len(), 1, "d1's send withdrawn, d2's recalled: {recalls:?}");
    assert!(recalls[0].device_id == d2 && recalls[0].recall && recalls[0].attempts == 0, "{recalls:?}");
    store.finish_vendor_sends(vec![done(&recalls[0], VendorSendStatus::Recalled, 700)]).await.unwrap();
    assert!(claim_all(store, 200_000).await.is_empty(), "nothing more to send");
    let mid: &MessageId = &c.outcomes[0].0;
    let view = store.message(&app, mid).await.unwrap().unwrap();
    assert_eq!(view.vendor_sends[0].status, VendorSendStatus::Revoked);
}

pub async fn broadcasts_write_vendor_sends_for_devices_not_connected(s: &Subject) {
    let store = s.store.as_ref();
    create_app(store, "a1").await;
    store.put_channel(channel("a1", Channel::Xiaomi, 5)).await.unwrap();
    let away = device_with(store, "a1", "i1", Platform::Android, json!({"xiaomi": "x1"})).await;
    let here = device_with(store, "a1", "i2", Platform::Android, json!({"xiaomi": "x2"})).await;
    device(store, "a1", "i3").await;
    store.device_connected(&here, &on("n1", 1), 50).await.unwrap();
    let b = store.commit_broadcast(broadcast("a1", "m", 100, 10_000), 100).await.unwrap();
    let claimed = claim_all(store, 100).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!((&claimed[0].device_id, &claimed[0].message_id), (&away, &b.message_id));
    assert_eq!(claimed[0].payload.as_deref(), Some("{\"k\":\"broadcast\"}"));
    store.finish_vendor_sends(vec![done(&claimed[0], VendorSendStatus::Sent, 110)]).await.unwrap();
    // Still waiting for the own channel: the device gets it (marked as sent before) when it connects.
    let pending = store.pending_deliveries(&away, 120, 10).await.unwrap();
    assert_eq!((pending.len(), pending[0].sent_before), (1, true));
}

pub async fn one_apps_backlog_never_holds_another_apps_vendor_sends(s: &Subject) {
    let store = s.store.as_ref();
    let mut backlog = Vec::new();
    for app in ["a1", "a2"] {
        create_app(store, app).await;
        store.put_channel(channel(app, Channel::Apns, 5)).await.unwrap();
    }
    for i in 0..25 {
        let token = format!("{i:064x}");
        backlog.push(device_with(store, "a1", &format!("i{i}"), Platform::Ios, json!({"apns": token})).await);
    }
    for (i, d) in backlog.iter().enumerate() {
        store
            .commit_push(push("a1", TargetKind::Device, &[(d.as_str(), &format!("k{i}"))], 100, 10_000), 100)
            .await
            .unwrap();
    }
    // a2's one send is due after every one of a1's.
    let other = device_with(store, "a2", "j1", Platform::Ios, json!({"apns": "ef".repeat(32)})).await;
    store.commit_push(push("a2", TargetKind::Device, &[(other.as_str(), "k")], 200, 10_000), 200).await.unwrap();
    let claimed = store.claim_vendor_sends(Channel::Apns, 300, 60_000, 10).await.unwrap();
    let of = |app: &str| claimed.iter().filter(|s| s.app_id.as_str() == app).count();
    // Each app asks for half; a2 has one, so a1 gets the rest of the claim.
    assert_eq!((of("a1"), of("a2")), (9, 1), "each app a share of the claim");
    // Alone, an app takes whole claims.
    let rest = store.claim_vendor_sends(Channel::Apns, 300, 60_000, 10).await.unwrap();
    assert_eq!((rest.len(), rest.iter().all(|s| s.app_id.as_str() == "a1")), (10, true));
}
