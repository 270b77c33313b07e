-- Presence: the node that holds a device's MQTT connection, and which connection of that
-- node (its generation). A push routes a device's delivery to that node over the bus; a
-- disconnect clears the presence only if no newer connection replaced it.
ALTER TABLE devices ADD COLUMN online_node TEXT;
ALTER TABLE devices ADD COLUMN online_gen BIGINT;
CREATE INDEX devices_online ON devices (online_node) WHERE online_node IS NOT NULL;
