//! Who a decoded session belongs to: `django.contrib.auth.get_user` (django-session-format.md
//! §6), the `_auth_user_hash` HMAC, and the identity handed to the rest of Switchyard.
//!
//! The checks run in Django's order: the id is present and converts to the pk type, the
//! backend is present and one of AUTHENTICATION_BACKENDS, the user row exists, it is
//! active (ModelBackend's `user_can_authenticate`), and the hash of its *current*
//! password column matches under SECRET_KEY or a fallback. Loading the session and the
//! row is the stores' job; this module only decides.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::pyjson::{self, PyStr, Value};
use super::signing::{constant_time_eq, Secret};
pub use crate::config::PkType;

type HmacSha256 = Hmac<Sha256>;

/// `django.contrib.auth.SESSION_KEY` and friends.
pub const SESSION_KEY: &str = "_auth_user_id";
pub const BACKEND_SESSION_KEY: &str = "_auth_user_backend";
pub const HASH_SESSION_KEY: &str = "_auth_user_hash";
/// The fixed key salt of `AbstractBaseUser.get_session_auth_hash`.
const AUTH_HASH_SALT: &str = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash";
/// Backends whose `user_can_authenticate` lets inactive users in.
const ALLOW_INACTIVE_BACKENDS: [&str; 2] = [
    "django.contrib.auth.backends.AllowAllUsersModelBackend",
    "django.contrib.auth.backends.AllowAllUsersRemoteUserBackend",
];

/// A logged-in user, in the shape DESIGN.md gives the browser and the backends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// The primary key as a string (bigint and UUID keys survive JavaScript).
    pub id: String,
    pub username: String,
    pub is_staff: bool,
    pub is_superuser: bool,
}

/// Why a request is anonymous. Every one of these is a normal outcome, never an error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anonymous {
    /// No session cookie in the request.
    NoCookie,
    /// The cookie is not a session key Django could have made (shape checked before any query).
    MalformedKey,
    /// No row for this key in the session table.
    NoSuchSession,
    /// The row (db) or the signature (signed_cookies) has expired.
    Expired,
    /// The signature matches neither SECRET_KEY nor any fallback.
    BadSignature,
    /// The signature is good but the payload does not decode to a JSON object.
    Corrupt,
    /// The session has no `_auth_user_id` (nobody logged in).
    NoUserId,
    /// `_auth_user_id` does not convert to the pk type (Django answers this with a 500).
    InvalidUserId,
    /// The session has no `_auth_user_backend`.
    NoBackend,
    /// The backend is not in the configured `authentication_backends`.
    BackendNotAllowed,
    /// No user row with that pk.
    NoSuchUser,
    /// The user row has `is_active` false.
    Inactive,
    /// `_auth_user_hash` is missing or empty (Django flushes the session).
    NoHash,
    /// `_auth_user_hash` matches the current password under no key (password changed).
    HashMismatch,
    /// The database could not answer and `on_store_error = "anonymous"`.
    StoreUnavailable,
}

impl Anonymous {
    pub fn as_str(self) -> &'static str {
        match self {
            Anonymous::NoCookie => "no_cookie",
            Anonymous::MalformedKey => "malformed_key",
            Anonymous::NoSuchSession => "no_such_session",
            Anonymous::Expired => "expired",
            Anonymous::BadSignature => "bad_signature",
            Anonymous::Corrupt => "corrupt",
            Anonymous::NoUserId => "no_user_id",
            Anonymous::InvalidUserId => "invalid_user_id",
            Anonymous::NoBackend => "no_backend",
            Anonymous::BackendNotAllowed => "backend_not_allowed",
            Anonymous::NoSuchUser => "no_such_user",
            Anonymous::Inactive => "inactive",
            Anonymous::NoHash => "no_hash",
            Anonymous::HashMismatch => "hash_mismatch",
            Anonymous::StoreUnavailable => "store_unavailable",
        }
    }
}

impl std::fmt::Display for Anonymous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of resolving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    User(Arc<User>),
    Anonymous(Anonymous),
}

impl Identity {
    pub fn user(&self) -> Option<&User> {
        match self {
            Identity::User(u) => Some(u),
            Identity::Anonymous(_) => None,
        }
    }
}

/// A converted primary key, ready to bind as a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pk {
    Int(i64),
    Uuid(u128),
}

impl Pk {
    /// How Django writes the pk into `_auth_user_id` and how the browser sees it.
    pub fn to_id_string(self) -> String {
        match self {
            Pk::Int(i) => i.to_string(),
            Pk::Uuid(u) => uuid::Uuid::from_u128(u).hyphenated().to_string(),
        }
    }
}

/// A user row as the stores load it. Optional columns default as Django's attributes do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
}

/// What a session claims, after the checks that need no user row.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub pk: Pk,
    /// Whether the claimed backend checks `is_active`.
    pub check_active: bool,
    /// `_auth_user_hash`, as `force_bytes` would see it (`None` when falsy).
    hash: Option<HashClaim>,
}

#[derive(Debug, Clone, PartialEq)]
enum HashClaim {
    /// Comparable text (a str, or an int's decimal form as `str(int)` gives it).
    Text(String),
    /// Truthy but can never equal a hex digest (a list, a lone surrogate, ...).
    Never,
}

/// The auth settings `get_user` reads, with the hash keys derived once.
#[derive(Clone)]
pub struct AuthPolicy {
    backends: Vec<String>,
    check_is_active: bool,
    pk_type: PkType,
    /// SHA256(salt ‖ secret) for SECRET_KEY then each fallback.
    hash_keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("backends", &self.backends)
            .field("check_is_active", &self.check_is_active)
            .field("pk_type", &self.pk_type)
            .finish_non_exhaustive()
    }
}

impl AuthPolicy {
    pub fn new(
        backends: Vec<String>,
        check_is_active: bool,
        pk_type: PkType,
        secret: &Secret,
        fallbacks: &[Secret],
    ) -> Self {
        let hash_keys = std::iter::once(secret)
            .chain(fallbacks)
            .map(|k| {
                let mut h = Sha256::new();
                h.update(AUTH_HASH_SALT.as_bytes());
                h.update(k.expose().as_bytes());
                HmacSha256::new_from_slice(&h.finalize()).expect("HMAC takes any key length")
            })
            .collect();
        AuthPolicy { backends, check_is_active, pk_type, hash_keys }
    }

    pub fn pk_type(&self) -> PkType {
        self.pk_type
    }

    /// The first half of `get_user`: everything that needs no user row. `Err` is the
    /// anonymous reason; a decoded session that is not an object is `Corrupt`.
    pub fn claims(&self, session: &Value) -> Result<Claims, Anonymous> {
        let obj = session.as_object().ok_or(Anonymous::Corrupt)?;
        let raw_id = pyjson::get(obj, SESSION_KEY).ok_or(Anonymous::NoUserId)?;
        let pk = match self.pk_type {
            PkType::Int => py_int_pk(raw_id),
            PkType::Uuid => py_uuid_pk(raw_id),
        }?;
        let backend = pyjson::get(obj, BACKEND_SESSION_KEY).ok_or(Anonymous::NoBackend)?;
        let backend = backend.as_str().ok_or(Anonymous::BackendNotAllowed)?;
        if !self.backends.iter().any(|b| b == backend) {
            return Err(Anonymous::BackendNotAllowed);
        }
        // `pk=None` finds no row in Django.
        let pk = pk.ok_or(Anonymous::NoSuchUser)?;
        let hash = match pyjson::get(obj, HASH_SESSION_KEY) {
            Some(v) if v.is_truthy() => Some(match v {
                Value::Str(PyStr { text, lone_surrogate: false }) => HashClaim::Text(text.clone()),
                Value::Int(digits) => HashClaim::Text(digits.clone()),
                _ => HashClaim::Never,
            }),
            _ => None,
        };
        let check_active = self.check_is_active && !ALLOW_INACTIVE_BACKENDS.contains(&backend);
        Ok(Claims { pk, check_active, hash })
    }

    /// The second half of `get_user`, given the row the store found for `claims.pk`.
    pub fn verify(&self, claims: &Claims, row: Option<UserRow>) -> Identity {
        let Some(row) = row else {
            return Identity::Anonymous(Anonymous::NoSuchUser);
        };
        if claims.check_active && !row.is_active {
            return Identity::Anonymous(Anonymous::Inactive);
        }
        let claimed = match &claims.hash {
            None => return Identity::Anonymous(Anonymous::NoHash),
            Some(HashClaim::Never) => return Identity::Anonymous(Anonymous::HashMismatch),
            Some(HashClaim::Text(t)) => t,
        };
        // SECRET_KEY first, then the fallbacks (Django then cycles the key; we accept).
        let ok = self.hash_keys.iter().any(|k| constant_time_eq(claimed.as_bytes(), &auth_hash(k, &row.password)));
        if !ok {
            return Identity::Anonymous(Anonymous::HashMismatch);
        }
        Identity::User(Arc::new(User {
            id: row.id,
            username: row.username,
            is_staff: row.is_staff,
            is_superuser: row.is_superuser,
        }))
    }
}

/// `salted_hmac(AUTH_HASH_SALT, password, secret, "sha256").hexdigest()`, as ASCII bytes.
fn auth_hash(key: &HmacSha256, password: &str) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut mac = key.clone();
    mac.update(password.as_bytes());
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(mac.finalize().into_bytes()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

/// Python's `str.strip()` whitespace.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `IntegerField.to_python`: `int(value)`. `Ok(None)` for JSON null and for an integer
/// outside i64: no row can match (PostgreSQL finds none; Django 5 returns none).
fn py_int_pk(v: &Value) -> Result<Option<Pk>, Anonymous> {
    // Out of the column's range: no row can match, so no query is needed.
    let big = |digits: &str| -> Result<Option<Pk>, Anonymous> { Ok(digits.parse::<i64>().ok().map(Pk::Int)) };
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(Pk::Int(*b as i64))),
        Value::Int(d) => big(d),
        Value::Float(f) if f.is_finite() => {
            let t = f.trunc();
            Ok((t.abs() < 9.2e18).then_some(Pk::Int(t as i64)))
        }
        Value::Str(s) => {
            let text = s.as_str().ok_or(Anonymous::InvalidUserId)?;
            let digits = py_int_text(text).ok_or(Anonymous::InvalidUserId)?;
            big(&digits)
        }
        _ => Err(Anonymous::InvalidUserId),
    }
}

/// `int(text)` in base 10 as canonical digits: surrounding whitespace, a sign, single
/// underscores between digits. (Non-ASCII decimal digits, which Python also takes, are
/// refused: Django never writes them.)
fn py_int_text(text: &str) -> Option<String> {
    let t = text.trim_matches(py_space);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    if !body.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    let digits = digits.trim_start_matches('0');
    Some(match (neg, digits.is_empty()) {
        (_, true) => "0".to_owned(),
        (true, false) => format!("-{digits}"),
        (false, false) => digits.to_owned(),
    })
}

/// `UUIDField.to_python`: a str goes through `uuid.UUID(hex=...)` (drops `urn:`, `uuid:`,
/// surrounding braces and hyphens, then 32 hex digits); an int through `uuid.UUID(int=...)`.
fn py_uuid_pk(v: &Value) -> Result<Option<Pk>, Anonymous> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(Pk::Uuid(*b as u128))),
        Value::Int(d) => d.parse::<u128>().map(|u| Some(Pk::Uuid(u))).map_err(|_| Anonymous::InvalidUserId),
        Value::Str(s) => {
            let t = s.as_str().ok_or(Anonymous::InvalidUserId)?;
            let t = t.replace("urn:", "").replace("uuid:", "");
            let t = t.trim_matches(|c| c == '{' || c == '}').replace('-', "");
            if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Anonymous::InvalidUserId);
            }
            u128::from_str_radix(&t, 16).map(|u| Some(Pk::Uuid(u))).map_err(|_| Anonymous::InvalidUserId)
        }
        _ => Err(Anonymous::InvalidUserId),
    }
}

#[cfg(test)]
mod tests;
