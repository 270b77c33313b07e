//! Herald's server: one node of the push service, and the `herald` command.
//!
//! The data flow, module by module (the domain is `herald-core`'s, the truth
//! `herald-store`'s, the MQTT codec `herald-mqtt`'s):
//! - [`api`]: HTTP — signed server API `/v1`, device API `/device/v1`, admin `/admin/v1`,
//!   served by [`http`] (timeouts and a cap on connections);
//! - [`dispatch`]: commit to the store, then hand to the connections of this node ([`dispatch::Hub`])
//!   and ring the nodes holding the others over the [`bus`] (NATS in a cluster); schedules;
//! - [`gateway`]: MQTT 3.1.1 connections of devices (TCP, TLS, and WebSocket at `/mqtt`, a
//!   route the node mounts on the HTTP router);
//! - [`console`]: the web console at `/console`, pages over the same API in process;
//! - [`ledger`]: analytics counters and receipt webhooks, from the store's journal;
//! - [`node`]: wiring of one node; [`config`]: typed configuration; [`cli`]: the `herald` command;
//! - [`tls`]: certificates of the TLS listeners, reloaded when their files change;
//! - [`proxy`]: the PROXY protocol header of a load balancer in front of the listeners;
//! - [`rate`]: token buckets (per-app flow control, per-address CONNECT limits);
//! - [`metrics`], [`shutdown`], [`http_client`]: shared pieces.
//!
//! `api` and `gateway` meet only through `dispatch`; `dispatch` uses `bus` (never the other
//! way round).

pub mod api;
pub mod bus;
pub mod cli;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod gateway;
pub mod http;
pub mod http_client;
pub mod ledger;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod rate;
pub mod shutdown;
pub mod tls;
