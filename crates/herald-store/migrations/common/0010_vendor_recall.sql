-- A revoke of a message a vendor already took queues a recall on the same row: a copy that
-- replaces the one the vendor took (same APNs collapse id, FCM tag, HMS and Xiaomi notify id,
-- Web Push topic). 1: the row is (or was) such a recall.
ALTER TABLE vendor_sends ADD COLUMN recall BIGINT NOT NULL DEFAULT 0;
