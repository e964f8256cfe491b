use std::path::PathBuf;

use super::*;

#[test]
fn session_keys_have_djangos_shape() {
    assert!(session_key_shape_ok("abcdefgh"));
    assert!(session_key_shape_ok(&"a1".repeat(16)));
    assert!(session_key_shape_ok(&"z".repeat(40)));
    assert!(!session_key_shape_ok("abcdefg"), "shorter than 8: Django does not even query");
    assert!(!session_key_shape_ok(&"z".repeat(41)));
    assert!(!session_key_shape_ok("ABCDEFGHIJ"));
    assert!(!session_key_shape_ok("abcdefgh'--"));
}

#[test]
fn database_urls() {
    assert_eq!(
        Database::parse("sqlite:///srv/site/db.sqlite3"),
        Ok(Database::Sqlite(PathBuf::from("/srv/site/db.sqlite3")))
    );
    assert_eq!(
        Database::parse("sqlite://relative/db.sqlite3"),
        Ok(Database::Sqlite(PathBuf::from("relative/db.sqlite3"))),
        "the path after sqlite:// is taken literally"
    );
    assert!(matches!(Database::parse("postgresql://u@h/db"), Ok(Database::Postgres(_))));
    assert_eq!(Database::parse("mysql://u@h/db"), Err(UnknownDatabaseScheme));
}

#[test]
fn signing_failures_map_to_reasons() {
    assert_eq!(signing_reason(&SigningError::NoSeparator), Anonymous::BadSignature);
    assert_eq!(signing_reason(&SigningError::Expired { max_age_secs: 1.0 }), Anonymous::Expired);
    assert_eq!(signing_reason(&SigningError::Malformed("x")), Anonymous::Corrupt);
}

#[test]
fn a_postgres_url_never_prints() {
    let db = Database::parse("postgres://u:hunter2@h/db").unwrap();
    assert!(!format!("{db:?}").contains("hunter2"));
}

#[test]
fn store_errors_are_logged_once_per_burst() {
    let log = BurstLog::default();
    let e = StoreError::Timeout(Duration::from_secs(2));
    assert!(log.store_error(&e));
    for _ in 0..1000 {
        assert!(!log.store_error(&e));
    }
    assert_eq!(log.suppressed.load(Ordering::Relaxed), 1000);
}
