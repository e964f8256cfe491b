//! Where sessions and users are read from: Django's session table and user table on
//! SQLite or PostgreSQL (django-session-format.md §4), or, for `signed_cookies`, the cookie
//! itself. This module owns the SQL (parameterised; names from config validated and
//! quoted) and the connections; it decides nothing about who is logged in.
//!
//! The first resolution of a session key costs two queries: the session row, then the
//! user row by pk (on SQLite, in one read transaction on one blocking thread). They cannot
//! be one join: the user id lives inside the signed, usually zlib-compressed session blob,
//! which the database cannot read. Once a key has been seen, its pk is remembered, and
//! later resolutions (after the cache TTL, invalidation, revalidation) are one query
//! joining the session row to that user row; the pk the decoded session claims is checked
//! against the guess, and a wrong guess costs the second query.

pub mod postgres;
pub mod signed_cookies;
pub mod sqlite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::auth::{Pk, UserRow};
pub use crate::config::{BadIdent, Ident, StoreSettings, UserTable};

/// A session row as loaded: the signed blob and when the row expires.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub session_data: String,
    /// `expire_date` as Unix seconds.
    pub expires_at: f64,
    /// `expire_date > now`, compared the way Django's own query compares it.
    pub live: bool,
}

/// The database could not answer. Distinct from a session that fails a check: this is
/// Django's database (ours to report, not the browser's fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("database worker failed: {0}")]
    Worker(String),
}

/// The database a bridge reads.
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(Box<postgres::PgStore>),
}

impl Store {
    /// The session row for `key`, `None` when there is none. `key` has been shape-checked.
    pub async fn load_session(&self, key: &str, now: SystemTime) -> Result<Option<SessionRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load_session(key, now).await,
            Store::Postgres(s) => s.load_session(key, now).await,
        }
    }

    /// The session row for `key` and, in the same query, the user row with primary key
    /// `pk` (a guess from an earlier resolution). `None` when there is no session row.
    pub async fn load_session_with_user(
        &self,
        key: &str,
        now: SystemTime,
        pk: Pk,
    ) -> Result<Option<(SessionRow, Option<UserRow>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load_session_with_user(key, now, pk).await,
            Store::Postgres(s) => s.load_session_with_user(key, now, pk).await,
        }
    }

    /// The session row for `key` (`None` when there is none), then the user row whose pk
    /// `claim` reads from it (`None` when there is none, or when `claim` names no pk).
    /// `claim` may run on a blocking thread, between the two queries.
    pub async fn load_session_then_user<T: Send + 'static>(
        &self,
        key: &str,
        now: SystemTime,
        claim: impl FnOnce(&SessionRow) -> (T, Option<Pk>) + Send + 'static,
    ) -> Result<Option<(SessionRow, T, Option<UserRow>)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load_session_then_user(key, now, claim).await,
            Store::Postgres(s) => {
                let Some(row) = s.load_session(key, now).await? else {
                    return Ok(None);
                };
                let (t, pk) = claim(&row);
                let user = match pk {
                    Some(pk) => s.load_user(pk).await?,
                    None => None,
                };
                Ok(Some((row, t, user)))
            }
        }
    }

    /// The user row with primary key `pk`, `None` when there is none.
    pub async fn load_user(&self, pk: Pk) -> Result<Option<UserRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load_user(pk).await,
            Store::Postgres(s) => s.load_user(pk).await,
        }
    }

    /// How many queries this store has sent (tests and metrics).
    pub fn queries(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.counter.get(),
            Store::Postgres(s) => s.counter.get(),
        }
    }
}

/// Counts queries sent.
#[derive(Debug, Default)]
pub struct QueryCounter(AtomicU64);

impl QueryCounter {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The user query's select list, shared by both databases: optional columns become
/// constants with Django's attribute defaults.
/// `alias` qualifies the columns ("u." in the joined query, "" alone).
fn user_select_list(u: &UserTable, alias: &str, cast_text: &str, cast_bool: &str) -> String {
    let opt = |c: &Option<Ident>, default: &str| match c {
        Some(c) => format!("{alias}{}{cast_bool}", c.quoted()),
        None => default.to_owned(),
    };
    format!(
        "{alias}{pk}{cast_text}, {alias}{un}{cast_text}, {alias}{pw}{cast_text}, {a}, {s}, {su}",
        pk = u.pk.quoted(),
        un = u.username.quoted(),
        pw = u.password.quoted(),
        a = opt(&u.is_active, if cast_bool.is_empty() { "1" } else { "true" }),
        s = opt(&u.is_staff, if cast_bool.is_empty() { "0" } else { "false" }),
        su = opt(&u.is_superuser, if cast_bool.is_empty() { "0" } else { "false" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert_eq!(Ident::new("auth_user").unwrap().quoted(), "\"auth_user\"");
        assert_eq!(Ident::new("app.users").unwrap().quoted(), "\"app\".\"users\"");
        for bad in ["", "a b", "x\"; drop table y", "1abc", "a.b.c", "a-b"] {
            assert!(Ident::new(bad).is_err(), "{bad}");
        }
    }
}
