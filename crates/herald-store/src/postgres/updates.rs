//! Status updates on PostgreSQL, many per transaction (`apply_updates` in the parent takes
//! them from the queue): each run of consecutive unicast acknowledgements (the bulk of them,
//! one per delivered push) in one UPDATE and its journal in one INSERT; the rest one statement
//! each, pipelined. Applied in queue order, as one at a time would; within one run of
//! acknowledgements (each a different delivery) the journal entries, and so the receipts, come
//! in the order the server returns the updated rows, not necessarily the queue's.

use herald_core::model::StatusUpdate;
use herald_core::state::{Change, Channel};
use tokio_postgres::types::ToSql;

use super::tx::{PgTx, column};
use crate::{StoreResult, ops, sql};

type Tx<'a> = PgTx<'a, tokio_postgres::Transaction<'a>>;

/// Applies the status updates of deliveries in `updates`, in order.
pub(super) async fn apply(tx: &Tx<'_>, updates: &[&StatusUpdate]) -> StoreResult<()> {
    let mut rest = updates;
    while !rest.is_empty() {
        let acks = rest.iter().take_while(|u| is_unicast_ack(u)).count();
        if acks > 0 {
            acknowledge(tx, &rest[..acks]).await?;
            rest = &rest[acks..];
        } else {
            let others = rest.iter().take_while(|u| !is_unicast_ack(u)).count();
            ops::push::apply_delivery_updates(tx, &rest[..others]).await?;
            rest = &rest[others..];
        }
    }
    Ok(())
}

fn is_unicast_ack(u: &StatusUpdate) -> bool {
    matches!(u, StatusUpdate::Delivered { message_id, .. } if !message_id.is_broadcast())
}

/// Unicast acknowledgements in one statement. A second acknowledgement of one delivery in the
/// run would change nothing after the first (it is no longer open): it is left out.
async fn acknowledge(tx: &Tx<'_>, acks: &[&StatusUpdate]) -> StoreResult<()> {
    let mut seen = std::collections::HashSet::new();
    let (mut messages, mut devices, mut sent, mut at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for u in acks {
        if let StatusUpdate::Delivered { message_id, device_id, sent_at, at: acked } = u
            && seen.insert((message_id.as_str(), device_id.as_str()))
        {
            messages.push(message_id.as_str());
            devices.push(device_id.as_str());
            sent.push(*sent_at);
            at.push(*acked);
        }
    }
    let args: [&(dyn ToSql + Sync); 4] = [&messages, &devices, &sent, &at];
    let rows = tx.query_pg(&sql::group::MARK_DELIVERED_MANY, &args).await?;
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
    let delivered = Change::Delivered.as_str();
    let args: [&(dyn ToSql + Sync); 6] = [&j_messages, &j_devices, &delivered, &priors, &channels, &j_at];
    tx.execute_pg(&sql::group::JOURNAL_MANY, &args).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use herald_core::ids::AppId;
    use herald_core::model::{StatusUpdate, TargetOutcome};
    use herald_core::state::{DeliveryStatus, DeviceEvent, TargetKind};

    use crate::Store;
    use crate::suite::{Subject, create_app, device, push};

    /// Acknowledgements taken together give what one at a time gives: each delivery
    /// delivered once and journalled once, a repeated acknowledgement changing nothing, and an
    /// event queued between them applied after the ones before it.
    #[tokio::test]
    async fn acknowledgements_in_one_statement_keep_queue_order() {
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
        let ack = |i: usize, d: &herald_core::ids::DeviceId, at: i64| StatusUpdate::Delivered {
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

        let mut config: tokio_postgres::Config = schema.url().parse().unwrap();
        config.options(schema.options());
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let rows = client
            .query("SELECT message_id, status, prior, channel, at FROM delivery_events ORDER BY seq", &[])
            .await
            .unwrap();
        type Entry = (String, String, Option<String>, Option<String>, i64);
        let journal: Vec<Entry> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
        let own = Some("own".to_owned());
        let (m0, m1) = (mids[0].as_str().to_owned(), mids[1].as_str().to_owned());
        assert_eq!(
            journal,
            vec![
                (m0.clone(), "pushed".into(), None, own.clone(), 100),
                (m1.clone(), "pushed".into(), None, own.clone(), 100),
                (m0.clone(), "delivered".into(), Some("pending".into()), own.clone(), 120),
                (m0, "opened".into(), Some("delivered".into()), own.clone(), 140),
                (m1, "delivered".into(), Some("pending".into()), own, 150),
            ]
        );
    }
}
