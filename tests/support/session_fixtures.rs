//! The Django-made session fixtures (`scripts/session-fixtures`): where they are, and a
//! `SessionBridge` configured the way each fixture's Django project was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use switchyard::config::Secret;
use switchyard::django::{
    BridgeSettings, CacheSettings, Database, Engine, Ident, PkType, SessionBridge, StoreErrorPolicy, StoreSettings,
    UserTable,
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
            pool_size: 4,
            query_timeout: Duration::from_secs(2),
        },
        cache: CacheSettings::default(),
        on_store_error: StoreErrorPolicy::Refuse,
    }
}

pub fn bridge(f: &FixtureSettings) -> SessionBridge {
    SessionBridge::new(settings(f, None)).expect("bridge builds")
}
