//! Connections to the outbox database. The query side is a few shared clients, handed out
//! round-robin (a tokio-postgres client pipelines concurrent queries, and every query here
//! is one autocommit statement, so sharing is safe); a slot whose connection died is
//! reconnected by the next caller. The LISTEN connection is not from here: the listener
//! opens its own with [`connect`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use super::OutboxError;

/// Query connections per node for origins, replays and pruning (few and short); publishes
/// have a connection of their own (`commit`).
pub const QUERY_CONNECTIONS: usize = 2;
/// Longest a connect may take before the database counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one query may take (a publish waits for the numbering lock, so not too short).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The raw connection type `connect` returns.
pub type RawConnection = Connection<Socket, tokio_postgres::tls::NoTlsStream>;

/// The shared query clients.
pub struct Db {
    config: Config,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    live: Mutex<Option<Arc<Live>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// One open query connection; derefs to its client.
pub struct Live {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for Live {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("connections", &self.slots.len()).finish_non_exhaustive()
    }
}

/// Opens a connection with the broker's timeouts and keepalives; the caller drives it.
pub async fn connect(config: &Config) -> Result<(Client, RawConnection), OutboxError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(OutboxError::Timeout(CONNECT_TIMEOUT)),
    }
}

/// `config` with what every broker connection sets: keepalives (a cut network is noticed),
/// the connect timeout, and an application name that shows in `pg_stat_activity`.
pub fn tuned(mut config: Config, role: &str) -> Config {
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .application_name(format!("switchyard {role}"));
    config
}

impl Db {
    /// `connections` clients over `config`, named `role` in `pg_stat_activity`; they open
    /// on first use.
    pub fn new(config: Config, connections: usize, role: &str) -> Self {
        let slots = (0..connections.max(1)).map(|_| Slot::default()).collect();
        Self { config: tuned(config, role), slots, next: AtomicUsize::new(0) }
    }

    /// A live client, reconnecting its slot when the last one died.
    pub async fn client(&self) -> Result<Arc<Live>, OutboxError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(client) = slot.alive() {
            return Ok(client);
        }
        let _one_at_a_time = slot.connecting.lock().await;
        if let Some(client) = slot.alive() {
            return Ok(client);
        }
        let (client, connection) = connect(&self.config).await?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "outbox query connection ended");
            }
        });
        let live = Arc::new(Live { client, driver });
        *slot.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
        Ok(live)
    }
}

impl Slot {
    fn alive(&self) -> Option<Arc<Live>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.as_ref().filter(|l| !l.client.is_closed()).cloned()
    }
}

/// Runs `query` within [`QUERY_TIMEOUT`].
pub async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, OutboxError> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(OutboxError::Timeout(QUERY_TIMEOUT)),
    }
}
