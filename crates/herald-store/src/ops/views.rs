//! What status queries show: a task with its messages and deliveries, one message.

use herald_core::ids::{AppId, MessageId, TaskId};
use herald_core::model::{MessageView, TaskFilter, TaskSummary, TaskView};

use crate::tx::{Tx, query_one, query_opt};
use crate::{StoreResult, ops, rows, sql};

async fn with_deliveries<X: Tx>(tx: &X, mut messages: Vec<MessageView>) -> StoreResult<Vec<MessageView>> {
    for m in &mut messages {
        m.deliveries = tx.query(&sql::MESSAGE_DELIVERIES, &[&m.message_id.as_str()], rows::delivery).await?;
    }
    Ok(messages)
}

pub(crate) async fn task<X: Tx>(tx: &X, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>> {
    let (task, app) = (task_id.as_str(), app_id.as_str());
    let view = |r: &dyn crate::tx::Row| Ok(TaskView { summary: summary(r)?, messages: Vec::new(), broadcast: None });
    let Some(mut view) = query_opt(tx, &sql::TASK, &[&task, &app], view).await? else {
        return Ok(None);
    };
    let messages = tx.query(&sql::TASK_MESSAGES, &[&task, &app], rows::message).await?;
    view.messages = with_deliveries(tx, messages).await?;
    view.broadcast = ops::broadcast::view(tx, task_id, app_id).await?;
    Ok(Some(view))
}

/// A task's row, as TASK and TASK_LIST select it.
fn summary(r: &dyn crate::tx::Row) -> StoreResult<TaskSummary> {
    Ok(TaskSummary {
        task_id: TaskId::new(r.text(0)?),
        push_type: rows::push_type(r, 1)?,
        task_name: r.opt_text(2)?,
        delivery_type: r.i64(3)?,
        created_at: r.i64(4)?,
        expires_at: r.i64(5)?,
    })
}

/// One page of the app's tasks that `filter` selects, newest first, and how many it selects.
pub(crate) async fn tasks<X: Tx>(
    tx: &X,
    app_id: &AppId,
    filter: &TaskFilter,
    offset: u64,
    limit: u64,
) -> StoreResult<(u64, Vec<TaskSummary>)> {
    let push_type = filter.push_type.map_or("", |t| t.as_str());
    let selects: [&dyn crate::tx::Arg; 6] = [
        &app_id.as_str(),
        &push_type,
        &filter.created_from,
        &filter.created_to,
        &filter.expires_after,
        &filter.expires_by,
    ];
    let total = query_one(tx, &sql::TASK_LIST_COUNT, &selects, |r| r.i64(0)).await? as u64;
    let (limit, offset) = (limit as i64, offset as i64);
    let mut args = selects.to_vec();
    args.extend([&limit as &dyn crate::tx::Arg, &offset]);
    let page = tx.query(&sql::TASK_LIST, &args, summary).await?;
    Ok((total, page))
}

pub(crate) async fn message<X: Tx>(tx: &X, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>> {
    let found = tx.query(&sql::MESSAGE, &[&message_id.as_str(), &app_id.as_str()], rows::message).await?;
    let Some(mut view) = with_deliveries(tx, found).await?.pop() else {
        return Ok(None);
    };
    view.vendor_sends = crate::ops::channels::sends_of(tx, message_id).await?;
    Ok(Some(view))
}
