//! The config loader (`config::parse`) on any text an operator can write.
//!
//! Properties: it never panics; a refusal names a line and column inside the text; no
//! message and no printed config (`switchyard check`) shows a secret read from the
//! environment; an accepted config prints (`Config::to_toml`) as text that loads again and
//! prints the same, and that printed text holds no PostgreSQL password tokio-postgres
//! would read from the database URL (`***` in its place).

use std::collections::HashMap;
use std::path::Path;

use switchyard::config::{self, ConfigError, Database};

const ORIGIN: &str = "fuzz.toml";
/// Relative paths in the text start here; it does not exist, so nothing is read from it.
const BASE: &str = "/nonexistent-switchyard-fuzz";

/// The variables the example and the seeds name, with values that must never be printed.
const ENV: [(&str, &str); 6] = [
    ("SWITCHYARD_ADMIN_KEY", "admin-key-e4a2f6"),
    ("SWITCHYARD_BACKEND_SECRET", "backend-secret-0d1e7c"),
    ("DJANGO_SECRET_KEY", "django-secret-key-9f3a41"),
    ("DJANGO_SECRET_KEY_FALLBACKS", r#"["old-secret-key-77c2b5"]"#),
    ("DJANGO_DATABASE_URL", "postgres://switchyard:db-password-5b8e01@localhost/app"),
    ("DJANGO_BAD_DATABASE_URL", "mysql://switchyard:bad-url-password-3c9d@localhost/app"),
];
const SECRETS: [&str; 6] = [
    "admin-key-e4a2f6",
    "backend-secret-0d1e7c",
    "django-secret-key-9f3a41",
    "old-secret-key-77c2b5",
    "db-password-5b8e01",
    "bad-url-password-3c9d",
];

/// Checks the properties above on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env: HashMap<&str, &str> = ENV.into();
    match config::parse(text, ORIGIN, Path::new(BASE), &env) {
        Ok(config) => {
            let printed = config.to_toml();
            hides_secrets(text, &printed);
            let again = config::parse(&printed, ORIGIN, Path::new(BASE), &env)
                .unwrap_or_else(|e| panic!("the printed config does not load: {e}\n{printed}"));
            assert_eq!(again.to_toml(), printed, "printing is not stable");
            let printed_toml = toml::from_str::<toml::Table>(&printed).expect("printed TOML");
            let printed_url = (printed_toml.get("django").and_then(|d| d.get("database")))
                .and_then(|url| url.as_str().map(str::to_owned));
            if let (Some(Database::Postgres(_)), Some(url)) = (again.django.map(|d| d.database), printed_url) {
                if let Ok(pg) = url.parse::<tokio_postgres::Config>() {
                    let password = pg.get_password();
                    assert!(password.is_none_or(|p| p == b"***"), "the printed config shows a password: {url}");
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            hides_secrets(text, &message);
            let at = match e {
                ConfigError::Invalid { origin, line, column, .. } => {
                    assert_eq!(origin, ORIGIN);
                    Some((line, column))
                }
                ConfigError::Rejected { origin, at, .. } => {
                    assert_eq!(origin, ORIGIN);
                    at
                }
                ConfigError::Unreadable { .. } => panic!("parse reads no file: {message}"),
            };
            if let Some((line, column)) = at {
                let lines: Vec<&str> = text.split('\n').collect();
                assert!((1..=lines.len()).contains(&line), "line {line} of {} in {message:?}", lines.len());
                let width = lines[line - 1].chars().count();
                assert!((1..=width + 1).contains(&column), "column {column} of {width} in {message:?}");
            }
        }
    }
}

/// `shown` holds none of the environment's secrets (unless the text itself spells one out).
fn hides_secrets(text: &str, shown: &str) {
    for secret in SECRETS {
        assert!(text.contains(secret) || !shown.contains(secret), "{secret:?} shown:\n{shown}");
    }
}
