//! The Django-made session fixtures (`scripts/session-fixtures`): where they are, a
//! `SessionBridge` configured the way each fixture's Django project was, and a private
//! PostgreSQL database for a test that must disturb one.
//!
//! Time: each case records when Django gave its verdict (`at`). A verdict may depend on
//! the clock (an expired row, a cookie an hour from its max age), so a bridge that checks
//! a case reads "now" from a clock set to that case's `at` ([`bridge_at`],
//! [`Case::clock`]): the fixtures give the same answers however long ago they were made.
//! Tests that cannot set the clock (the `whois` binary) use only cases valid for weeks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use switchyard::config::Secret;
use switchyard::django::{
    BridgeSettings, CacheSettings, Clock, Database, Engine, Ident, PkType, SessionBridge, StoreErrorPolicy,
    StoreSettings, UserTable,
};

pub const VERSIONS: [&str; 3] = ["django42", "django52", "django6"];
pub const SCENARIOS: [&str; 4] = ["standard", "signed", "custom", "bigint"];

/// The fixture root, or a failure that says how to make it. Never a silent pass.
pub fn root() -> PathBuf {
    let dir = std::env::var_os("SWITCHYARD_SESSION_FIXTURES").unwrap_or_else(|| {
        panic!(
            "SWITCHYARD_SESSION_FIXTURES is not set: run scripts/test, or \
             `eval \"$(scripts/session-fixtures)\"` and then cargo test"
        )
    });
    PathBuf::from(dir)
}

/// One `cases.json`.
#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub django: String,
    pub settings: FixtureSettings,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct FixtureSettings {
    pub secret_key: String,
    pub secret_key_fallbacks: Vec<String>,
    pub session_engine: String,
    pub database: String,
    pub session_cookie_name: String,
    pub session_cookie_age: u64,
    pub authentication_backends: Vec<String>,
    pub user_table: String,
    pub user_pk_type: String,
    pub user_username_column: String,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub cookie: String,
    /// Django's verdict: {"user": {...}} | {"anonymous": true} | {"error": "..."}.
    pub django: serde_json::Value,
    /// Our label of why an anonymous case is anonymous.
    pub reason: Option<String>,
    /// When Django gave its verdict, in Unix seconds.
    pub at: f64,
}

impl Case {
    /// A clock at the instant Django gave this case's verdict.
    pub fn clock(&self) -> Clock {
        Clock::at_unix_secs(self.at)
    }
}

impl Fixture {
    /// The case called `name`.
    pub fn case(&self, name: &str) -> &Case {
        self.cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no fixture case {name}"))
    }

    /// When the first verdict was given: a clock for checks that span several cases
    /// (each verdict holds for far longer than the seconds the fixture took to make).
    pub fn made_at(&self) -> Clock {
        let first = self.cases.iter().map(|c| c.at).fold(f64::INFINITY, f64::min);
        Clock::at_unix_secs(first)
    }
}

/// Reads `<root>/<version>/<db>/<scenario>/cases.json`, failing loudly when absent.
pub fn load(version: &str, db: &str, scenario: &str) -> Fixture {
    let path = root().join(version).join(db).join(scenario).join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; run scripts/session-fixtures (with PostgreSQL for the postgres fixtures)", path.display())
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Bridge settings equivalent to the fixture's Django settings, with `database` overridable.
pub fn settings(f: &FixtureSettings, database: Option<&Path>) -> BridgeSettings {
    let (username, pk_type) =
        (f.user_username_column.as_str(), if f.user_pk_type == "uuid" { PkType::Uuid } else { PkType::Int });
    BridgeSettings {
        secret_key: Secret::new(f.secret_key.clone()),
        secret_key_fallbacks: f.secret_key_fallbacks.iter().cloned().map(Secret::new).collect(),
        engine: match f.session_engine.as_str() {
            "signed_cookies" => Engine::SignedCookies,
            "cached_db" => Engine::CachedDb,
            _ => Engine::Db,
        },
        database: match database {
            Some(p) => Database::Sqlite(p.to_path_buf()),
            None => Database::parse(&f.database).expect("fixture database URL"),
        },
        session_cookie_name: f.session_cookie_name.clone(),
        session_cookie_age: Duration::from_secs(f.session_cookie_age),
        session_store_class: "SessionStore".into(),
        authentication_backends: f.authentication_backends.clone(),
        check_is_active: true,
        pushed_revocation: false,
        store: StoreSettings {
            session_table: Ident::new("django_session").unwrap(),
            users: UserTable {
                table: Ident::new(&f.user_table).unwrap(),
                pk: Ident::new("id").unwrap(),
                pk_type,
                username: Ident::new(username).unwrap(),
                password: Ident::new("password").unwrap(),
                is_active: Some(Ident::new("is_active").unwrap()),
                is_staff: Some(Ident::new("is_staff").unwrap()),
                is_superuser: Some(Ident::new("is_superuser").unwrap()),
            },
            pool_size: switchyard::django::DEFAULT_POOL_SIZE,
            query_timeout: switchyard::django::DEFAULT_QUERY_TIMEOUT,
        },
        cache: CacheSettings::default(),
        on_store_error: StoreErrorPolicy::Refuse,
    }
}

/// A bridge for the fixture's settings reading "now" from `clock`.
pub fn bridge_at(f: &FixtureSettings, clock: Clock) -> SessionBridge {
    SessionBridge::with_clock(settings(f, None), clock).expect("bridge builds")
}

// === a private PostgreSQL database ===

/// A database of the test's own, cloned from a fixture database's `_template` copy (which
/// no test connects to, so the clone never waits on other tests); dropped with
/// `WITH (FORCE)` when this goes. For tests that kill connections, rewrite rows or
/// otherwise disturb what concurrent tests read.
pub struct PrivateDatabase {
    /// The clone's URL: the fixture's URL with the database name replaced.
    pub url: String,
    name: String,
    admin: String,
}

impl PrivateDatabase {
    /// Clones the database behind `fixture_url` (a fixture's `settings.database`).
    pub async fn clone_of(fixture_url: &str) -> Self {
        let (server, source) = fixture_url.rsplit_once('/').expect("a database URL ends in /NAME");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{source}_own_{}_{n}", std::process::id());
        let admin = format!("{server}/postgres");
        let template = format!("{source}_template");
        admin_exec(&admin, &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")).await;
        PrivateDatabase { url: format!("{server}/{name}"), name, admin }
    }
}

impl Drop for PrivateDatabase {
    fn drop(&mut self) {
        let (admin, sql) = (self.admin.clone(), format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
        // Drop may run inside the test's runtime, which cannot be blocked on: a thread
        // with its own runtime does the query, and Drop waits for it.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin_exec(&admin, &sql));
        });
        let _ = done.join();
    }
}

async fn admin_exec(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("PostgreSQL answers");
    let driver = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = driver.await;
}
