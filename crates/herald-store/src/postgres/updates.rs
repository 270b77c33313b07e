//! Status updates on PostgreSQL, many per transaction (`apply_updates` in the parent takes
//! them from the queue). Updates of different deliveries commute, so the batch is applied in
//! rounds: the first update of each delivery, then the second of each, and so on; in each
//! round, the updates of one kind that make up the bulk of them (a unicast delivery
//! acknowledged, one per delivered push; a broadcast copy written and acknowledged, two per
//! device reached) go in one statement per kind with their journal in one INSERT, the rest one
//! statement each, pipelined. Each delivery's updates are applied in queue order, as one at a
//! time would; the journal entries (and so the receipts) of different deliveries may come in
//! another order than the queue's.

use herald_core::model::StatusUpdate;
use herald_core::state::{Change, Channel};
use tokio_postgres::types::ToSql;

use super::tx::{PgTx, column};
use crate::tx::Sql;
use crate::{StoreResult, ops, sql};

type Tx<'a> = PgTx<'a, tokio_postgres::Transaction<'a>>;

/// The kinds of update applied many per statement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Many {
    /// A unicast delivery acknowledged (`MARK_DELIVERED`).
    Delivered,
    /// A broadcast copy written (`ACK_SENT`).
    BroadcastSent,
    /// A broadcast copy acknowledged (`ACK_DELIVERED`).
    BroadcastDelivered,
}

impl Many {
    fn of(u: &StatusUpdate) -> Option<Many> {
        match u {
            StatusUpdate::Delivered { message_id, .. } if message_id.is_broadcast() => Some(Many::BroadcastDelivered),
            StatusUpdate::Delivered { .. } => Some(Many::Delivered),
            StatusUpdate::Sent { message_id, .. } if message_id.is_broadcast() => Some(Many::BroadcastSent),
            _ => None,
        }
    }

    fn statement(self) -> &'static Sql {
        match self {
            Many::Delivered => &sql::group::MARK_DELIVERED_MANY,
            Many::BroadcastSent => &sql::group::ACK_SENT_MANY,
            Many::BroadcastDelivered => &sql::group::ACK_DELIVERED_MANY,
        }
    }

    fn change(self) -> Change {
        match self {
            Many::Delivered | Many::BroadcastDelivered => Change::Delivered,
            Many::BroadcastSent => Change::Sent,
        }
    }
}

/// Applies the status updates of deliveries in `updates`, each delivery's in order.
pub(super) async fn apply(tx: &Tx<'_>, updates: &[&StatusUpdate]) -> StoreResult<()> {
    for round in rounds(updates) {
        for kind in [Some(Many::Delivered), Some(Many::BroadcastSent), Some(Many::BroadcastDelivered), None] {
            let these: Vec<&StatusUpdate> = round.iter().copied().filter(|u| Many::of(u) == kind).collect();
            match kind {
                _ if these.is_empty() => {}
                Some(kind) => many(tx, kind, &these).await?,
                None => ops::push::apply_delivery_updates(tx, &these).await?,
            }
        }
    }
    Ok(())
}

/// `updates` in rounds: round k holds the (k+1)-th update of each delivery, so no delivery
/// comes twice in one round; in queue order within each round.
fn rounds<'a>(updates: &[&'a StatusUpdate]) -> Vec<Vec<&'a StatusUpdate>> {
    let mut seen: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut rounds: Vec<Vec<&StatusUpdate>> = Vec::new();
    for u in updates {
        let k = match delivery_of(u) {
            Some(pair) => {
                let n = seen.entry(pair).or_insert(0);
                *n += 1;
                *n - 1
            }
            None => 0,
        };
        if rounds.len() <= k {
            rounds.resize_with(k + 1, Vec::new);
        }
        rounds[k].push(u);
    }
    rounds
}

/// The (message, device) of the delivery an update is about.
fn delivery_of(u: &StatusUpdate) -> Option<(&str, &str)> {
    match u {
        StatusUpdate::Sent { message_id, device_id, .. }
        | StatusUpdate::Delivered { message_id, device_id, .. }
        | StatusUpdate::Event { message_id, device_id, .. } => Some((message_id.as_str(), device_id.as_str())),
        StatusUpdate::Disconnected { .. } | StatusUpdate::KeyUsed { .. } => None,
    }
}

/// Updates of one kind, each of a different delivery, in one statement.
async fn many(tx: &Tx<'_>, kind: Many, run: &[&StatusUpdate]) -> StoreResult<()> {
    let (mut messages, mut devices, mut sent, mut at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for u in run {
        let (message_id, device_id, sent_at, acked) = match u {
            StatusUpdate::Delivered { message_id, device_id, sent_at, at } => (message_id, device_id, *sent_at, *at),
            StatusUpdate::Sent { message_id, device_id, at } => (message_id, device_id, *at, *at),
            _ => continue,
        };
        messages.push(message_id.as_str());
        devices.push(device_id.as_str());
        sent.push(sent_at);
        at.push(acked);
    }
    let args: [&(dyn ToSql + Sync); 4] = [&messages, &devices, &sent, &at];
    let n_args = if kind == Many::BroadcastSent { 3 } else { 4 };
    let rows = tx.query_pg(kind.statement(), &args[..n_args]).await?;
    if rows.is_empty() || !crate::tx::Tx::journal(tx) {
        return Ok(());
    }
    let own = Channel::Own.as_str();
    let (mut j_messages, mut j_devices, mut priors, mut channels, mut j_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        j_messages.push(r.try_get::<_, &str>(0).map_err(column)?);
        j_devices.push(r.try_get::<_, &str>(1).map_err(column)?);
        priors.push(r.try_get::<_, Option<&str>>(2).map_err(column)?);
        channels.push(r.try_get::<_, Option<&str>>(3).map_err(column)?.unwrap_or(own));
        j_at.push(r.try_get::<_, i64>(4).map_err(column)?);
    }
    let change = kind.change().as_str();
    let args: [&(dyn ToSql + Sync); 6] = [&j_messages, &j_devices, &change, &priors, &channels, &j_at];
    tx.execute_pg(&sql::group::JOURNAL_MANY, &args).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use herald_core::ids::{AppId, DeviceId};
    use herald_core::model::{StatusUpdate, TargetOutcome};
    use herald_core::state::{DeliveryStatus, DeviceEvent, TargetKind};

    use crate::Store;
    use crate::suite::{Subject, broadcast, create_app, device, push};

    /// A client of the subject's schema, to read what the store wrote.
    async fn client(schema: &crate::scratch::ScratchSchema) -> tokio_postgres::Client {
        let mut config: tokio_postgres::Config = schema.url().parse().unwrap();
        config.options(schema.options());
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// The journal of `message` as (device, change, prior, at), each device's in order.
    async fn journal(client: &tokio_postgres::Client, message: &str) -> Vec<(String, String, Option<String>, i64)> {
        let rows = client
            .query(
                "SELECT device_id, status, prior, at FROM delivery_events WHERE message_id = $1 \
                 AND device_id IS NOT NULL ORDER BY device_id, seq",
                &[&message],
            )
            .await
            .unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    }

    fn entry(device: &DeviceId, change: &str, prior: Option<&str>, at: i64) -> (String, String, Option<String>, i64) {
        (device.as_str().to_owned(), change.to_owned(), prior.map(str::to_owned), at)
    }

    /// Acknowledgements taken together give what one at a time gives: each delivery
    /// delivered once and journalled once, a repeated acknowledgement changing nothing, and an
    /// event queued between them applied after the ones before it.
    #[tokio::test]
    async fn acknowledgements_in_one_statement_keep_each_deliverys_order() {
        let Some((store, schema)) = Subject::postgres_store(2).await else { return };
        create_app(&store, "a1").await;
        let (d1, d2) = (device(&store, "a1", "i1").await, device(&store, "a1", "i2").await);
        let committed = store
            .commit_push(push("a1", TargetKind::Device, &[(d1.as_str(), "k1"), (d2.as_str(), "k2")], 100, 60_000), 100)
            .await
            .unwrap();
        let mids: Vec<_> = committed
            .outcomes
            .iter()
            .map(|(mid, o)| {
                assert!(matches!(o, TargetOutcome::Accepted { .. }));
                mid.clone()
            })
            .collect();
        let ack = |i: usize, d: &DeviceId, at: i64| StatusUpdate::Delivered {
            message_id: mids[i].clone(),
            device_id: d.clone(),
            sent_at: 110,
            at,
        };
        store.record(ack(0, &d1, 120));
        store.record(ack(0, &d1, 130));
        store.record(StatusUpdate::Event {
            message_id: mids[0].clone(),
            device_id: d1.clone(),
            event: DeviceEvent::Opened,
            at: 140,
            received_at: 140,
        });
        store.record(ack(1, &d2, 150));
        store.flush().await.unwrap();

        let app = AppId::new("a1");
        let first = store.message(&app, &mids[0]).await.unwrap().unwrap();
        assert_eq!(first.deliveries[0].status, DeliveryStatus::Opened);
        assert_eq!(first.deliveries[0].delivered_at, Some(120), "the repeated acknowledgement changed nothing");
        let second = store.message(&app, &mids[1]).await.unwrap().unwrap();
        assert_eq!(second.deliveries[0].status, DeliveryStatus::Delivered);
        assert_eq!(second.deliveries[0].delivered_at, Some(150));

        let client = client(&schema).await;
        assert_eq!(
            journal(&client, mids[0].as_str()).await,
            vec![
                entry(&d1, "pushed", None, 100),
                entry(&d1, "delivered", Some("pending"), 120),
                entry(&d1, "opened", Some("delivered"), 140),
            ]
        );
        assert_eq!(
            journal(&client, mids[1].as_str()).await,
            vec![entry(&d2, "pushed", None, 100), entry(&d2, "delivered", Some("pending"), 150)]
        );
    }

    /// A broadcast's copies written and acknowledged, many per statement, as one at a time:
    /// a copy written twice is recorded once, an acknowledgement repeated changes nothing, an
    /// event after them comes after them.
    #[tokio::test]
    async fn broadcast_copies_in_one_statement_keep_each_devices_order() {
        let Some((store, schema)) = Subject::postgres_store(2).await else { return };
        create_app(&store, "a1").await;
        let (d1, d2) = (device(&store, "a1", "i1").await, device(&store, "a1", "i2").await);
        let b = store.commit_broadcast(broadcast("a1", "news", 100, 60_000), 100).await.unwrap();
        let mid = b.message_id.clone();
        let sent = |d: &DeviceId, at: i64| StatusUpdate::Sent { message_id: mid.clone(), device_id: d.clone(), at };
        let ack = |d: &DeviceId, sent_at: i64, at: i64| StatusUpdate::Delivered {
            message_id: mid.clone(),
            device_id: d.clone(),
            sent_at,
            at,
        };
        for u in [
            sent(&d1, 110),
            sent(&d2, 111),
            ack(&d1, 110, 120),
            sent(&d1, 112),
            ack(&d1, 110, 130),
            StatusUpdate::Event {
                message_id: mid.clone(),
                device_id: d1.clone(),
                event: DeviceEvent::Opened,
                at: 140,
                received_at: 140,
            },
            ack(&d2, 111, 150),
        ] {
            store.record(u);
        }
        store.flush().await.unwrap();

        let client = client(&schema).await;
        let rows = client
            .query("SELECT device_id, status, sent_at, delivered_at FROM broadcast_acks ORDER BY device_id", &[])
            .await
            .unwrap();
        let acks: Vec<(String, String, i64, Option<i64>)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        let mut expected = vec![
            (d1.as_str().to_owned(), "opened".to_owned(), 110, Some(120)),
            (d2.as_str().to_owned(), "delivered".to_owned(), 111, Some(150)),
        ];
        expected.sort();
        assert_eq!(acks, expected);
        let mut expected = vec![
            entry(&d1, "sent", None, 110),
            entry(&d1, "delivered", Some("sent"), 120),
            entry(&d1, "opened", Some("delivered"), 140),
            entry(&d2, "sent", None, 111),
            entry(&d2, "delivered", Some("sent"), 150),
        ];
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(journal(&client, mid.as_str()).await, expected);
    }
}
