-- Revoke: a message is revoked at a time; a device that already got it is sent a control
-- message (kind 'revoke') through the same deliveries as a notification.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'notification';
ALTER TABLE messages ADD COLUMN revoked_at BIGINT;
CREATE INDEX messages_by_key ON messages (app_id, msg_key, target);
