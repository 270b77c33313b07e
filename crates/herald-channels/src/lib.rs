//! Vendor senders.
