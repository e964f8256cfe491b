//! Django's PostgreSQL database, through a small pool of tokio-postgres clients.
//!
//! A tokio-postgres client pipelines concurrent queries, so the pool hands out shared
//! clients round-robin instead of checking them out. A slot whose connection died is
//! reconnected by the next query that lands on it (one reconnect at a time per slot,
//! bounded by the query timeout), so the pool heals by itself after a database restart.
//! Statements are prepared once per connection. No TLS yet: `sslmode` other than
//! `disable`/`prefer` is refused at start-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{user_select_list, QueryCounter, SessionRow, StoreError, StoreSettings};
use crate::django::auth::{Pk, PkType, UserRow};

/// Queries one pooled connection may have pipelined at once. Bounds what a flood of
/// distinct unknown keys can put on the database: past it, loads wait (within the
/// query timeout) instead of piling up in PostgreSQL.
const MAX_PIPELINED_PER_CONNECTION: usize = 16;

pub struct PgStore {
    config: tokio_postgres::Config,
    in_flight: tokio::sync::Semaphore,
    slots: Vec<Slot>,
    next: AtomicUsize,
    session_sql: String,
    user_sql: String,
    joined_sql: String,
    timeout: Duration,
    pub(super) counter: QueryCounter,
}

#[derive(Default)]
struct Slot {
    live: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
}

struct Conn {
    client: Client,
    session: Statement,
    user: Statement,
    joined: Statement,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The database URL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PgConfigError {
    #[error("invalid PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("sslmode=require is not supported yet (no TLS to the session database)")]
    TlsRequired,
}

impl PgStore {
    /// Parse `url` and prepare the pool; connections open on first use.
    pub fn new(url: &str, settings: &StoreSettings) -> Result<Self, PgConfigError> {
        let config: tokio_postgres::Config = url.parse().map_err(PgConfigError::Url)?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(PgConfigError::TlsRequired);
        }
        let session_sql = format!(
            "SELECT session_data::text, extract(epoch from expire_date)::float8, expire_date > $2 FROM {} WHERE session_key = $1",
            settings.session_table.quoted()
        );
        let pk_param = |n: u8| match settings.users.pk_type {
            PkType::Int => format!("${n}::int8"),
            PkType::Uuid => format!("CAST(${n}::text AS uuid)"),
        };
        let user_sql = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            user_select_list(&settings.users, "", "::text", "::bool"),
            settings.users.table.quoted(),
            settings.users.pk.quoted(),
            pk_param(1)
        );
        let joined_sql = format!(
            "SELECT s.session_data::text, extract(epoch from s.expire_date)::float8, s.expire_date > $2, {} \
             FROM {} s LEFT JOIN {} u ON u.{} = {} WHERE s.session_key = $1",
            user_select_list(&settings.users, "u.", "::text", "::bool"),
            settings.session_table.quoted(),
            settings.users.table.quoted(),
            settings.users.pk.quoted(),
            pk_param(3)
        );
        Ok(PgStore {
            config,
            in_flight: tokio::sync::Semaphore::new(settings.pool_size.max(1) * MAX_PIPELINED_PER_CONNECTION),
            slots: (0..settings.pool_size.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            session_sql,
            user_sql,
            joined_sql,
            timeout: settings.query_timeout,
            counter: QueryCounter::default(),
        })
    }

    async fn conn(&self) -> Result<(usize, Arc<Conn>), StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slot_conn(i).await.map(|c| (i, c))
    }

    async fn slot_conn(&self, i: usize) -> Result<Arc<Conn>, StoreError> {
        let slot = &self.slots[i];
        if let Some(c) = slot.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if !c.client.is_closed() {
                return Ok(c.clone());
            }
        }
        let _one_at_a_time = slot.connecting.lock().await;
        if let Some(c) = slot.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if !c.client.is_closed() {
                return Ok(c.clone());
            }
        }
        let fresh = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        let fresh = Arc::new(fresh);
        *slot.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "session database connection ended");
            }
        });
        let session = client.prepare(&self.session_sql).await?;
        let user = client.prepare(&self.user_sql).await?;
        let joined = client.prepare(&self.joined_sql).await?;
        Ok(Conn { client, session, user, joined, driver })
    }

    /// One query, bounded by the timeout. A connection found dead (the database restarted,
    /// an admin killed it) is dropped and the query retried once on a fresh one.
    async fn query_opt(&self, which: Query, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, StoreError> {
        let _permit = tokio::time::timeout(self.timeout, self.in_flight.acquire())
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
            .map_err(|e| StoreError::Worker(e.to_string()))?;
        let mut attempt = 0;
        loop {
            let (i, c) = self.conn().await?;
            let stmt = match which {
                Query::Session => &c.session,
                Query::User => &c.user,
                Query::Joined => &c.joined,
            };
            self.counter.bump();
            let r = match tokio::time::timeout(self.timeout, c.client.query_opt(stmt, params)).await {
                Err(_) => Err(StoreError::Timeout(self.timeout)),
                Ok(r) => r.map_err(StoreError::from),
            };
            match r {
                Err(StoreError::Postgres(ref e)) if attempt == 0 && (e.is_closed() || c.client.is_closed()) => {
                    let mut live = self.slots[i].live.lock().unwrap_or_else(|p| p.into_inner());
                    if live.as_ref().is_some_and(|l| Arc::ptr_eq(l, &c)) {
                        *live = None;
                    }
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    pub async fn load_session(&self, key: &str, now: SystemTime) -> Result<Option<SessionRow>, StoreError> {
        let row = self.query_opt(Query::Session, &[&key, &now]).await?;
        Ok(row.map(|r| session_row(&r)))
    }

    pub async fn load_session_with_user(
        &self,
        key: &str,
        now: SystemTime,
        pk: Pk,
    ) -> Result<Option<(SessionRow, Option<UserRow>)>, StoreError> {
        let row = match pk {
            Pk::Int(i) => self.query_opt(Query::Joined, &[&key, &now, &i]).await?,
            Pk::Uuid(_) => {
                let id = pk.to_id_string();
                self.query_opt(Query::Joined, &[&key, &now, &id]).await?
            }
        };
        Ok(row.map(|r| (session_row(&r), user_row(&r, 3))))
    }

    pub async fn load_user(&self, pk: Pk) -> Result<Option<UserRow>, StoreError> {
        let row = match pk {
            Pk::Int(i) => self.query_opt(Query::User, &[&i]).await?,
            Pk::Uuid(u) => self.query_opt(Query::User, &[&Pk::Uuid(u).to_id_string()]).await?,
        };
        Ok(row.and_then(|r| user_row(&r, 0)))
    }
}

/// The prepared statements of a connection.
#[derive(Clone, Copy)]
enum Query {
    Session,
    User,
    Joined,
}

/// A column as `T`, `None` when NULL or (never, given the casts in the SQL) of another type.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Option<T> {
    r.try_get::<_, Option<T>>(i).ok().flatten()
}

fn session_row(r: &Row) -> SessionRow {
    SessionRow {
        session_data: col::<String>(r, 0).unwrap_or_default(),
        expires_at: col::<f64>(r, 1).unwrap_or(0.0),
        live: col::<bool>(r, 2).unwrap_or(false),
    }
}

/// The user columns starting at `at`; `None` when the pk is NULL (no row joined).
fn user_row(r: &Row, at: usize) -> Option<UserRow> {
    let id = col::<String>(r, at)?;
    Some(UserRow {
        id,
        username: col::<String>(r, at + 1).unwrap_or_default(),
        password: col::<String>(r, at + 2).unwrap_or_default(),
        is_active: col::<bool>(r, at + 3).unwrap_or(false),
        is_staff: col::<bool>(r, at + 4).unwrap_or(false),
        is_superuser: col::<bool>(r, at + 5).unwrap_or(false),
    })
}
