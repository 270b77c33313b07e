//! Behaviour tests through the real binary: HTTP on port 0, real MQTT clients, real SQLite.

mod common;

mod bad_input;
mod devices;
mod durability;
mod gateway;
mod openapi;
mod postgres;
mod simple_push;
