//! Rows into records, written once: both drivers' rows read through [`Row`]. A stored value
//! that does not parse as its type (an unknown key kind, vendor tokens that are not a JSON
//! object…) is an error on both backends, with the cause in its message.

use herald_core::ids::TaskId;
use herald_core::ids::{AppId, DeviceId, KeyId, MessageId, UserId};
use herald_core::model::{
    ApiKeyRecord, AppRecord, ChannelHealth, ChannelRecord, DeliveryView, DeviceRecord, InvalidToken, MessageView,
    PendingDelivery, Recipient, ScheduleRecord, TemplateRecord, VendorSend, VendorSendView,
};
use herald_core::state::{
    Channel, DeliveryStatus, KeyKind, Platform, PushType, ScheduleStatus, StrategyKind, TargetKind, VendorSendStatus,
};

use crate::StoreResult;
use crate::tx::{Row, corrupt};

/// A text column holding one of a typed state's stored forms.
fn state<T>(r: &dyn Row, i: usize, what: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let text = r.text(i)?;
    parse(&text).ok_or_else(|| corrupt(format!("unknown {what} {text:?}")))
}

/// An integer column holding one of a coded state's forms.
fn coded<T>(r: &dyn Row, i: usize, what: &str, parse: fn(i64) -> Option<T>) -> StoreResult<T> {
    let code = r.i64(i)?;
    parse(code).ok_or_else(|| corrupt(format!("unknown {what} {code}")))
}

/// See `sql::app_columns!`.
pub(crate) fn app(r: &dyn Row) -> StoreResult<AppRecord> {
    Ok(AppRecord {
        app_id: AppId::new(r.text(0)?),
        name: r.text(1)?,
        app_key_hash: r.text(2)?,
        bind_secret_sealed: r.text(3)?,
        trust_client_bind: r.bool(4)?,
        created_at: r.i64(5)?,
        workspace_id: r.opt_text(6)?,
    })
}

/// See `sql::key_columns!`.
pub(crate) fn api_key(r: &dyn Row) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key_id: KeyId::new(r.text(0)?),
        app_id: AppId::new(r.text(1)?),
        kind: state(r, 2, "key kind", KeyKind::parse)?,
        material: r.text(3)?,
        created_at: r.i64(4)?,
        revoked_at: r.opt_i64(5)?,
        last_used_at: r.opt_i64(6)?,
    })
}

/// See `sql::device_columns!`.
pub(crate) fn device(r: &dyn Row) -> StoreResult<DeviceRecord> {
    let vendor_tokens = tokens(r, 7)?;
    Ok(DeviceRecord {
        device_id: DeviceId::new(r.text(0)?),
        app_id: AppId::new(r.text(1)?),
        install_id: r.text(2)?,
        platform: state(r, 3, "platform", Platform::parse)?,
        app_version: r.opt_text(4)?,
        os_version: r.opt_text(5)?,
        model: r.opt_text(6)?,
        vendor_tokens,
        user_id: r.opt_text(8)?.map(UserId::new),
        bound_at: r.opt_i64(9)?,
        created_at: r.i64(10)?,
        last_seen: r.opt_i64(11)?,
        online_node: r.opt_text(12)?,
    })
}

/// See `sql::template_columns!`.
pub(crate) fn template(r: &dyn Row) -> StoreResult<TemplateRecord> {
    Ok(TemplateRecord {
        app_id: AppId::new(r.text(0)?),
        name: r.text(1)?,
        title: r.text(2)?,
        content: r.text(3)?,
        uri: r.opt_text(4)?,
        desc_info: r.opt_text(5)?,
        push_style: r.i64(6)?,
        silent: r.i64(7)?,
        created_at: r.i64(8)?,
        updated_at: r.i64(9)?,
    })
}

/// See `sql::schedule_columns!`.
pub(crate) fn schedule(r: &dyn Row) -> StoreResult<ScheduleRecord> {
    Ok(ScheduleRecord {
        unique_id: r.text(0)?,
        parent_id: r.opt_text(1)?,
        app_id: AppId::new(r.text(2)?),
        push_type: state(r, 3, "push type", PushType::parse)?,
        delivery_type: r.i64(4)?,
        template_name: r.opt_text(5)?,
        title: r.opt_text(6)?,
        content: r.opt_text(7)?,
        body: r.text(8)?,
        strategy_kind: coded(r, 9, "strategy type", StrategyKind::from_code)?,
        strategy: r.text(10)?,
        push_time: r.i64(11)?,
        expires_ms: r.i64(12)?,
        status: coded(r, 13, "schedule status", ScheduleStatus::from_code)?,
        task_id: r.opt_text(14)?,
        created_at: r.i64(15)?,
    })
}

/// (message id, payload, expires at, status): a delivery read back for a connection.
pub(crate) fn pending(r: &dyn Row) -> StoreResult<PendingDelivery> {
    Ok(PendingDelivery {
        message_id: MessageId::new(r.text(0)?),
        payload: r.text(1)?,
        expires_at: r.i64(2)?,
        sent_before: delivery_status(r, 3)? == DeliveryStatus::Sent,
    })
}

pub(crate) fn delivery_status(r: &dyn Row, i: usize) -> StoreResult<DeliveryStatus> {
    state(r, i, "delivery status", DeliveryStatus::parse)
}

/// (device, online node).
pub(crate) fn recipient(r: &dyn Row) -> StoreResult<Recipient> {
    Ok(Recipient { device_id: DeviceId::new(r.text(0)?), online_node: r.opt_text(1)?, vendor: None, own_now: true })
}

pub(crate) fn device_id(r: &dyn Row) -> StoreResult<DeviceId> {
    Ok(DeviceId::new(r.text(0)?))
}

/// See `sql::message_columns!`; the deliveries are read apart.
pub(crate) fn message(r: &dyn Row) -> StoreResult<MessageView> {
    Ok(MessageView {
        message_id: MessageId::new(r.text(0)?),
        task_id: TaskId::new(r.text(1)?),
        msg_key: r.text(2)?,
        target_kind: state(r, 3, "target kind", TargetKind::parse)?,
        target: r.text(4)?,
        undeliverable: r.bool(5)?,
        created_at: r.i64(6)?,
        expires_at: r.i64(7)?,
        revoked_at: r.opt_i64(8)?,
        deliveries: Vec::new(),
        vendor_sends: Vec::new(),
    })
}

/// See `sql::MESSAGE_DELIVERIES`.
pub(crate) fn delivery(r: &dyn Row) -> StoreResult<DeliveryView> {
    Ok(DeliveryView {
        device_id: DeviceId::new(r.text(0)?),
        status: delivery_status(r, 1)?,
        created_at: r.i64(2)?,
        updated_at: r.i64(3)?,
        sent_at: r.opt_i64(4)?,
        delivered_at: r.opt_i64(5)?,
    })
}

pub(crate) fn push_type(r: &dyn Row, i: usize) -> StoreResult<PushType> {
    state(r, i, "push type", PushType::parse)
}

pub(crate) fn target_kind(r: &dyn Row, i: usize) -> StoreResult<TargetKind> {
    state(r, i, "target kind", TargetKind::parse)
}

pub(crate) fn schedule_status(r: &dyn Row, i: usize) -> StoreResult<ScheduleStatus> {
    coded(r, i, "schedule status", ScheduleStatus::from_code)
}

/// A device a push is for: where it is connected, and what a vendor needs to reach it.
pub(crate) struct Target {
    pub(crate) device_id: DeviceId,
    pub(crate) online_node: Option<String>,
    pub(crate) platform: Platform,
    pub(crate) tokens: serde_json::Map<String, serde_json::Value>,
}

fn tokens(r: &dyn Row, i: usize) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(&r.text(i)?) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(corrupt(format!("vendor_tokens of device {} is not a JSON object", r.text(0)?))),
    }
}

/// (device, online node, platform, vendor tokens).
pub(crate) fn target(r: &dyn Row) -> StoreResult<Target> {
    Ok(Target {
        device_id: DeviceId::new(r.text(0)?),
        online_node: r.opt_text(1)?,
        platform: state(r, 2, "platform", Platform::parse)?,
        tokens: tokens(r, 3)?,
    })
}

/// (device, platform, vendor tokens): a device a broadcast may reach through a vendor.
pub(crate) fn vendor_audience(r: &dyn Row) -> StoreResult<Target> {
    Ok(Target {
        device_id: DeviceId::new(r.text(0)?),
        online_node: None,
        platform: state(r, 1, "platform", Platform::parse)?,
        tokens: tokens(r, 2)?,
    })
}

/// See `sql::channels::channel_columns!`.
pub(crate) fn channel(r: &dyn Row) -> StoreResult<ChannelRecord> {
    let settings = match serde_json::from_str(&r.text(2)?) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(corrupt(format!("the settings of channel {} are not a JSON object", r.text(1)?))),
    };
    Ok(ChannelRecord {
        app_id: AppId::new(r.text(0)?),
        kind: state(r, 1, "channel", Channel::parse)?,
        settings,
        secret_sealed: r.text(3)?,
        created_at: r.i64(4)?,
        updated_at: r.i64(5)?,
        health: ChannelHealth { last_success: r.opt_i64(6)?, last_error_at: r.opt_i64(7)?, last_error: r.opt_text(8)? },
    })
}

/// See `sql::CLAIM_VENDOR_SENDS`; the payload is read apart.
pub(crate) fn claimed_send(r: &dyn Row) -> StoreResult<VendorSend> {
    Ok(VendorSend {
        message_id: MessageId::new(r.text(0)?),
        device_id: DeviceId::new(r.text(1)?),
        app_id: AppId::new(r.text(2)?),
        channel: state(r, 3, "channel", Channel::parse)?,
        token: r.text(4)?,
        attempts: r.i64(5)?,
        expires_at: r.i64(6)?,
        payload: None,
        recall: r.i64(7)? != 0,
    })
}

/// See `sql::MESSAGE_VENDOR_SENDS`.
pub(crate) fn vendor_send_view(r: &dyn Row) -> StoreResult<VendorSendView> {
    Ok(VendorSendView {
        device_id: DeviceId::new(r.text(0)?),
        channel: state(r, 1, "channel", Channel::parse)?,
        status: state(r, 2, "vendor send status", VendorSendStatus::parse)?,
        attempts: r.i64(3)?,
        vendor_id: r.opt_text(4)?,
        reason: r.opt_text(5)?,
        updated_at: r.i64(6)?,
    })
}

/// See `sql::INVALID_TOKENS`.
pub(crate) fn invalid_token(r: &dyn Row) -> StoreResult<InvalidToken> {
    Ok(InvalidToken {
        device_id: DeviceId::new(r.text(0)?),
        channel: state(r, 1, "channel", Channel::parse)?,
        token: r.text(2)?,
        reason: r.text(3)?,
        at: r.i64(4)?,
    })
}
