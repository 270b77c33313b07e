//! Nonces of signed requests, in memory: the SQLite store serves a single node.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// Keyed 64-bit hashes of (key id, nonce) with their expiry. Expired entries are dropped
/// in passes, one every `PURGE_EVERY` claims, so the set holds about one signature window
/// of requests.
#[derive(Default)]
pub(super) struct NonceSet {
    hasher: RandomState,
    seen: HashMap<u64, i64>,
    claims: u32,
}

const PURGE_EVERY: u32 = 4096;

impl NonceSet {
    /// False when the nonce is known and not yet expired.
    pub(super) fn claim(&mut self, key_id: &str, nonce: &str, now: i64, expires_at: i64) -> bool {
        self.claims = self.claims.wrapping_add(1);
        if self.claims.is_multiple_of(PURGE_EVERY) {
            self.seen.retain(|_, exp| *exp > now);
        }
        let h = self.hasher.hash_one((key_id, nonce));
        match self.seen.get(&h) {
            Some(exp) if *exp > now => false,
            _ => {
                self.seen.insert(h, expires_at);
                true
            }
        }
    }
}
