//! The session bridge's settings, typed and validated: what `[django]` becomes, and the
//! value types it is written in (engines, policies, SQL identifiers, database URLs). The
//! bridge (`crate::django`) receives a [`BridgeSettings`] and re-exports these types.

use std::path::PathBuf;
use std::time::Duration;

use super::env::Secret;

/// SESSION_COOKIE_NAME: Django's default, as are the constants below.
pub const DEFAULT_SESSION_COOKIE_NAME: &str = "sessionid";
/// SESSION_COOKIE_AGE: two weeks.
pub const DEFAULT_SESSION_COOKIE_AGE: Duration = Duration::from_secs(1_209_600);
pub const DEFAULT_SESSION_TABLE: &str = "django_session";
/// The built-in stores are all classes named `SessionStore`, which salts the signature.
pub const DEFAULT_SESSION_STORE_CLASS: &str = "SessionStore";
pub const DEFAULT_AUTHENTICATION_BACKEND: &str = "django.contrib.auth.backends.ModelBackend";
pub const DEFAULT_USER_TABLE: &str = "auth_user";
/// Few connections: resolutions are cached and each query is a point lookup.
pub const DEFAULT_POOL_SIZE: usize = 4;
/// Long enough for a loaded database, short enough that an upgrade fails fast.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Pushed revocation drops entries at once; the TTL bounds what a missed push costs.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
/// Short: a session that logs in must not stay anonymous for long.
pub const DEFAULT_CACHE_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// About 100 bytes an entry: 10 MB at most.
pub const DEFAULT_CACHE_SIZE: u64 = 100_000;

/// The resolution cache's bounds.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// How long a resolved user is kept.
    pub ttl: Duration,
    /// How long an anonymous answer is kept.
    pub negative_ttl: Duration,
    /// Most entries (at least 1).
    pub size: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { ttl: DEFAULT_CACHE_TTL, negative_ttl: DEFAULT_CACHE_NEGATIVE_TTL, size: DEFAULT_CACHE_SIZE }
    }
}

/// SESSION_ENGINE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// `django.contrib.sessions.backends.db`
    #[default]
    Db,
    /// `django.contrib.sessions.backends.cached_db`: the database is authoritative, so
    /// we read it exactly like `db`.
    CachedDb,
    /// `django.contrib.sessions.backends.signed_cookies`: the cookie is the session.
    SignedCookies,
}

/// What an upgrade gets when the database cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorPolicy {
    /// Refuse: the caller answers 503 (default; a login wall must not open by accident).
    #[default]
    Refuse,
    /// Treat the request as anonymous.
    Anonymous,
}

/// Where Django's database is. `Debug` hides a PostgreSQL URL (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// `sqlite://` + the path, taken literally.
    Sqlite(PathBuf),
    /// A `postgres://` URL (it may hold a password: never log it).
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database URL must start with sqlite:// or postgres:// (or postgresql://)")]
pub struct UnknownDatabaseScheme;

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Database::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

impl Database {
    pub fn parse(url: &str) -> Result<Self, UnknownDatabaseScheme> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        Err(UnknownDatabaseScheme)
    }
}

/// Everything the bridge needs, typed and validated (built from the `[django]` section).
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    pub secret_key: Secret,
    pub secret_key_fallbacks: Vec<Secret>,
    pub engine: Engine,
    pub database: Database,
    pub session_cookie_name: String,
    pub session_cookie_age: Duration,
    pub session_store_class: String,
    pub authentication_backends: Vec<String>,
    pub check_is_active: bool,
    pub store: StoreSettings,
    pub cache: CacheSettings,
    pub on_store_error: StoreErrorPolicy,
    /// Django reports every logout, password change and deactivation (`/api/disconnect`),
    /// so a handshake may trust a cached user.
    pub pushed_revocation: bool,
}

/// The type of the user model's primary key, which decides how `_auth_user_id` converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PkType {
    /// AutoField / BigAutoField / IntegerField: `int(value)`.
    #[default]
    Int,
    /// UUIDField: `uuid.UUID(hex=value)` (or `int=` for a JSON integer).
    Uuid,
}

/// A table or column name from config, checked to be a plain SQL identifier (optionally
/// `schema.name`) and kept quoted, so config can never inject SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a plain SQL identifier (letters, digits, '_', optional 'schema.' prefix)")]
pub struct BadIdent(pub String);

impl Ident {
    pub fn new(name: &str) -> Result<Self, BadIdent> {
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| part_ok(p)) {
            return Err(BadIdent(name.to_owned()));
        }
        Ok(Ident(parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(".")))
    }
    /// The quoted form, ready to paste into SQL.
    pub fn quoted(&self) -> &str {
        &self.0
    }
}

/// The user model's table and columns (custom user models rename or drop some).
#[derive(Debug, Clone)]
pub struct UserTable {
    pub table: Ident,
    pub pk: Ident,
    pub pk_type: PkType,
    /// The USERNAME_FIELD column (`email` for many custom models).
    pub username: Ident,
    pub password: Ident,
    /// `None`: the model has no such field; `is_active` then counts as true, the others false.
    pub is_active: Option<Ident>,
    pub is_staff: Option<Ident>,
    pub is_superuser: Option<Ident>,
}

/// Which database and which tables.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub session_table: Ident,
    pub users: UserTable,
    /// Connections kept open (SQLite readers or PostgreSQL clients).
    pub pool_size: usize,
    /// Bound on one query, and on connecting.
    pub query_timeout: Duration,
}
