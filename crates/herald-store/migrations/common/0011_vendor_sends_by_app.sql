-- Claims take each app's due sends in turn (one app's backlog never holds another's): the
-- apps with waiting sends of a vendor are found by skipping along this index.
CREATE INDEX vendor_sends_by_app ON vendor_sends (channel, app_id, next_at) WHERE status = 'waiting';
