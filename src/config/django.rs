//! `[django]` as written: how to read Django's sessions and users. Keys are Django's
//! settings in lowercase, with Django's defaults; secrets come from `*_env` / `*_file` and
//! are read at load time. Validation turns the section into the bridge's [`BridgeSettings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::bridge::{
    BridgeSettings, CacheSettings, Database, Engine, Ident, PkType, StoreErrorPolicy, StoreSettings, UserTable,
    DEFAULT_AUTHENTICATION_BACKEND, DEFAULT_CACHE_NEGATIVE_TTL, DEFAULT_CACHE_SIZE, DEFAULT_CACHE_TTL,
    DEFAULT_POOL_SIZE, DEFAULT_QUERY_TIMEOUT, DEFAULT_SESSION_COOKIE_AGE, DEFAULT_SESSION_COOKIE_NAME,
    DEFAULT_SESSION_STORE_CLASS, DEFAULT_SESSION_TABLE, DEFAULT_USER_TABLE,
};
use super::check::{Check, MIN_TIMER};
use super::env::{read_secret, Env, Secret};
use super::units::ConfigDuration;
use super::ConfigError;

/// A database pool larger than this is a typo: lookups are cached point queries.
const MAX_POOL_SIZE: usize = 64;
/// Longer than any session anyone keeps (a century), so age arithmetic cannot overflow.
const MAX_SESSION_COOKIE_AGE: u64 = 100 * 365 * 24 * 3600;

/// The `[django]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DjangoSection {
    /// Environment variable holding Django's SECRET_KEY. This or `secret_key_file` is required.
    pub secret_key_env: Option<String>,
    /// File holding SECRET_KEY (trailing newline ignored), instead of `secret_key_env`.
    pub secret_key_file: Option<PathBuf>,
    /// Environment variable holding SECRET_KEY_FALLBACKS as a JSON array of strings.
    /// Unset or empty means no fallbacks (Django's default).
    pub secret_key_fallbacks_env: Option<String>,
    /// File holding SECRET_KEY_FALLBACKS, one key per line, instead of the `_env` form.
    pub secret_key_fallbacks_file: Option<PathBuf>,
    /// SESSION_ENGINE: "db", "cached_db" (read through the database) or "signed_cookies".
    /// Default: "db".
    #[serde(default)]
    pub session_engine: Engine,
    /// Django's database: "sqlite:///abs/path/db.sqlite3" (the path after sqlite:// taken
    /// literally) or "postgres://user@host/dbname". This or `database_env` is required,
    /// also for signed_cookies (users are still read from it).
    #[serde(serialize_with = "mask_url")]
    pub database: Option<String>,
    /// Environment variable holding the database URL (when it carries a password).
    pub database_env: Option<String>,
    /// SESSION_COOKIE_NAME. Default: "sessionid".
    #[serde(default = "default_cookie_name")]
    pub session_cookie_name: String,
    /// SESSION_COOKIE_AGE in seconds; the signed_cookies max age. Default: 1209600 (two weeks).
    #[serde(default = "default_cookie_age")]
    pub session_cookie_age: u64,
    /// The session model's table. Default: "django_session".
    #[serde(default = "default_session_table")]
    pub session_table: String,
    /// `__qualname__` of the session store class, which salts the signature: change it
    /// only for a custom store class. Default: "SessionStore".
    #[serde(default = "default_store_class")]
    pub session_store_class: String,
    /// AUTHENTICATION_BACKENDS: a session whose backend is not listed is anonymous.
    /// Default: ["django.contrib.auth.backends.ModelBackend"].
    #[serde(default = "default_backends")]
    pub authentication_backends: Vec<String>,
    /// The user model's table (AUTH_USER_MODEL). Default: "auth_user".
    #[serde(default = "default_user_table")]
    pub user_table: String,
    /// The user model's primary-key column. Default: "id".
    #[serde(default = "default_pk_column")]
    pub user_pk_column: String,
    /// The primary key's type: "int" (AutoField, BigAutoField) or "uuid". Default: "int".
    #[serde(default)]
    pub user_pk_type: PkType,
    /// The USERNAME_FIELD column ("email" for many custom models). Default: "username".
    #[serde(default = "default_username_column")]
    pub user_username_column: String,
    /// The password column the session hash is checked against. Default: "password".
    #[serde(default = "default_password_column")]
    pub user_password_column: String,
    /// The is_active column; "" when the model has none (users count as active).
    /// Default: "is_active".
    #[serde(default = "default_is_active_column")]
    pub user_is_active_column: String,
    /// The is_staff column; "" when the model has none (false). Default: "is_staff".
    #[serde(default = "default_is_staff_column")]
    pub user_is_staff_column: String,
    /// The is_superuser column; "" when the model has none (false). Default: "is_superuser".
    #[serde(default = "default_is_superuser_column")]
    pub user_is_superuser_column: String,
    /// Refuse inactive users, as ModelBackend does. Set false for backends that allow
    /// them (the AllowAllUsers* backends are recognised by name anyway). Default: true.
    #[serde(default = "default_true")]
    pub check_is_active: bool,
    /// How long a resolved user is cached; pushed revocation drops it sooner. Default: "30s".
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: ConfigDuration,
    /// How long an anonymous answer is cached, so repeated bad keys stay off the
    /// database. Default: "5s".
    #[serde(default = "default_cache_negative_ttl")]
    pub cache_negative_ttl: ConfigDuration,
    /// Most cached answers. Default: 100000.
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// When the database cannot answer: "refuse" (the upgrade gets 503) or "anonymous".
    /// Default: "refuse".
    #[serde(default)]
    pub on_store_error: StoreErrorPolicy,
    /// Django tells Switchyard about every logout, password change and deactivation (the
    /// django-switchyard app does, through `/api/disconnect`), so a handshake may use a cached
    /// user. When false, every handshake re-reads the session (concurrent handshakes with
    /// one key share the read; unknown keys still hit the negative cache), so Django's
    /// logout is honoured at the next handshake. Default: false.
    #[serde(default)]
    pub pushed_revocation: bool,
    /// Database connections kept open. Default: 4.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Longest a database query (or connect) may take before it counts as a store error.
    /// Default: "2s".
    #[serde(default = "default_query_timeout")]
    pub query_timeout: ConfigDuration,
}

fn default_cookie_name() -> String {
    DEFAULT_SESSION_COOKIE_NAME.into()
}
fn default_cookie_age() -> u64 {
    DEFAULT_SESSION_COOKIE_AGE.as_secs()
}
fn default_session_table() -> String {
    DEFAULT_SESSION_TABLE.into()
}
fn default_store_class() -> String {
    DEFAULT_SESSION_STORE_CLASS.into()
}
fn default_backends() -> Vec<String> {
    vec![DEFAULT_AUTHENTICATION_BACKEND.into()]
}
fn default_user_table() -> String {
    DEFAULT_USER_TABLE.into()
}
fn default_pk_column() -> String {
    "id".into()
}
fn default_username_column() -> String {
    "username".into()
}
fn default_password_column() -> String {
    "password".into()
}
fn default_is_active_column() -> String {
    "is_active".into()
}
fn default_is_staff_column() -> String {
    "is_staff".into()
}
fn default_is_superuser_column() -> String {
    "is_superuser".into()
}
fn default_true() -> bool {
    true
}
fn default_cache_ttl() -> ConfigDuration {
    ConfigDuration(DEFAULT_CACHE_TTL)
}
fn default_cache_negative_ttl() -> ConfigDuration {
    ConfigDuration(DEFAULT_CACHE_NEGATIVE_TTL)
}
fn default_cache_size() -> u64 {
    DEFAULT_CACHE_SIZE
}
fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}
fn default_query_timeout() -> ConfigDuration {
    ConfigDuration(DEFAULT_QUERY_TIMEOUT)
}

/// Prints a database URL with its password replaced.
pub(super) fn mask_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        None => s.serialize_none(),
        Some(u) => s.serialize_str(&masked_url(u)),
    }
}

fn masked_url(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return u.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => u.to_owned(),
    }
}

// === impl DjangoSection ===

impl DjangoSection {
    pub(super) fn anchor_paths(&mut self, base: &Path) {
        for file in [&mut self.secret_key_file, &mut self.secret_key_fallbacks_file].into_iter().flatten() {
            *file = super::anchored(base, file);
        }
    }

    /// Validates every value and reads the secrets; called once by `parse`.
    pub(super) fn validate(&self, check: &Check, env: &dyn Env) -> Result<BridgeSettings, ConfigError> {
        let rejected = |key: &str, message: String| check.reject(key, message);
        if self.secret_key_env.is_some() && self.secret_key_file.is_some() {
            return Err(rejected("django.secret_key_file", "write secret_key_env or secret_key_file, not both".into()));
        }
        let secret_key = read_secret(env, self.secret_key_env.as_deref(), self.secret_key_file.as_deref())
            .map_err(|e| rejected("django.secret_key_env", e.to_string()))?
            .ok_or_else(|| {
                rejected(
                    "django.secret_key_env",
                    "Django's SECRET_KEY is needed: add secret_key_env = \"DJANGO_SECRET_KEY\" (or secret_key_file)"
                        .into(),
                )
            })?;
        let fallbacks = self.fallbacks(env).map_err(|m| rejected("django.secret_key_fallbacks_env", m))?;

        let url = match (&self.database, &self.database_env) {
            (Some(_), Some(_)) => {
                return Err(rejected("django.database_env", "write database or database_env, not both".into()))
            }
            (Some(u), None) => u.clone(),
            (None, Some(var)) => env
                .var(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| rejected("django.database_env", format!("environment variable `{var}` is not set")))?,
            (None, None) => {
                return Err(rejected(
                    "django.database",
                    "add database = \"sqlite:///path/to/db.sqlite3\" or \"postgres://user@host/dbname\"".into(),
                ))
            }
        };
        let database = Database::parse(&url).map_err(|e| rejected("django.database", e.to_string()))?;
        if let Database::Postgres(u) = &database {
            u.parse::<tokio_postgres::Config>()
                .map_err(|e| rejected("django.database", format!("not a PostgreSQL URL: {e}")))?;
        }

        let name = &self.session_cookie_name;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && !b";,=\"\\".contains(&b)) {
            return Err(rejected("django.session_cookie_name", format!("`{name}` is not a cookie name")));
        }
        let cookie_age =
            check.count("django.session_cookie_age", self.session_cookie_age, 1..=MAX_SESSION_COOKIE_AGE)?;
        if self.authentication_backends.is_empty() {
            return Err(rejected(
                "django.authentication_backends",
                "no backend: every session would be anonymous".into(),
            ));
        }
        let cache = CacheSettings {
            ttl: check.duration("django.cache_ttl", self.cache_ttl, Duration::ZERO)?,
            negative_ttl: check.duration("django.cache_negative_ttl", self.cache_negative_ttl, Duration::ZERO)?,
            size: check.count("django.cache_size", self.cache_size, 1..=u64::MAX)?,
        };
        let ident = |key: &str, v: &str| Ident::new(v).map_err(|e| rejected(key, e.to_string()));
        let optional = |key: &str, v: &str| {
            if v.is_empty() {
                Ok(None)
            } else {
                ident(key, v).map(Some)
            }
        };
        let store = StoreSettings {
            session_table: ident("django.session_table", &self.session_table)?,
            users: UserTable {
                table: ident("django.user_table", &self.user_table)?,
                pk: ident("django.user_pk_column", &self.user_pk_column)?,
                pk_type: self.user_pk_type,
                username: ident("django.user_username_column", &self.user_username_column)?,
                password: ident("django.user_password_column", &self.user_password_column)?,
                is_active: optional("django.user_is_active_column", &self.user_is_active_column)?,
                is_staff: optional("django.user_is_staff_column", &self.user_is_staff_column)?,
                is_superuser: optional("django.user_is_superuser_column", &self.user_is_superuser_column)?,
            },
            pool_size: check.count("django.pool_size", self.pool_size, 1..=MAX_POOL_SIZE)?,
            query_timeout: check.duration("django.query_timeout", self.query_timeout, MIN_TIMER)?,
        };
        if self.session_store_class.is_empty() {
            return Err(rejected("django.session_store_class", "must name a class, like \"SessionStore\"".into()));
        }
        Ok(BridgeSettings {
            secret_key,
            secret_key_fallbacks: fallbacks,
            engine: self.session_engine,
            database,
            session_cookie_name: name.clone(),
            session_cookie_age: Duration::from_secs(cookie_age),
            session_store_class: self.session_store_class.clone(),
            authentication_backends: self.authentication_backends.clone(),
            check_is_active: self.check_is_active,
            store,
            cache,
            on_store_error: self.on_store_error,
            pushed_revocation: self.pushed_revocation,
        })
    }

    /// SECRET_KEY_FALLBACKS from a JSON array in a variable, or one key per line in a file.
    fn fallbacks(&self, env: &dyn Env) -> Result<Vec<Secret>, String> {
        match (&self.secret_key_fallbacks_env, &self.secret_key_fallbacks_file) {
            (Some(_), Some(_)) => Err("write secret_key_fallbacks_env or secret_key_fallbacks_file, not both".into()),
            (Some(var), None) => {
                let Some(text) = env.var(var).filter(|t| !t.trim().is_empty()) else {
                    return Ok(Vec::new());
                };
                let keys: Vec<String> = serde_json::from_str(&text)
                    .map_err(|_| format!("`{var}` must hold a JSON array of strings, like [\"old-key\"]"))?;
                Ok(keys.into_iter().map(Secret::new).collect())
            }
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                Ok(text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).map(Secret::new).collect())
            }
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8000"
[django]
secret_key_env = "DJANGO_SECRET_KEY"
secret_key_fallbacks_env = "DJANGO_SECRET_KEY_FALLBACKS"
session_engine = "db"
database = "sqlite:///srv/site/db.sqlite3"
"#;

    fn parse(text: &str, env: &HashMap<&str, &str>) -> Result<super::super::Config, ConfigError> {
        super::super::parse(text, "t.toml", Path::new("/etc/switchyard"), env)
    }

    #[test]
    fn the_documented_example_works_as_written() {
        let env: HashMap<&str, &str> =
            [("DJANGO_SECRET_KEY", "k"), ("DJANGO_SECRET_KEY_FALLBACKS", r#"["old1","old2"]"#)].into();
        let config = parse(EXAMPLE, &env).unwrap();
        let s = config.django.clone().unwrap();
        assert_eq!(s.secret_key.expose(), "k");
        assert_eq!(s.secret_key_fallbacks.iter().map(|k| k.expose()).collect::<Vec<_>>(), ["old1", "old2"]);
        assert_eq!(s.database, Database::Sqlite(PathBuf::from("/srv/site/db.sqlite3")));
        assert_eq!(s.engine, Engine::Db);
        assert_eq!(s.session_cookie_name, "sessionid");
        assert_eq!(s.session_cookie_age, Duration::from_secs(1_209_600));
        assert_eq!(s.authentication_backends, [DEFAULT_AUTHENTICATION_BACKEND]);
        assert_eq!(s.store.users.table.quoted(), "\"auth_user\"");
        let printed = config.to_toml();
        assert!(!printed.contains("old1") && printed.contains("secret_key_env"), "{printed}");
    }

    #[test]
    fn unset_fallbacks_variable_means_no_fallbacks() {
        let env: HashMap<&str, &str> = [("DJANGO_SECRET_KEY", "k")].into();
        let s = parse(EXAMPLE, &env).unwrap().django.unwrap();
        assert!(s.secret_key_fallbacks.is_empty());
    }

    #[test]
    fn missing_secret_key_is_rejected_by_key() {
        let err = parse(EXAMPLE, &HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("django.secret_key_env") && err.contains("DJANGO_SECRET_KEY"), "{err}");
    }

    #[test]
    fn fallbacks_that_are_not_a_json_array_are_rejected() {
        let env: HashMap<&str, &str> = [("DJANGO_SECRET_KEY", "k"), ("DJANGO_SECRET_KEY_FALLBACKS", "old1")].into();
        let err = parse(EXAMPLE, &env).unwrap_err().to_string();
        assert!(err.contains("JSON array") && !err.contains("old1"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let env: HashMap<&str, &str> = [("DJANGO_SECRET_KEY", "k")].into();
        let err = parse(&format!("{EXAMPLE}session_engin = \"db\"\n"), &env).unwrap_err().to_string();
        assert!(err.contains("t.toml:11:"), "{err}");
        let err = parse(&EXAMPLE.replace("\"db\"", "\"file\""), &env).unwrap_err().to_string();
        assert!(err.contains("session_engine") || err.contains("unknown variant"), "{err}");
        let err = parse(&format!("{EXAMPLE}user_table = \"auth_user; drop\"\n"), &env).unwrap_err().to_string();
        assert!(err.contains("django.user_table"), "{err}");
        let err = parse(&EXAMPLE.replace("sqlite:///srv", "mysql://srv"), &env).unwrap_err().to_string();
        assert!(err.contains("django.database"), "{err}");
    }

    #[test]
    fn custom_user_model_columns_and_postgres_from_env() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8000"
[django]
secret_key_env = "K"
database_env = "DB"
user_table = "accounts_user"
user_pk_type = "uuid"
user_username_column = "email"
user_is_superuser_column = ""
on_store_error = "anonymous"
"#;
        let env: HashMap<&str, &str> = [("K", "k"), ("DB", "postgres://sy:pw@127.0.0.1/site")].into();
        let config = parse(text, &env).unwrap();
        let s = config.django.clone().unwrap();
        assert_eq!(s.store.users.pk_type, PkType::Uuid);
        assert!(s.store.users.is_superuser.is_none());
        assert_eq!(s.on_store_error, StoreErrorPolicy::Anonymous);
        assert!(matches!(s.database, Database::Postgres(_)));
        assert!(!config.to_toml().contains("pw"));
    }

    #[test]
    fn secrets_from_files_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "file-key\n").unwrap();
        std::fs::write(dir.path().join("fallbacks"), "old-1\n\nold-2\r\n").unwrap();
        let text = EXAMPLE.replace("secret_key_env = \"DJANGO_SECRET_KEY\"", "secret_key_file = \"key\"").replace(
            "secret_key_fallbacks_env = \"DJANGO_SECRET_KEY_FALLBACKS\"",
            "secret_key_fallbacks_file = \"fallbacks\"",
        );
        let env: HashMap<&str, &str> = HashMap::new();
        let config = super::super::parse(&text, "t.toml", dir.path(), &env).unwrap();
        let s = config.django.unwrap();
        assert_eq!(s.secret_key.expose(), "file-key");
        assert_eq!(s.secret_key_fallbacks.iter().map(|k| k.expose()).collect::<Vec<_>>(), ["old-1", "old-2"]);
    }

    #[test]
    fn passwords_in_database_urls_are_masked() {
        assert_eq!(masked_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(masked_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
