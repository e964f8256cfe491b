//! The session bridge: from a request's `Cookie` header to the Django user, exactly as
//! Django's `SessionMiddleware` + `AuthenticationMiddleware` would decide
//! (`shared/django-session-format.md` §7), without calling Django.
//!
//! cookie → key shape → cache → session store → signature → session JSON → user row →
//! auth hash. A session that fails any check is [`Identity::Anonymous`] with the reason;
//! a database that cannot answer is [`StoreUnavailable`] under `on_store_error = "refuse"`
//! (the caller answers 503) or anonymous under `"anonymous"`. Cached answers keep serving
//! while the database is down. Open sockets re-check with [`SessionBridge::recheck`], where
//! a store error is always an error (never a logout). Routes and close codes belong to
//! callers; revocation pushed by Django arrives as `invalidate_session` / `invalidate_user`.
//!
//! Not covered: `USE_TZ = False` with a non-UTC `TIME_ZONE` (naive local `expire_date`),
//! custom backends' own `get_user`, custom managers that filter users, and Django's side
//! effects (flush, cycle_key), which Django performs on the next request it serves.
//!
//! Files: `cookies` (the header), `signing` (the envelope), `pyjson` (Python's JSON),
//! `auth` (get_user and the identity), `store/` (SQLite, PostgreSQL, signed cookies),
//! `cache` (moka). "Now" for every expiry check comes from the crate's [`Clock`].

pub mod auth;
pub mod cache;
pub mod cookies;
pub mod pyjson;
pub mod signing;
pub mod store;
pub mod watch;
pub mod whois;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::clock::Clock;
pub use auth::{Anonymous, Identity, User};
use cache::{Entry, IdentityCache};
// The bridge's settings are config's types (config depends on no module; modules on it).
pub use crate::config::{
    BadIdent, BridgeSettings, CacheSettings, Database, Engine, Ident, PkType, StoreErrorPolicy, StoreSettings,
    UnknownDatabaseScheme, UserTable, DEFAULT_AUTHENTICATION_BACKEND, DEFAULT_POOL_SIZE, DEFAULT_QUERY_TIMEOUT,
    DEFAULT_SESSION_COOKIE_AGE, DEFAULT_SESSION_COOKIE_NAME, DEFAULT_SESSION_STORE_CLASS, DEFAULT_SESSION_TABLE,
    DEFAULT_USER_TABLE,
};
use signing::{Signer, SigningError};
use store::Store;
pub use store::StoreError;

/// A pk hint unused this long is dropped: well past `revalidate` and the cache TTL.
const PK_HINT_TTI: Duration = Duration::from_secs(3600);
/// Store errors are logged at most once per this window, with a count of the rest.
const STORE_ERROR_LOG_WINDOW: Duration = Duration::from_secs(10);
/// Django's `_get_new_session_key` makes 32 characters of `[a-z0-9]`; the column holds
/// 40; `_validate_session_key` refuses fewer than 8.
const SESSION_KEY_LEN: std::ops::RangeInclusive<usize> = 8..=40;

/// The database could not answer and the policy is `refuse`: answer 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreUnavailable(pub Arc<StoreError>);

/// The bridge could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum BridgeBuildError {
    #[error(transparent)]
    Postgres(#[from] store::postgres::PgConfigError),
}

/// Built once at start-up; cheap to clone and share.
#[derive(Clone)]
pub struct SessionBridge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBridge").field("engine", &self.inner.engine).finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    cookie_name: String,
    cookie_age_secs: f64,
    signer: Signer,
    policy: auth::AuthPolicy,
    store: Store,
    cache: IdentityCache,
    /// Session key → the pk its session claimed last time. A session's user only changes
    /// with a new key (login cycles it), so the guess is nearly always right, and lets a
    /// re-resolution read the session and the user in one joined query.
    pk_hints: moka::future::Cache<String, auth::Pk>,
    on_store_error: StoreErrorPolicy,
    error_log: BurstLog,
    hits: AtomicU64,
    misses: AtomicU64,
    pushed_revocation: bool,
    /// Handshake reads in flight, one per key, shared by concurrent handshakes (entries
    /// leave when their read ends, so the map holds at most the handshakes in progress).
    fresh: Mutex<HashMap<String, FreshLoad>>,
    /// "Now" for expiry checks: the system clock except in tests.
    clock: Clock,
}

type FreshLoad = futures_util::future::Shared<futures_util::future::BoxFuture<'static, Result<Entry, Arc<StoreError>>>>;

impl SessionBridge {
    /// Build the bridge. Connections open lazily, so an unreachable database does not
    /// stop start-up; it shows up as [`StoreUnavailable`] on the first miss.
    pub fn new(s: BridgeSettings) -> Result<Self, BridgeBuildError> {
        Self::with_clock(s, Clock::system())
    }

    /// [`SessionBridge::new`] reading "now" from `clock` for every expiry check (session
    /// rows, signed cookies' age, cached answers' session end). Tests use a fixed clock to
    /// check a verdict at the instant Django gave it.
    pub fn with_clock(s: BridgeSettings, clock: Clock) -> Result<Self, BridgeBuildError> {
        let salt = match s.engine {
            Engine::SignedCookies => signing::SIGNED_COOKIES_SALT.to_owned(),
            Engine::Db | Engine::CachedDb => {
                format!("{}{}", signing::DB_SALT_PREFIX, s.session_store_class)
            }
        };
        let signer = Signer::new(&salt, &s.secret_key, &s.secret_key_fallbacks);
        let policy = auth::AuthPolicy::new(
            s.authentication_backends,
            s.check_is_active,
            s.store.users.pk_type,
            &s.secret_key,
            &s.secret_key_fallbacks,
        );
        let store = match &s.database {
            Database::Sqlite(path) => Store::Sqlite(store::sqlite::SqliteStore::new(path.clone(), &s.store)),
            Database::Postgres(url) => Store::Postgres(Box::new(store::postgres::PgStore::new(url, &s.store)?)),
        };
        Ok(SessionBridge {
            inner: Arc::new(Inner {
                engine: s.engine,
                cookie_name: s.session_cookie_name,
                cookie_age_secs: s.session_cookie_age.as_secs_f64(),
                signer,
                policy,
                store,
                cache: IdentityCache::new(s.cache, clock.clone()),
                pk_hints: moka::future::Cache::builder().max_capacity(s.cache.size).time_to_idle(PK_HINT_TTI).build(),
                on_store_error: s.on_store_error,
                error_log: BurstLog::default(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                pushed_revocation: s.pushed_revocation,
                fresh: Mutex::default(),
                clock,
            }),
        })
    }

    /// Who sent this request. `cookie_header` is the request's `Cookie` header (several
    /// headers joined with `"; "` by the caller), or empty when there was none.
    ///
    /// `Ok(Identity::Anonymous(reason))` for every session that fails a check;
    /// `Err(StoreUnavailable)` only when the database could not answer and the policy is
    /// `refuse`. Called for every upgrade and every revalidation; a cached answer costs
    /// no I/O.
    pub async fn resolve(&self, cookie_header: &[u8]) -> Result<Identity, StoreUnavailable> {
        let Some(value) = cookies::cookie_value(cookie_header, &self.inner.cookie_name) else {
            return Ok(Identity::Anonymous(Anonymous::NoCookie));
        };
        self.resolve_value(&value).await
    }

    /// Who opens this socket: [`SessionBridge::resolve`], except that without
    /// `pushed_revocation` a cached *user* is not trusted: the session is read again (once
    /// for all concurrent handshakes with the same key), as Django would read it. Cached
    /// anonymous answers still count, so floods of bad keys stay off the database.
    pub async fn resolve_handshake(&self, cookie_header: &[u8]) -> Result<Identity, StoreUnavailable> {
        let Some(value) = cookies::cookie_value(cookie_header, &self.inner.cookie_name) else {
            return Ok(Identity::Anonymous(Anonymous::NoCookie));
        };
        if self.inner.pushed_revocation {
            return self.resolve_value(&value).await;
        }
        match self.lookup_fresh(&value).await {
            Err(_) if self.inner.on_store_error == StoreErrorPolicy::Anonymous => {
                Ok(Identity::Anonymous(Anonymous::StoreUnavailable))
            }
            other => other,
        }
    }

    async fn lookup_fresh(&self, value: &str) -> Result<Identity, StoreUnavailable> {
        let inner = &self.inner;
        if inner.engine != Engine::SignedCookies && !session_key_shape_ok(value) {
            return Ok(Identity::Anonymous(Anonymous::MalformedKey));
        }
        if let Some(hit) = inner.cache.get(value).await.filter(|e| matches!(e.identity, Identity::Anonymous(_))) {
            inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit.identity);
        }
        inner.misses.fetch_add(1, Ordering::Relaxed);
        let load = {
            let mut fresh = inner.fresh.lock().unwrap_or_else(|e| e.into_inner());
            fresh
                .entry(value.to_owned())
                .or_insert_with(|| {
                    let (bridge, key) = (self.inner.clone(), value.to_owned());
                    let read: futures_util::future::BoxFuture<'static, _> =
                        Box::pin(async move { bridge.load(&key).await.map_err(Arc::new) });
                    futures_util::FutureExt::shared(read)
                })
                .clone()
        };
        let outcome = load.await;
        inner.fresh.lock().unwrap_or_else(|e| e.into_inner()).remove(value);
        match outcome {
            Ok(entry) => {
                inner.cache.put(value, entry.clone()).await;
                Ok(entry.identity)
            }
            Err(e) => {
                let _logged = inner.error_log.store_error(&e);
                Err(StoreUnavailable(e))
            }
        }
    }

    /// [`SessionBridge::resolve`] for a cookie value already extracted (a session key, or
    /// a whole signed cookie for `signed_cookies`). Used by `whois`.
    pub async fn resolve_value(&self, value: &str) -> Result<Identity, StoreUnavailable> {
        match self.lookup(value).await {
            Err(_) if self.inner.on_store_error == StoreErrorPolicy::Anonymous => {
                Ok(Identity::Anonymous(Anonymous::StoreUnavailable))
            }
            other => other,
        }
    }

    /// Re-check the session of an open socket (the `revalidate` fallback to pushed
    /// revocation). Unlike [`SessionBridge::resolve`], a store error is always `Err`,
    /// whatever `on_store_error` says: the caller keeps the socket open and tries again
    /// later, because a database outage must never log everybody out.
    pub async fn recheck(&self, cookie_header: &[u8]) -> Result<Identity, StoreUnavailable> {
        match cookies::cookie_value(cookie_header, &self.inner.cookie_name) {
            None => Ok(Identity::Anonymous(Anonymous::NoCookie)),
            Some(value) => self.lookup(&value).await,
        }
    }

    /// Shape check, cache, then one shared load per key; store errors are logged once
    /// per burst and returned.
    async fn lookup(&self, value: &str) -> Result<Identity, StoreUnavailable> {
        let inner = &self.inner;
        if inner.engine != Engine::SignedCookies && !session_key_shape_ok(value) {
            return Ok(Identity::Anonymous(Anonymous::MalformedKey));
        }
        if let Some(hit) = inner.cache.get(value).await {
            inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit.identity);
        }
        inner.misses.fetch_add(1, Ordering::Relaxed);
        match inner.cache.get_or_load(value, inner.load(value)).await {
            Ok(entry) => Ok(entry.identity),
            Err(e) => {
                let _logged = inner.error_log.store_error(&e);
                Err(StoreUnavailable(e))
            }
        }
    }

    /// Forget the cached answer for one session key (Django logged it out).
    pub async fn invalidate_session(&self, session_key: &str) {
        self.inner.cache.invalidate_session(session_key).await;
    }

    /// [`SessionBridge::invalidate_session`] without waiting (revocations arrive on paths
    /// that cannot await; the entry is never served again once this returns).
    pub fn forget_session(&self, session_key: &str) {
        self.inner.cache.forget_session(session_key);
    }

    /// The session cookie's value in a `Cookie` header: the key revocations name.
    pub fn session_value(&self, cookie_header: &[u8]) -> Option<String> {
        cookies::cookie_value(cookie_header, &self.inner.cookie_name).map(|v| v.into_owned())
    }

    /// SESSION_ENGINE.
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// The session cookie's name (`SESSION_COOKIE_NAME`).
    pub fn cookie_name(&self) -> &str {
        &self.inner.cookie_name
    }

    /// Forget every cached answer for user `id` (pk as a string): password change,
    /// deactivation, deletion.
    pub fn invalidate_user(&self, id: &str) {
        self.inner.cache.invalidate_user(id);
    }

    /// Lookups answered from the cache and lookups that missed it, so far (metrics).
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.inner.hits.load(Ordering::Relaxed), self.inner.misses.load(Ordering::Relaxed))
    }

    /// Queries sent to the database so far (metrics, tests).
    pub fn store_queries(&self) -> u64 {
        self.inner.store.queries()
    }

    /// Let the cache apply pending evictions and invalidations now (tests).
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
    }

    /// How many answers the cache holds (after [`SessionBridge::run_pending_tasks`], exact):
    /// metrics, and tests of the `cache_size` bound.
    pub fn cached_answers(&self) -> u64 {
        self.inner.cache.entry_count()
    }
}

/// `[a-z0-9]{8,40}`: the only keys Django makes; anything else is refused before a query.
pub fn session_key_shape_ok(key: &str) -> bool {
    SESSION_KEY_LEN.contains(&key.len()) && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn from_unix_secs(s: f64) -> Option<SystemTime> {
    (0.0..1e15).contains(&s).then(|| UNIX_EPOCH + Duration::from_secs_f64(s))
}

// === impl Inner ===

impl Inner {
    /// A cache miss: session, then user. `Err` only when the database failed.
    async fn load(self: &Arc<Self>, key: &str) -> Result<Entry, StoreError> {
        let now = self.clock.now();
        let (verdict, read_user) = match self.engine {
            Engine::SignedCookies => {
                match store::signed_cookies::load(&self.signer, key, self.cookie_age_secs, unix_secs(now)) {
                    Ok((v, until)) => (self.claims(&v, from_unix_secs(until)), None),
                    Err(e) => (Err((signing_reason(&e), None)), None),
                }
            }
            Engine::Db | Engine::CachedDb => self.read_session(key, now).await?,
        };
        let (claims, expires) = match verdict {
            Ok(v) => v,
            Err((reason, expires)) => {
                return Ok(Entry { identity: Identity::Anonymous(reason), user_id: None, session_expires: expires })
            }
        };
        let row = match read_user {
            Some((pk, row)) if pk == claims.pk => row,
            _ => self.store.load_user(claims.pk).await?,
        };
        if self.engine != Engine::SignedCookies {
            self.pk_hints.insert(key.to_owned(), claims.pk).await;
        }
        Ok(Entry {
            identity: self.policy.verify(&claims, row),
            user_id: Some(claims.pk.to_id_string().into()),
            session_expires: expires,
        })
    }

    /// The session row's verdict and the user row read with it: joined to the `pk_hints`
    /// guess when there is one, otherwise read by the pk the session claims, in the same
    /// trip to the database.
    async fn read_session(self: &Arc<Self>, key: &str, now: SystemTime) -> Result<(Verdict, ReadUser), StoreError> {
        if let Some(pk) = self.pk_hints.get(key).await {
            return Ok(match self.store.load_session_with_user(key, now, pk).await? {
                None => (Err((Anonymous::NoSuchSession, None)), None),
                Some((row, user)) => (self.session_claims(&row, now), Some((pk, user))),
            });
        }
        let me = self.clone();
        let claim = move |row: &store::SessionRow| {
            let verdict = me.session_claims(row, now);
            let pk = verdict.as_ref().ok().map(|(c, _)| c.pk);
            (verdict, pk)
        };
        Ok(match self.store.load_session_then_user(key, now, claim).await? {
            None => (Err((Anonymous::NoSuchSession, None)), None),
            Some((_, verdict, user)) => {
                let read = verdict.as_ref().ok().map(|(c, _)| (c.pk, user));
                (verdict, read)
            }
        })
    }

    /// A session row's claims: live, signed, and naming a user.
    fn session_claims(&self, row: &store::SessionRow, now: SystemTime) -> Verdict {
        if !row.live {
            return Err((Anonymous::Expired, None));
        }
        let expires = from_unix_secs(row.expires_at);
        match self.signer.loads(&row.session_data, None, unix_secs(now)) {
            Ok(v) => self.claims(&v, expires),
            Err(e) => Err((signing_reason(&e), expires)),
        }
    }

    fn claims(&self, session: &pyjson::Value, expires: Option<SystemTime>) -> Verdict {
        self.policy.claims(session).map(|c| (c, expires)).map_err(|reason| (reason, expires))
    }
}

/// A session's claims and when it ends, or why it is anonymous (and when it ends).
type Verdict = Result<(auth::Claims, Option<SystemTime>), (Anonymous, Option<SystemTime>)>;
/// A user row read with the session, and the pk it was read by.
type ReadUser = Option<(auth::Pk, Option<auth::UserRow>)>;

fn signing_reason(e: &SigningError) -> Anonymous {
    match e {
        SigningError::NoSeparator | SigningError::BadSignature => Anonymous::BadSignature,
        SigningError::Expired { .. } => Anonymous::Expired,
        SigningError::Malformed(_) => Anonymous::Corrupt,
    }
}

/// Logs a store error once per window, then how many were suppressed.
#[derive(Default)]
struct BurstLog {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl BurstLog {
    /// Logs `e` unless an error was logged within the window; returns whether it logged.
    fn store_error(&self, e: &StoreError) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < STORE_ERROR_LOG_WINDOW) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        *last = Some(now);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::error!(error = %e, suppressed, "session store unavailable");
        true
    }
}

#[cfg(test)]
mod tests;
