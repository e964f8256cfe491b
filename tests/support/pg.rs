//! PostgreSQL for tests: an empty database of the test's own on the harness's cluster
//! (`SWITCHYARD_TEST_PG`, which `scripts/test` starts), and a whole cluster of the test's
//! own for tests that stop or restart PostgreSQL (so they never disturb other tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

use super::repo_root;

/// The harness cluster's URL, or a failure that says how to get one. Never a silent pass.
pub fn cluster_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_PG is not set: run scripts/test, or \
             `eval \"$(scripts/session-fixtures)\"` (it starts a cluster) and then cargo test"
        )
    })
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (server, rest) = url.rsplit_once('/').expect("a database URL ends in /NAME");
    let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{server}/{name}{query}")
}

/// Connects to `url`; the connection is driven on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("PostgreSQL answers");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// An empty database of the test's own, dropped (`WITH (FORCE)`) when this goes.
pub struct FreshDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    admin: String,
}

impl FreshDatabase {
    /// A new database on the cluster at `cluster` (a URL naming any database on it).
    pub async fn on(cluster: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("sy_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let admin = with_database(cluster, "postgres");
        connect(&admin).await.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("CREATE DATABASE");
        FreshDatabase { url: with_database(cluster, &name), name, admin }
    }

    /// A new database on the harness cluster.
    pub async fn new() -> Self {
        Self::on(&cluster_url()).await
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (admin, sql) = (self.admin.clone(), format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
        // Drop may run inside the test's runtime, which cannot block: a thread of its own
        // with its own runtime runs the query, and Drop waits for it.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&sql).await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A PostgreSQL cluster of the test's own (scripts/pg-cluster), stopped and removed on drop.
pub struct OwnCluster {
    /// A URL of its `postgres` database.
    pub url: String,
    dir: PathBuf,
}

impl OwnCluster {
    /// Starts one in a fresh folder under /tmp (which the `postgres` user can enter).
    pub fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/switchyard-pg-own-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let out = pg_cluster(&["start"], &dir);
        let url = String::from_utf8(out).unwrap().trim().to_string();
        OwnCluster { url, dir }
    }

    /// Stops PostgreSQL (fast shutdown: every connection is cut), keeping its data.
    pub fn halt(&self) {
        pg_cluster(&["halt"], &self.dir);
    }

    /// Starts it again where it was, at the same address.
    pub fn resume(&self) {
        pg_cluster(&["resume"], &self.dir);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        pg_cluster(&["stop"], &self.dir);
    }
}

fn pg_cluster(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new(repo_root().join("scripts/pg-cluster"))
        .args(args)
        .arg(dir)
        .output()
        .expect("scripts/pg-cluster runs");
    assert!(out.status.success(), "pg-cluster {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
