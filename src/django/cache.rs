//! The resolution cache: session key (or signed cookie) → identity, in a bounded moka
//! cache.
//!
//! - Users live for `cache_ttl`, anonymous answers for the shorter `cache_negative_ttl`,
//!   and no entry outlives its session (`expire_date`, or the signed cookie's age).
//! - A repeated unknown key is answered from its negative entry, so a flood of the same
//!   bad keys reaches the database once per key per negative TTL.
//! - Concurrent misses on one key share one load (`try_get_with`); a failed load (the
//!   store is down) is not cached, so the next request tries again.
//! - `invalidate_session` / `invalidate_user` drop entries when Django reports a logout,
//!   a password change or a deactivation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::future::Cache;
use moka::Expiry;

use super::auth::Identity;
use crate::clock::Clock;
use crate::config::CacheSettings;

/// One cached answer.
#[derive(Debug, Clone)]
pub struct Entry {
    pub identity: Identity,
    /// The pk the session claimed (also for anonymous answers such as `Inactive`), so a
    /// user's invalidation drops those too.
    pub user_id: Option<Arc<str>>,
    /// When the session itself stops being valid.
    pub session_expires: Option<SystemTime>,
}

struct EntryExpiry {
    ttl: Duration,
    negative_ttl: Duration,
    /// The bridge's clock, for the time left until the session ends.
    clock: Clock,
}

impl Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _key: &String, value: &Entry, _created_at: Instant) -> Option<Duration> {
        let base = match value.identity {
            Identity::User(_) => self.ttl,
            Identity::Anonymous(_) => self.negative_ttl,
        };
        let left =
            value.session_expires.map(|t| t.duration_since(self.clock.now()).unwrap_or(Duration::ZERO)).unwrap_or(base);
        Some(base.min(left))
    }
}

#[derive(Clone)]
pub struct IdentityCache {
    inner: Cache<String, Entry>,
}

impl IdentityCache {
    /// A cache bounded by `s`; `clock` says when sessions end (the bridge's clock).
    pub fn new(s: CacheSettings, clock: Clock) -> Self {
        let inner = Cache::builder()
            .max_capacity(s.size)
            .expire_after(EntryExpiry { ttl: s.ttl, negative_ttl: s.negative_ttl, clock })
            .support_invalidation_closures()
            .build();
        IdentityCache { inner }
    }

    /// A cached answer, without loading.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        self.inner.get(key).await
    }

    /// The cached answer, or the result of `load` shared with every concurrent caller for
    /// the same key. `Err` (not cached) when the load failed.
    pub async fn get_or_load<E, F>(&self, key: &str, load: F) -> Result<Entry, Arc<E>>
    where
        F: std::future::Future<Output = Result<Entry, E>>,
        E: Send + Sync + 'static,
    {
        self.inner.try_get_with_by_ref(key, load).await
    }

    /// Stores a fresh answer (a handshake's re-read).
    pub async fn put(&self, key: &str, entry: Entry) {
        self.inner.insert(key.to_owned(), entry).await;
    }

    pub async fn invalidate_session(&self, key: &str) {
        self.inner.invalidate(key).await;
    }

    /// Drop one key's entry without waiting (see `invalidate_user` for how).
    pub fn forget_session(&self, key: &str) {
        let key = key.to_owned();
        let _ = self.inner.invalidate_entries_if(move |k, _| *k == key);
    }

    /// Drop every entry that claims user `id` (the pk as a string). Scans lazily; meant
    /// for the rare revocation, not the request path.
    pub fn invalidate_user(&self, id: &str) {
        let id: Arc<str> = id.into();
        // Only fails when invalidation closures are not enabled, which `new` enables.
        let _ = self.inner.invalidate_entries_if(move |_, e| e.user_id.as_deref() == Some(&*id));
    }

    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }

    /// Entries held (moka's count: exact after `run_pending_tasks`).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}
