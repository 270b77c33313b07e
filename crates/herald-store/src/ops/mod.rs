//! The store's operations, written once over [`crate::tx::Tx`]: each backend runs them
//! where it runs statements (the SQLite writer or readers; a pooled PostgreSQL connection)
//! and decides where a transaction begins and ends.

pub(crate) mod apps;
pub(crate) mod broadcast;
pub(crate) mod channels;
pub(crate) mod devices;
pub(crate) mod ledger;
pub(crate) mod push;
pub(crate) mod receipts;
pub(crate) mod revoke;
pub(crate) mod schedules;
pub(crate) mod views;
