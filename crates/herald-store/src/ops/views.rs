//! What status queries show: a task with its messages and deliveries, one message.

use herald_core::ids::{AppId, MessageId, TaskId};
use herald_core::model::{MessageView, TaskView};

use crate::tx::{Tx, query_opt};
use crate::{StoreResult, ops, rows, sql};

async fn with_deliveries<X: Tx>(tx: &X, mut messages: Vec<MessageView>) -> StoreResult<Vec<MessageView>> {
    for m in &mut messages {
        m.deliveries = tx.query(&sql::MESSAGE_DELIVERIES, &[&m.message_id.as_str()], rows::delivery).await?;
    }
    Ok(messages)
}

pub(crate) async fn task<X: Tx>(tx: &X, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>> {
    let (task, app) = (task_id.as_str(), app_id.as_str());
    let view = |r: &dyn crate::tx::Row| {
        Ok(TaskView {
            task_id: task_id.clone(),
            push_type: rows::push_type(r, 0)?,
            task_name: r.opt_text(1)?,
            delivery_type: r.i64(2)?,
            created_at: r.i64(3)?,
            expires_at: r.i64(4)?,
            messages: Vec::new(),
            broadcast: None,
        })
    };
    let Some(mut view) = query_opt(tx, &sql::TASK, &[&task, &app], view).await? else {
        return Ok(None);
    };
    let messages = tx.query(&sql::TASK_MESSAGES, &[&task, &app], rows::message).await?;
    view.messages = with_deliveries(tx, messages).await?;
    view.broadcast = ops::broadcast::view(tx, task_id, app_id).await?;
    Ok(Some(view))
}

pub(crate) async fn message<X: Tx>(tx: &X, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>> {
    let found = tx.query(&sql::MESSAGE, &[&message_id.as_str(), &app_id.as_str()], rows::message).await?;
    let Some(mut view) = with_deliveries(tx, found).await?.pop() else {
        return Ok(None);
    };
    view.vendor_sends = crate::ops::channels::sends_of(tx, message_id).await?;
    Ok(Some(view))
}
