//! The store contract as tests, run on every backend by [`store_suite!`]: SQLite always,
//! PostgreSQL when `HERALD_TEST_POSTGRES_URL` names a server. Every operation of [`Store`]
//! is exercised here, so a backend that drifts from the other fails a test.
//!
//! The helpers (`app`, `device`, `push`, [`Subject`]) also serve the scheduler's tests in
//! the server crate (feature `suite`). The cases are in [`cases`].

mod cases;
mod ledger_cases;
mod vendor_cases;

pub use cases::*;
pub use ledger_cases::*;
pub use vendor_cases::*;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use herald_core::ids::{AppId, DeviceId, KeyId, MessageId, TaskId};
use herald_core::model::*;
use herald_core::state::*;

use crate::scratch::ScratchSchema;
use crate::{PostgresStore, Registered, SqliteStore, Store, StoreConfig};

type Raw = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A store under test, a way to write into it behind its back (to store what the API never
/// would), and what removes its database afterwards.
pub struct Subject {
    pub store: Arc<dyn Store>,
    raw: Raw,
    _guard: Box<dyn std::any::Any + Send>,
}

impl Subject {
    /// A fresh SQLite file.
    pub async fn sqlite() -> Option<Subject> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("herald.db");
        let store = SqliteStore::open(&path, &StoreConfig::default()).expect("open SQLite");
        let raw: Raw = Box::new(move |sql| {
            let path = path.clone();
            Box::pin(async move {
                let conn = rusqlite::Connection::open(&path).expect("open SQLite beside the store");
                conn.execute_batch(&format!("PRAGMA foreign_keys = OFF; PRAGMA busy_timeout = 5000; {sql}"))
                    .expect("raw SQL");
            })
        });
        Some(Subject { store: Arc::new(store), raw, _guard: Box::new(dir) })
    }

    /// A fresh schema of the database of `HERALD_TEST_POSTGRES_URL`; `None` (the test says
    /// it is skipped) when the variable is unset.
    pub async fn postgres() -> Option<Subject> {
        let (store, schema) = Self::postgres_store(2).await?;
        let (url, options) = (schema.url().to_owned(), schema.options());
        let raw: Raw = Box::new(move |sql| {
            let (url, options) = (url.clone(), options.clone());
            Box::pin(async move {
                let mut config: tokio_postgres::Config = url.parse().expect("store URL");
                config.options(&options);
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(connection);
                client.batch_execute(&sql).await.expect("raw SQL");
            })
        });
        Some(Subject { store: Arc::new(store), raw, _guard: Box::new(schema) })
    }

    /// A PostgreSQL store with `connections` in its pool, in a fresh schema.
    pub async fn postgres_store(connections: usize) -> Option<(PostgresStore, ScratchSchema)> {
        let schema = ScratchSchema::for_test().await?;
        let store = PostgresStore::open(schema.url(), connections, Some(&schema.options()))
            .await
            .unwrap_or_else(|e| panic!("opening the PostgreSQL store: {e}"));
        Some((store, schema))
    }

    /// Runs SQL on the store's database, beside the store.
    pub async fn raw(&self, sql: &str) {
        (self.raw)(sql.to_owned()).await
    }
}

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
            workspace_id: None,
        },
        ApiKeyRecord {
            key_id: KeyId::new(format!("{id}-key")),
            app_id,
            kind: KeyKind::Hmac,
            material: "sealed-secret".into(),
            created_at: 1,
            revoked_at: None,
            last_used_at: None,
        },
    )
}

pub async fn create_app(store: &dyn Store, id: &str) {
    let (a, k) = app(id);
    store.create_app(a, k).await.unwrap();
}

pub fn registration(app: &str, install: &str, platform: Platform, now: i64) -> DeviceRegistration {
    DeviceRegistration {
        app_id: AppId::new(app),
        install_id: install.into(),
        new_device_id: DeviceId::generate(),
        token_hash: herald_core::crypto::sha256_hex(herald_core::crypto::random_secret().as_bytes()),
        proof_token_hash: None,
        platform,
        app_version: Some("1.0".into()),
        os_version: None,
        model: None,
        vendor_tokens: None,
        now,
    }
}

/// Registers an Android device of `app` at time 10.
pub async fn device(store: &dyn Store, app: &str, install: &str) -> DeviceId {
    match store.register_device(registration(app, install, Platform::Android, 10)).await.unwrap() {
        Registered::Created(d) => d.device_id,
        other => panic!("{install} was registered before: {other:?}"),
    }
}

pub fn push(app: &str, kind: TargetKind, targets: &[(&str, &str)], now: i64, ttl_ms: i64) -> NewPush {
    NewPush {
        skip_idempotency: false,
        task: NewTask {
            task_id: TaskId::generate(now),
            app_id: AppId::new(app),
            push_type: PushType::Simple,
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
                payload: Bytes::from(format!("{{\"k\":\"{key}\"}}")),
                vendor: true,
            })
            .collect(),
    }
}

/// A broadcast to every Android device of `app` (audience All).
pub fn broadcast(app: &str, msg_key: &str, now: i64, ttl_ms: i64) -> NewBroadcast {
    NewBroadcast {
        task: NewTask {
            task_id: TaskId::generate(now),
            app_id: AppId::new(app),
            push_type: PushType::Broadcast,
            task_name: None,
            delivery_type: 1,
            created_at: now,
            expires_at: now + ttl_ms,
        },
        message_id: MessageId::generate_broadcast(now),
        msg_key: msg_key.into(),
        platform: Platform::Android,
        audience: BroadcastAudience::All,
        bind_since: None,
        unbind_since: None,
        payload: Bytes::from_static(b"{\"k\":\"broadcast\"}"),
        vendor: true,
        skip_idempotency: false,
    }
}

pub(crate) fn offline(d: &DeviceId) -> Recipient {
    Recipient { device_id: d.clone(), online_node: None, vendor: None, own_now: true }
}

pub(crate) fn on(node: &str, generation: u64) -> Presence {
    Presence { node: node.into(), generation }
}

/// Runs the suite on one backend: `store_suite!(name, <future of Option<Subject>>)`.
#[macro_export]
macro_rules! store_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use $crate::suite;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        // `None`: the backend is not configured here (the reason is printed).
                        let Some(subject) = $make.await else { return };
                        suite::$name(&subject).await;
                        // Nothing in flight when the test's database goes away.
                        subject.store.flush().await.expect("flush");
                    }
                };
            }

            case!(apps_keys_settings_and_leases);
            case!(console_sessions_expire_and_end);
            case!(changes_are_counted_once_and_receipted_in_order);
            case!(a_long_run_of_status_updates_is_applied_whole);
            case!(an_outbox_is_sent_claimed_given_up_and_replayed);
            case!(only_the_chosen_push_types_have_task_counters);
            case!(a_store_without_the_journal_counts_nothing);
            case!(two_counters_at_once_count_each_entry_once);
            case!(channels_and_routing_are_kept_per_app);
            case!(offline_devices_get_vendor_sends_that_are_claimed_once);
            case!(one_apps_backlog_never_holds_another_apps_vendor_sends);
            case!(retries_wait_and_revokes_withdraw_vendor_sends);
            case!(broadcasts_write_vendor_sends_for_devices_not_connected);
            case!(nonces_are_claimed_once_until_they_expire);
            case!(an_install_registers_once_and_renews_only_with_its_token);
            case!(reports_merge_vendor_tokens);
            case!(corrupt_rows_are_errors);
            case!(pushes_resolve_targets_within_the_app);
            case!(tasks_are_listed_newest_first_by_filter_and_page);
            case!(devices_are_listed_newest_first_by_filter_and_page);
            case!(idempotency_holds_within_the_validity);
            case!(deliveries_are_pending_until_acknowledged_or_expired);
            case!(user_messages_follow_binds);
            case!(presence_routes_pushes_and_binds_to_the_holding_node);
            case!(broadcasts_reach_their_audience_once);
            case!(a_revoke_withdraws_and_recalls);
            case!(schedules_fire_once_and_cancel);
            case!(templates_are_unique_per_app_and_limited);
        }
    };
}

#[cfg(test)]
mod backends {
    use std::sync::Arc;

    use super::*;

    crate::store_suite!(sqlite, crate::suite::Subject::sqlite());
    crate::store_suite!(postgres, crate::suite::Subject::postgres());

    /// The push/connect race of a cluster: a connect that records its presence while a
    /// push that read the device's (old) presence is still open waits for that push, and
    /// its read of pending deliveries then finds it. Without the share lock the connect
    /// would read nothing, and the push would ring no node: the delivery would be stranded.
    #[tokio::test]
    async fn postgres_a_connect_during_a_push_waits_for_it_and_then_reads_it() {
        let Some((store, _schema)) = Subject::postgres_store(3).await else { return };
        let store = Arc::new(store);
        create_app(store.as_ref(), "a1").await;
        let d = device(store.as_ref(), "a1", "i1").await;
        let push = push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 60_000);
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel();
        let pushing = tokio::spawn({
            let store = store.clone();
            async move { store.commit_push_held(push, 100, held_tx, release_rx).await.unwrap() }
        });
        held.await.unwrap();
        let connecting = tokio::spawn({
            let (store, d) = (store.clone(), d.clone());
            async move {
                store.device_connected(&d, &on("n2", 1), 110).await.unwrap();
                store.pending_deliveries(&d, 110, 10).await.unwrap()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!connecting.is_finished(), "the connect must wait for the open push");
        release.send(()).unwrap();
        let committed = pushing.await.unwrap();
        let TargetOutcome::Accepted { devices } = &committed.outcomes[0].1 else { panic!("{committed:?}") };
        assert_eq!(devices[0].online_node, None, "the push read the presence before the connect");
        assert_eq!(connecting.await.unwrap().len(), 1, "so the connect reads the delivery");
        store.flush().await.unwrap();
    }

    /// Every statement of the store prepares on PostgreSQL.
    #[tokio::test]
    async fn postgres_every_statement_prepares() {
        let Some(schema) = ScratchSchema::for_test().await else { return };
        let store = PostgresStore::open(schema.url(), 1, Some(&schema.options())).await.unwrap();
        drop(store);
        let mut config: tokio_postgres::Config = schema.url().parse().unwrap();
        config.options(schema.options());
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        for s in crate::sql::ALL
            .iter()
            .chain(crate::sql::channels::ALL)
            .chain(crate::sql::broadcasts::ALL)
            .chain(crate::sql::ledger::ALL)
            .chain(crate::sql::POSTGRES_ONLY)
            .chain(crate::sql::group::ALL)
        {
            client.prepare(s.text(crate::tx::Dialect::Postgres)).await.unwrap_or_else(|e| panic!("{e:?}: {s:?}"));
        }
    }
}
