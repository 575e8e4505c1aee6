//! Verified-token cache: makes a repeated token cost one SHA-256 and one map
//! look-up instead of a signature verification.
//!
//! Keyed by the full 32-byte SHA-256 of the token, so a different token can
//! never hit another's entry. Only successes are stored, and every hit
//! re-checks the validity window against `now`, so a cached token still
//! expires on time.

use super::token::Validity;
use crate::domain::Principal;
use dashmap::DashMap;
use ring::digest;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub(crate) type CacheKey = [u8; 32];

pub(crate) fn cache_key(token: &[u8]) -> CacheKey {
    let digest = digest::digest(&digest::SHA256, token);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

struct Entry {
    principal: Arc<Principal>,
    validity: Validity,
}

pub(crate) struct TokenCache {
    map: DashMap<CacheKey, Entry>,
    capacity: usize,
    /// Second of the last full sweep; sweeps happen at most once a second so
    /// a full cache cannot turn every insert into an O(n) scan.
    last_sweep: AtomicI64,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            map: DashMap::new(),
            capacity,
            last_sweep: AtomicI64::new(i64::MIN),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The cached principal if the token is known and valid at `now`; an
    /// expired entry is removed on the way.
    pub(crate) fn get(&self, key: &CacheKey, now: i64) -> Option<Arc<Principal>> {
        let entry = self.map.get(key)?;
        if entry.validity.check(now).is_ok() {
            return Some(Arc::clone(&entry.principal));
        }
        let expired = now >= entry.validity.valid_until;
        drop(entry);
        if expired {
            self.map.remove(key);
        }
        None
    }

    /// Remembers a verified token. When full, expired entries are swept (at
    /// most once a second); if it is still full the token is simply not
    /// cached: correctness never depends on the cache.
    pub(crate) fn insert(
        &self,
        key: CacheKey,
        principal: Arc<Principal>,
        validity: Validity,
        now: i64,
    ) {
        if !self.enabled() {
            return;
        }
        if self.map.len() >= self.capacity {
            let last = self.last_sweep.load(Ordering::Relaxed);
            if last != now
                && self
                    .last_sweep
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.map.retain(|_, e| now < e.validity.valid_until);
            }
            if self.map.len() >= self.capacity {
                return;
            }
        }
        self.map.insert(
            key,
            Entry {
                principal,
                validity,
            },
        );
    }
}
