//! One typed configuration: file < `HERALD_*` environment < command-line flags.
//!
//! [`DEFAULT_CONFIG`] is the commented default file that `herald config default` prints;
//! a test checks that it parses to exactly [`Config::default`]. Every limit of the
//! contract lives here with its default, and [`Config::validate`] reports every invalid
//! field at start-up, not the first one only.

use std::net::SocketAddr;
use std::path::PathBuf;

use herald_core::limits::Limits;
use herald_store::StoreConfig;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    /// `sqlite://PATH`, `postgres://…`, or empty for `<data_dir>/herald.db`.
    pub store_url: Option<String>,
    /// `nats://…` in a cluster; empty for the in-process bus of a single node.
    pub bus_url: Option<String>,
    pub node_id: String,
    /// Guards `/admin/v1`; generated on first start when unset.
    pub admin_token: Option<String>,
    /// base64 of 32 bytes; encrypts secrets at rest. Generated into the data dir when unset.
    pub master_key: Option<String>,
    pub log: LogConfig,
    pub limits: Limits,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub tls: crate::tls::TlsConfig,
    pub store: StoreConfig,
    pub cluster: ClusterConfig,
    pub channels: herald_channels::ChannelsConfig,
    pub analytics: crate::ledger::AnalyticsConfig,
    pub receipts: crate::ledger::ReceiptsConfig,
    pub console: ConsoleConfig,
}

/// The web console at `/console`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// false: `/console` is not served (404).
    pub enabled: bool,
    /// Seconds a sign-in lasts; the operator signs in again after.
    pub session_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { enabled: true, session_secs: 8 * 3600 }
    }
}

/// How long the HTTP listener waits for a client, and how many it holds at once. Every
/// open connection is a file descriptor: a client that sends nothing must not keep one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// HTTP connections held at once; more wait in the kernel's accept queue until one
    /// closes.
    pub max_connections: usize,
    /// Seconds a connection has to send a request's headers once it is open (or, on a
    /// kept-alive connection, once it sends the first byte of its next request).
    pub header_timeout_secs: u64,
    /// Seconds a request has to send its whole body after its headers (408 after).
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may stay silent between requests before it is closed.
    pub idle_timeout_secs: u64,
    /// Every connection to the HTTP listeners starts with a PROXY protocol header (a load
    /// balancer in front): its client address is the client's.
    pub proxy_protocol: bool,
    /// HTTP connections open at once from one source address (0: no limit), so that one
    /// client cannot hold all of `max_connections`.
    pub max_connections_per_address: usize,
    /// Source addresses not limited per address (a local proxy's, the CLI's).
    pub limits_exempt: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// First token of the NATS subjects: clusters sharing one NATS need different ones.
    pub subject_prefix: String,
    /// How often a node looks in the store for deliveries to its devices that no doorbell
    /// announced (a message lost on the bus); that is the most such a loss delays one.
    pub resync_secs: u64,
    /// The same look, while this node or another has lost the bus (every doorbell is
    /// missing then): milliseconds between two.
    pub degraded_resync_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "text" or "json".
    pub format: String,
    /// A tracing filter, e.g. "info" or "herald=debug,info".
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub max_packet_bytes: usize,
    pub connect_timeout_secs: u64,
    /// QoS 1 deliveries in flight (sent, not yet acknowledged) per connection.
    pub max_inflight: usize,
    /// Deliveries queued in memory per connection; beyond this they wait in the store.
    pub max_queued: usize,
    /// Unsent bytes per connection before the gateway stops writing to it.
    pub max_write_buffer_bytes: usize,
    /// Connections open at once from one source address (0: no limit).
    pub max_connections_per_address: usize,
    /// New connections per second from one source address, after a burst of
    /// `connect_burst_per_address`.
    pub connects_per_second_per_address: u32,
    pub connect_burst_per_address: u32,
    /// Source addresses not limited: a TLS proxy's on this host (every connection through it
    /// comes from its address).
    pub limits_exempt: Vec<std::net::IpAddr>,
    /// Every connection to the MQTT listeners starts with a PROXY protocol header (a load
    /// balancer in front): the limits count the client's address it gives.
    pub proxy_protocol: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./herald-data"),
            http_addr: "0.0.0.0:8080".parse().expect("literal address"),
            mqtt_addr: "0.0.0.0:1883".parse().expect("literal address"),
            store_url: None,
            bus_url: None,
            node_id: "node-1".into(),
            admin_token: None,
            master_key: None,
            log: LogConfig::default(),
            limits: Limits::default(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            tls: crate::tls::TlsConfig::default(),
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
            channels: herald_channels::ChannelsConfig::default(),
            analytics: crate::ledger::AnalyticsConfig::default(),
            receipts: crate::ledger::ReceiptsConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { subject_prefix: "herald".into(), resync_secs: 10, degraded_resync_ms: 1_000 }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "text".into(), level: "info".into() }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            proxy_protocol: false,
            max_connections_per_address: 256,
            limits_exempt: vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()],
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_bytes: 64 * 1024,
            connect_timeout_secs: 10,
            max_inflight: 32,
            max_queued: 256,
            max_write_buffer_bytes: 1024 * 1024,
            max_connections_per_address: 10_000,
            connects_per_second_per_address: 100,
            connect_burst_per_address: 1_000,
            limits_exempt: vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()],
            proxy_protocol: false,
        }
    }
}

/// The commented default configuration file.
pub const DEFAULT_CONFIG: &str = r#"# Herald configuration. Every key is optional; the values below are the defaults.
# Precedence: this file < HERALD_* environment variables < command-line flags.

# Where the single-node store (SQLite), the generated master key and admin token live.
data_dir = "./herald-data"
# Signed server API (/v1), device API (/device/v1), admin API (/admin/v1), /healthz, /metrics.
http_addr = "0.0.0.0:8080"
# MQTT 3.1.1 over TCP for devices.
mqtt_addr = "0.0.0.0:1883"
# Store: unset = SQLite file <data_dir>/herald.db; "sqlite:///path/to/file.db" also works;
# "postgres://user@host:5432/db" for PostgreSQL (required by a cluster).
# store_url = "postgres://herald@127.0.0.1:5432/herald"
# Bus: unset = in-process (single node); "nats://host:4222" for a cluster (needs PostgreSQL).
# A NATS cluster: its servers separated by commas ("nats://a:4222,nats://b:4222,nats://c:4222").
# bus_url = "nats://127.0.0.1:4222"
# Unique per node in a cluster: letters, digits, '-' and '_'.
node_id = "node-1"
# Bearer token for /admin/v1. Unset: the first start generates one, prints it once and
# keeps only its hash. Prefer the HERALD_ADMIN_TOKEN environment variable.
# admin_token = "..."
# base64 of 32 random bytes that encrypt API and bind secrets at rest. Unset: generated
# into <data_dir>/master.key on first start. Nodes of one cluster must share it.
# master_key = "..."

[log]
# "text" or "json".
format = "text"
# tracing filter, e.g. "info" or "herald=debug,info".
level = "info"

[limits]
# Largest request body accepted by the HTTP APIs (bytes).
max_body_bytes = 262144
# Targets in one Simple push (targetMsgkey pairs); MPS allows 10.
max_simple_targets = 10
# Longest validity (expiredSeconds) of a message; MPS allows 72 h.
max_expired_seconds = 259200
# Keys in extendedParams.
max_extended_params = 20
# Characters in a title.
max_title_chars = 200
# Bytes in a content.
max_content_bytes = 4096
# Bytes of the JSON payload delivered to a device.
max_payload_bytes = 16384
# Accepted clock difference of a signed request, and how long a nonce is remembered (s).
signature_window_secs = 300
# Seconds a cached API key is trusted before it is read from the store again.
key_cache_secs = 10
# Longest validity of a bind proof (expiresAt at most this far from now), in seconds; each
# proof binds once.
bind_proof_max_secs = 600
# How far back a message or task can be revoked, in seconds; MPS: 7 days.
revoke_window_secs = 604800
# Characters in a push's or a template's uri.
max_uri_chars = 2048
# Per app and node (0: no limit): signed API requests a second after a burst, and push
# targets a second after a burst (a broadcast counts one). Beyond: 429 FLOW_CONTROL.
app_requests_per_second = 2000
app_request_burst = 4000
app_pushes_per_second = 20000
app_push_burst = 40000
# Characters in a template name (letters, digits, _).
max_template_name_chars = 200
# Templates per app; MPS allows 100.
max_templates_per_app = 100
# Items of targetMsg in one Multiple push; MPS allows 100.
max_multiple_targets = 100
# Keys of one targetMsg item's own extendedParams; MPS: fewer than 10.
max_multiple_extended_params = 9

[http]
# HTTP connections held at once; more wait in the kernel's queue until one closes.
max_connections = 1024
# Seconds a connection has to send a request's headers (from when it opens, or from the
# first byte of its next request on a kept-alive connection).
header_timeout_secs = 10
# Seconds a request has to send its body after its headers (then 408 REQUEST_TIMEOUT).
body_timeout_secs = 30
# Seconds a kept-alive connection may stay silent between requests.
idle_timeout_secs = 60
# true: every connection starts with a PROXY protocol header (v1 or v2) from a load
# balancer, whose client address is used; a connection without one is closed.
proxy_protocol = false
# Connections open at once from one source address (an IPv6 /64 counts as one; 0: no
# limit): one client cannot hold all of max_connections. Addresses not limited: a local
# proxy's, the CLI's.
max_connections_per_address = 256
limits_exempt = ["127.0.0.1", "::1"]

[mqtt]
# Largest MQTT packet a device may send (bytes).
max_packet_bytes = 65536
# Seconds a new connection has to send CONNECT.
connect_timeout_secs = 10
# Unacknowledged QoS 1 deliveries per connection.
max_inflight = 32
# Deliveries queued in memory per connection; more wait in the store.
max_queued = 256
# Unsent bytes per connection before the gateway stops writing to it.
max_write_buffer_bytes = 1048576
# Per source address: connections open at once (0: no limit), and new connections per
# second after a burst. A mobile carrier's NAT puts many phones behind one address.
max_connections_per_address = 10000
connects_per_second_per_address = 100
connect_burst_per_address = 1000
# Addresses not limited: a TLS proxy's on this host.
limits_exempt = ["127.0.0.1", "::1"]
# true: every connection (plain and TLS) starts with a PROXY protocol header (v1 or v2) from
# a load balancer; the per-address limits count the client address it gives.
proxy_protocol = false

[tls]
# PEM certificate chain (leaf first) and its private key. Both set: MQTT over TLS on
# mqtts_addr and HTTPS on https_addr, TLS 1.2 and 1.3 only. The files are read again when
# they change (and on SIGHUP), without a restart.
# cert = "/etc/herald/tls/fullchain.pem"
# key = "/etc/herald/tls/privkey.pem"
mqtts_addr = "0.0.0.0:8883"
https_addr = "0.0.0.0:8443"
# With TLS on, also serve the plain listeners (http_addr, mqtt_addr); false: TLS only.
plain = true
# Seconds between two looks at the files for a change.
reload_secs = 10
# PEM CA certificates: /admin/v1 then also needs a client certificate they signed,
# presented to the HTTPS listener (over plain HTTP the admin API is refused).
# admin_client_ca = "/etc/herald/tls/admin-ca.pem"

[store]
# SQLite synchronous mode: "full" (fsync at each group commit) or "normal".
sqlite_synchronous = "full"
# Most write operations committed together in one transaction.
max_batch = 2048
# Read-only SQLite connections.
reader_connections = 2
# Seconds between sweeps that mark undelivered, expired deliveries as expired.
expiry_sweep_secs = 5
# Milliseconds between looks for due scheduled pushes (one node of a cluster at a time).
schedule_tick_ms = 1000
# Connections to PostgreSQL, when store_url is postgres://...
postgres_connections = 8

[cluster]
# First token of the bus subjects (<prefix>.node.<node_id>, <prefix>.all): clusters that
# share one NATS need different prefixes.
subject_prefix = "herald"
# Seconds between looks in the store for deliveries to this node's devices that no bus
# message announced (one lost on the bus): the most such a loss delays a delivery.
resync_secs = 10
# Milliseconds between those looks while a node of the cluster has lost the bus (pushes are
# accepted then, and reach other nodes' devices only through the store).
degraded_resync_ms = 1000

[channels]
# Vendor endpoints (tests, private deployments and proxies point them elsewhere).
apns_url = "https://api.push.apple.com"
apns_sandbox_url = "https://api.sandbox.push.apple.com"
fcm_url = "https://fcm.googleapis.com"
hms_url = "https://push-api.cloud.huawei.com"
hms_token_url = "https://oauth-login.cloud.huawei.com/oauth2/v3/token"
xiaomi_url = "https://api.xmpush.xiaomi.com"
# Extra trusted roots (PEM) for outbound TLS, beside the Mozilla roots built in:
# ca_file = "/etc/herald/extra-roots.pem"
# Longest wait for one vendor request, connecting included (seconds).
request_timeout_secs = 10
# Requests in flight at once per vendor.
max_in_flight = 512
# HTTP/2 connections to APNs per pool (token-authenticated apps share one pool; each
# certificate has its own), used in turn.
apns_connections = 4
# Requests per second per vendor on this node (0: no limit beyond max_in_flight).
max_per_second = 0
# Sends claimed from the store at a time, per vendor.
claim_batch = 1000
# Seconds a claimed send belongs to the node that claimed it (another node takes it after).
claim_lease_secs = 60
# Milliseconds between looks for due sends when no push rang.
poll_ms = 1000
# The longest wait between two attempts of one send (seconds).
max_backoff_secs = 600
# What a recall (a revoke of a message a vendor already took) shows in place of its text.
recall_text = "This message was withdrawn."
# This node's public base URL ("https://push.example.com"): vendors post receipts to
# <base>/vendor/v1/receipts/... (each channel's receiptUrl). Empty: receipt URLs are shown
# as paths, and Xiaomi is not asked for receipts (it needs an absolute URL per message).
receipt_base_url = ""

[analytics]
# false: status changes are not journalled, so there are no analytics and no receipts.
enabled = true
# How often status changes are counted (ms); a minute's counts are complete this long after
# it ends. At least once a minute.
flush_ms = 1000
# Status changes counted in one transaction. The bigger, the more of a push's changes (pushed,
# sent, delivered) share one counter row; on SQLite the writer holds pushes for its writes
# (about 1.5 us per change).
batch = 1000
# Days the counters of each granularity are kept (day counters: at least 90, the longest
# span a query covers).
minute_retention_days = 7
hour_retention_days = 90
day_retention_days = 730
task_retention_days = 90
# The push types whose tasks have counters of their own (task list, task detail, queries by
# taskId). MPS's task analytics cover Multiple and Broadcast; adding "simple" or "template"
# costs a counter row (about 100 bytes, and writer time) per push of that type.
task_counts = ["multiple", "broadcast"]

[receipts]
# Most receipts in one POST to an app's webhook.
batch_size = 500
# Longest a receipt waits for its batch to fill (ms).
batch_delay_ms = 1000
# A receipt not acknowledged this long after it was queued is given up: listed in
# GET /v1/receipts/failures and replayable (seconds; 24 h).
max_age_secs = 86400
# Seconds a webhook has to answer.
timeout_secs = 10
# First retry after a failure (ms), doubled per failure up to max_backoff_secs, less up to
# half at random.
backoff_ms = 1000
max_backoff_secs = 600
# Apps whose webhooks one node posts to at once.
concurrency = 32
# Longest webhook URL accepted (characters).
max_url_chars = 2048

[console]
# The web console at /console (sign in with the admin token).
enabled = true
# Seconds a sign-in lasts (8 hours); the operator signs in again after.
session_secs = 28800
"#;

impl Config {
    /// Parses a configuration file's text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Every problem with the configuration, one line each; empty when it is valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = self.analytics.problems();
        problems.extend(self.receipts.problems());
        problems.extend(self.tls.problems());
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                problems.push(msg.to_string());
            }
        };
        check(matches!(self.log.format.as_str(), "text" | "json"), "log.format must be \"text\" or \"json\"");
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level is not a valid tracing filter",
        );
        check(subject_token(&self.node_id), "node_id must be 1-64 letters, digits, '-' or '_'");
        check(
            subject_token(&self.cluster.subject_prefix),
            "cluster.subject_prefix must be 1-64 letters, digits, '-' or '_'",
        );
        check(self.cluster.resync_secs >= 1, "cluster.resync_secs must be at least 1");
        check(
            (100..=60_000).contains(&self.cluster.degraded_resync_ms),
            "cluster.degraded_resync_ms must be 100 to 60000",
        );
        check(
            (1..=30 * 86_400).contains(&self.console.session_secs),
            "console.session_secs must be 1 to 2592000 (30 days)",
        );
        check(self.limits.max_body_bytes >= 1024, "limits.max_body_bytes must be at least 1024");
        check(self.limits.max_simple_targets >= 1, "limits.max_simple_targets must be at least 1");
        check(
            (1..=30 * 86_400).contains(&self.limits.max_expired_seconds),
            "limits.max_expired_seconds must be between 1 and 2592000",
        );
        check(self.limits.max_template_name_chars >= 1, "limits.max_template_name_chars must be at least 1");
        check(self.limits.revoke_window_secs >= 1, "limits.revoke_window_secs must be at least 1");
        check((16..=65_536).contains(&self.limits.max_uri_chars), "limits.max_uri_chars must be between 16 and 65536");
        check(
            (1..=86_400).contains(&self.limits.bind_proof_max_secs),
            "limits.bind_proof_max_secs must be between 1 and 86400",
        );
        check(self.limits.max_multiple_targets >= 1, "limits.max_multiple_targets must be at least 1");
        check(
            self.limits.app_requests_per_second == 0 || self.limits.app_request_burst >= 1,
            "limits.app_request_burst must be at least 1",
        );
        check(
            self.limits.app_pushes_per_second == 0
                || self.limits.app_push_burst as usize
                    >= self.limits.max_multiple_targets.max(self.limits.max_simple_targets),
            "limits.app_push_burst must be at least limits.max_multiple_targets and limits.max_simple_targets (or a push of that many could never pass)",
        );
        check(self.limits.max_content_bytes >= 1, "limits.max_content_bytes must be at least 1");
        check(self.limits.max_title_chars >= 1, "limits.max_title_chars must be at least 1");
        check(
            self.limits.max_payload_bytes >= self.limits.max_content_bytes,
            "limits.max_payload_bytes must be at least limits.max_content_bytes",
        );
        check(
            (1..=3600).contains(&self.limits.signature_window_secs),
            "limits.signature_window_secs must be between 1 and 3600",
        );
        check(
            self.mqtt.max_packet_bytes >= 128
                && self.mqtt.max_packet_bytes <= herald_mqtt::header::MAX_REMAINING_LENGTH,
            "mqtt.max_packet_bytes must be between 128 and 268435455",
        );
        check(self.http.max_connections >= 1, "http.max_connections must be at least 1");
        check(self.http.header_timeout_secs >= 1, "http.header_timeout_secs must be at least 1");
        check(self.http.body_timeout_secs >= 1, "http.body_timeout_secs must be at least 1");
        check(self.http.idle_timeout_secs >= 1, "http.idle_timeout_secs must be at least 1");
        check(self.mqtt.connect_timeout_secs >= 1, "mqtt.connect_timeout_secs must be at least 1");
        check((1..=65_535).contains(&self.mqtt.max_inflight), "mqtt.max_inflight must be between 1 and 65535");
        check(self.mqtt.max_queued >= 1, "mqtt.max_queued must be at least 1");
        check(self.mqtt.max_write_buffer_bytes >= 4096, "mqtt.max_write_buffer_bytes must be at least 4096");
        check(
            self.mqtt.connects_per_second_per_address >= 1 && self.mqtt.connect_burst_per_address >= 1,
            "mqtt.connects_per_second_per_address and mqtt.connect_burst_per_address must be at least 1",
        );
        check(
            matches!(self.store.sqlite_synchronous.as_str(), "full" | "normal"),
            "store.sqlite_synchronous must be \"full\" or \"normal\"",
        );
        check(self.store.max_batch >= 1, "store.max_batch must be at least 1");
        check(self.store.reader_connections >= 1, "store.reader_connections must be at least 1");
        check(self.store.schedule_tick_ms >= 50, "store.schedule_tick_ms must be at least 50");
        check(self.store.expiry_sweep_secs >= 1, "store.expiry_sweep_secs must be at least 1");
        if let Some(key) = &self.master_key {
            check(herald_core::crypto::MasterKey::from_base64(key).is_some(), "master_key must be base64 of 32 bytes");
        }
        if let Some(url) = &self.store_url {
            check(
                ["sqlite://", "postgres://", "postgresql://"].iter().any(|s| url.starts_with(s)),
                "store_url must start with sqlite://, postgres:// or postgresql://",
            );
        }
        check(self.store.postgres_connections >= 1, "store.postgres_connections must be at least 1");
        if let Some(urls) = self.bus_url.as_deref().filter(|u| !u.is_empty()) {
            check(
                urls.split(',').map(str::trim).all(|url| ["nats://", "tls://"].iter().any(|s| url.starts_with(s))),
                "bus_url must be nats:// or tls:// URLs, separated by commas",
            );
            check(self.is_postgres(), "bus_url needs a shared store: set store_url to postgres://…");
        }
        problems
    }

    /// True when the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.store_url.as_deref().is_some_and(herald_store::is_postgres_url)
    }

    /// The SQLite file this configuration points at.
    pub fn sqlite_path(&self) -> PathBuf {
        match self.store_url.as_deref().and_then(|u| u.strip_prefix("sqlite://")) {
            Some(path) => PathBuf::from(path),
            None => self.data_dir.join("herald.db"),
        }
    }
}

/// A NATS subject token we accept for node ids and prefixes.
fn subject_token(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::state::PushType;

    /// Every setting of the default file, with its default, is in docs/configuration.md.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let doc = include_str!("../../../docs/configuration.md");
        let mut section = String::new();
        for line in DEFAULT_CONFIG.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']).to_string();
                assert!(doc.contains(line), "docs/configuration.md lacks the section {line}");
            } else if !line.is_empty() && !line.starts_with('#') {
                assert!(doc.contains(line), "docs/configuration.md lacks `{line}` (section [{section}])");
                let key = line.split('=').next().unwrap().trim();
                let qualified = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
                assert!(
                    doc.contains(&format!("`{qualified}`")) || doc.contains(&format!("`{section}.*`")),
                    "docs/configuration.md does not explain `{qualified}`"
                );
            }
        }
    }

    #[test]
    fn the_example_cluster_config_is_valid() {
        let c = Config::from_toml(include_str!("../../../deploy/cluster.toml")).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(c.is_postgres() && c.bus_url.is_some());
    }

    #[test]
    fn a_bus_needs_postgres_and_a_clean_node_id() {
        let mut c = Config { bus_url: Some("nats://127.0.0.1:4222".into()), ..Config::default() };
        assert_eq!(c.validate().len(), 1, "SQLite cannot be shared by nodes");
        c.store_url = Some("postgres://u@h/db".into());
        assert!(c.validate().is_empty());
        c.bus_url = Some("nats://a:4222, nats://b:4222,tls://c:4222".into());
        assert!(c.validate().is_empty(), "a NATS cluster's servers");
        c.bus_url = Some("nats://a:4222,b:4222".into());
        assert_eq!(c.validate().len(), 1);
        c.node_id = "a.b".into();
        c.bus_url = Some("http://x".into());
        assert_eq!(c.validate().len(), 2, "{:?}", c.validate());
    }

    #[test]
    fn default_file_is_the_default_config() {
        assert_eq!(Config::from_toml(DEFAULT_CONFIG).unwrap(), Config::default());
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("http_adr = \"1.2.3.4:5\"").unwrap_err();
        assert!(err.contains("http_adr"), "{err}");
    }

    #[test]
    fn the_task_counted_push_types_are_read_by_name() {
        let c = Config::from_toml("[analytics]\ntask_counts = [\"simple\", \"broadcast\"]").unwrap();
        let t = c.analytics.task_counts;
        assert!(t.contains(PushType::Simple) && t.contains(PushType::Broadcast));
        assert!(!t.contains(PushType::Multiple) && !t.contains(PushType::Template));
        let err = Config::from_toml("[analytics]\ntask_counts = [\"single\"]").unwrap_err();
        assert!(err.contains("\"single\" is not a push type"), "{err}");
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let mut c = Config::default();
        c.log.format = "xml".into();
        c.mqtt.max_inflight = 0;
        c.store.sqlite_synchronous = "off".into();
        let problems = c.validate();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
