//! Django's SQLite database, read-only, the file Django itself writes.
//!
//! rusqlite is blocking, so every query runs in `spawn_blocking` on one of a small bounded
//! set of read-only connections (`busy_timeout` so a Django write in progress delays us
//! instead of failing us). Django stores `expire_date` as text, `str(datetime)` of naive
//! UTC (`2026-11-26 10:00:00.123456`, no fraction when it is zero) and compares it as
//! text with `now` in the same form; we send the same comparison.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use super::{user_select_list, QueryCounter, SessionRow, StoreError, StoreSettings};
use crate::django::auth::{Pk, PkType, UserRow};

pub struct SqliteStore {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Semaphore,
    session_sql: Arc<str>,
    user_sql: Arc<str>,
    joined_sql: Arc<str>,
    pk_type: PkType,
    timeout: Duration,
    pub(super) counter: QueryCounter,
}

impl SqliteStore {
    /// Prepare to read the database at `path` (taken literally). Connections open lazily,
    /// so a missing file is a store error at query time, not a start-up failure.
    pub fn new(path: PathBuf, settings: &StoreSettings) -> Self {
        let session_sql = format!(
            "SELECT session_data, expire_date, expire_date > ?2 FROM {} WHERE session_key = ?1",
            settings.session_table.quoted()
        );
        let user_sql = format!(
            "SELECT {} FROM {} WHERE {} = ?1",
            user_select_list(&settings.users, "", "", ""),
            settings.users.table.quoted(),
            settings.users.pk.quoted()
        );
        let joined_sql = format!(
            "SELECT s.session_data, s.expire_date, s.expire_date > ?2, {} FROM {} s \
             LEFT JOIN {} u ON u.{} = ?3 WHERE s.session_key = ?1",
            user_select_list(&settings.users, "u.", "", ""),
            settings.session_table.quoted(),
            settings.users.table.quoted(),
            settings.users.pk.quoted()
        );
        SqliteStore {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Semaphore::new(settings.pool_size.max(1)),
            session_sql: session_sql.into(),
            user_sql: user_sql.into(),
            joined_sql: joined_sql.into(),
            pk_type: settings.users.pk_type,
            timeout: settings.query_timeout,
            counter: QueryCounter::default(),
        }
    }

    /// Run `f` on a pooled connection in the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self.permits.acquire().await.map_err(|e| StoreError::Worker(e.to_string()))?;
        self.counter.bump();
        let idle = self.idle.clone();
        let path = self.path.clone();
        let timeout = self.timeout;
        let job = tokio::task::spawn_blocking(move || {
            let conn = match idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                Some(c) => c,
                None => open(&path, timeout)?,
            };
            let out = f(&conn);
            // A connection that failed may be stale (file replaced): do not reuse it.
            if out.is_ok() {
                idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            }
            out
        });
        match tokio::time::timeout(self.timeout + Duration::from_millis(500), job).await {
            Err(_) => Err(StoreError::Timeout(self.timeout)),
            Ok(Err(join)) => Err(StoreError::Worker(join.to_string())),
            Ok(Ok(r)) => r.map_err(StoreError::from),
        }
    }

    pub async fn load_session(&self, key: &str, now: SystemTime) -> Result<Option<SessionRow>, StoreError> {
        let sql = self.session_sql.clone();
        let key = key.to_owned();
        let now = python_datetime_str(now);
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_row(rusqlite::params![key, now], session_row).optional()
        })
        .await
    }

    /// The session row, then the user row whose pk `claim` reads from it: one hand-off to
    /// the blocking pool and one read transaction (one shared lock, one look at the file's
    /// header, both rows from the same snapshot) instead of two of each.
    pub async fn load_session_then_user<T: Send + 'static>(
        &self,
        key: &str,
        now: SystemTime,
        claim: impl FnOnce(&SessionRow) -> (T, Option<Pk>) + Send + 'static,
    ) -> Result<Option<(SessionRow, T, Option<UserRow>)>, StoreError> {
        let (session_sql, user_sql) = (self.session_sql.clone(), self.user_sql.clone());
        let pk_type = self.pk_type;
        let key = key.to_owned();
        let now = python_datetime_str(now);
        let read = self
            .with_conn(move |c| {
                let txn = c.unchecked_transaction()?;
                let mut stmt = c.prepare_cached(&session_sql)?;
                let Some(row) = stmt.query_row(rusqlite::params![key, now], session_row).optional()? else {
                    return Ok(None);
                };
                let (t, pk) = claim(&row);
                let user = match pk {
                    None => None,
                    Some(pk) => {
                        let mut stmt = c.prepare_cached(&user_sql)?;
                        Some(stmt.query_row([pk_param(pk)], |r| user_row(r, 0, pk_type)).optional()?.flatten())
                    }
                };
                txn.commit()?;
                Ok(Some((row, t, user)))
            })
            .await?;
        Ok(read.map(|(row, t, user)| {
            if user.is_some() {
                self.counter.bump();
            }
            (row, t, user.flatten())
        }))
    }

    pub async fn load_user(&self, pk: Pk) -> Result<Option<UserRow>, StoreError> {
        let sql = self.user_sql.clone();
        let pk_type = self.pk_type;
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_row([pk_param(pk)], |r| user_row(r, 0, pk_type)).optional().map(Option::flatten)
        })
        .await
    }

    pub async fn load_session_with_user(
        &self,
        key: &str,
        now: SystemTime,
        pk: Pk,
    ) -> Result<Option<(SessionRow, Option<UserRow>)>, StoreError> {
        let sql = self.joined_sql.clone();
        let pk_type = self.pk_type;
        let key = key.to_owned();
        let now = python_datetime_str(now);
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            stmt.query_row(rusqlite::params![key, now, pk_param(pk)], |r| {
                Ok((session_row(r)?, user_row(r, 3, pk_type)?))
            })
            .optional()
        })
        .await
    }
}

fn pk_param(pk: Pk) -> rusqlite::types::Value {
    match pk {
        Pk::Int(i) => i.into(),
        // Django keeps UUIDs in SQLite as 32 hex digits, no hyphens.
        Pk::Uuid(u) => format!("{u:032x}").into(),
    }
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    let expires = match r.get_ref(1)? {
        ValueRef::Text(t) => parse_django_datetime(&String::from_utf8_lossy(t)).unwrap_or(0.0),
        _ => 0.0,
    };
    let live: Option<bool> = r.get(2)?;
    Ok(SessionRow { session_data: r.get(0)?, expires_at: expires, live: live.unwrap_or(false) })
}

/// The user columns starting at `at`; `None` when the pk is NULL (no row joined).
fn user_row(r: &rusqlite::Row<'_>, at: usize, pk_type: PkType) -> rusqlite::Result<Option<UserRow>> {
    if matches!(r.get_ref(at)?, ValueRef::Null) {
        return Ok(None);
    }
    Ok(Some(UserRow {
        id: id_text(r.get_ref(at)?, pk_type),
        username: text(r.get_ref(at + 1)?),
        password: text(r.get_ref(at + 2)?),
        is_active: truthy(r.get_ref(at + 3)?),
        is_staff: truthy(r.get_ref(at + 4)?),
        is_superuser: truthy(r.get_ref(at + 5)?),
    }))
}

fn open(path: &std::path::Path, timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(timeout)?;
    conn.set_prepared_statement_cache_capacity(4);
    Ok(conn)
}

fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

fn id_text(v: ValueRef<'_>, pk_type: PkType) -> String {
    let t = text(v);
    match (pk_type, u128::from_str_radix(&t, 16)) {
        (PkType::Uuid, Ok(u)) if t.len() == 32 => Pk::Uuid(u).to_id_string(),
        _ => t,
    }
}

fn truthy(v: ValueRef<'_>) -> bool {
    match v {
        ValueRef::Integer(i) => i != 0,
        ValueRef::Real(f) => f != 0.0,
        ValueRef::Text(t) | ValueRef::Blob(t) => !t.is_empty() && t != b"0",
        ValueRef::Null => false,
    }
}

// === time in Django's SQLite text form ===

/// `str(datetime)` of `t` as naive UTC: `YYYY-MM-DD HH:MM:SS[.ffffff]`.
pub fn python_datetime_str(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    let mut text = String::with_capacity(26);
    let _ = write!(text, "{y:04}-{m:02}-{dd:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
    if micros != 0 {
        let _ = write!(text, ".{micros:06}");
    }
    text
}

/// Parse Django's stored text back to Unix seconds (for cache lifetimes only; the
/// expiry decision itself is the SQL comparison).
pub fn parse_django_datetime(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 19 {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut frac = 0.0;
    if let Some(f) = s.get(19..).and_then(|r| r.strip_prefix('.')) {
        let digits: String = f.chars().take_while(|c| c.is_ascii_digit()).collect();
        frac = format!("0.{digits}").parse().unwrap_or(0.0);
    }
    Some((days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_text_matches_python_str() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(python_datetime_str(t), "2023-11-14 22:13:20");
        assert_eq!(python_datetime_str(t + Duration::from_micros(5)), "2023-11-14 22:13:20.000005");
        assert_eq!(parse_django_datetime("2023-11-14 22:13:20.5"), Some(1_700_000_000.5));
        assert_eq!(parse_django_datetime("2000-02-29 00:00:00"), Some(951_782_400.0));
    }
}
