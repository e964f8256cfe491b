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
        let pk_param = match settings.users.pk_type {
            PkType::Int => "$1::int8",
            PkType::Uuid => "CAST($1::text AS uuid)",
        };
        let user_sql = format!(
            "SELECT {} FROM {} WHERE {} = {pk_param}",
            user_select_list(&settings.users, "::text", "::bool"),
            settings.users.table.quoted(),
            settings.users.pk.quoted()
        );
        Ok(PgStore {
            config,
            in_flight: tokio::sync::Semaphore::new(
                settings.pool_size.max(1) * MAX_PIPELINED_PER_CONNECTION,
            ),
            slots: (0..settings.pool_size.max(1))
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
            session_sql,
            user_sql,
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
        Ok(Conn {
            client,
            session,
            user,
            driver,
        })
    }

    /// One query, bounded by the timeout. A connection found dead (the database restarted,
    /// an admin killed it) is dropped and the query retried once on a fresh one.
    async fn query_opt(
        &self,
        user: bool,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let _permit = tokio::time::timeout(self.timeout, self.in_flight.acquire())
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
            .map_err(|e| StoreError::Worker(e.to_string()))?;
        let mut attempt = 0;
        loop {
            let (i, c) = self.conn().await?;
            let stmt = if user { &c.user } else { &c.session };
            self.counter.bump();
            let r = match tokio::time::timeout(self.timeout, c.client.query_opt(stmt, params)).await
            {
                Err(_) => Err(StoreError::Timeout(self.timeout)),
                Ok(r) => r.map_err(StoreError::from),
            };
            match r {
                Err(StoreError::Postgres(ref e))
                    if attempt == 0 && (e.is_closed() || c.client.is_closed()) =>
                {
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

    pub async fn load_session(
        &self,
        key: &str,
        now: SystemTime,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = self.query_opt(false, &[&key, &now]).await?;
        Ok(row.map(|r| SessionRow {
            session_data: r.get(0),
            expires_at: r.get::<_, Option<f64>>(1).unwrap_or(0.0),
            live: r.get::<_, Option<bool>>(2).unwrap_or(false),
        }))
    }

    pub async fn load_user(&self, pk: Pk) -> Result<Option<UserRow>, StoreError> {
        let row = match pk {
            Pk::Int(i) => self.query_opt(true, &[&i]).await?,
            Pk::Uuid(u) => self.query_opt(true, &[&Pk::Uuid(u).to_id_string()]).await?,
        };
        Ok(row.map(|r| UserRow {
            id: r.get::<_, Option<String>>(0).unwrap_or_default(),
            username: r.get::<_, Option<String>>(1).unwrap_or_default(),
            password: r.get::<_, Option<String>>(2).unwrap_or_default(),
            is_active: r.get::<_, Option<bool>>(3).unwrap_or(false),
            is_staff: r.get::<_, Option<bool>>(4).unwrap_or(false),
            is_superuser: r.get::<_, Option<bool>>(5).unwrap_or(false),
        }))
    }
}
