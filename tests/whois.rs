//! `switchyard whois` through the real binary, against a Django-written SQLite database.
//! The binary reads the system clock, so these tests use only cases whose verdict holds
//! for weeks (logins, a changed password), never the ones near an expiry.

mod support;

use std::process::Command;

use support::binary::switchyard_bin;
use support::session_fixtures as fx;

fn config(dir: &std::path::Path, database: &str) -> std::path::PathBuf {
    let path = dir.join("switchyard.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n\
         [django]\nsecret_key_env = \"SY_TEST_DJANGO_KEY\"\nsecret_key_fallbacks_env = \"SY_TEST_DJANGO_FALLBACKS\"\n\
         session_engine = \"db\"\ndatabase = \"{database}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn whois(config: &std::path::Path, value: &str, f: &fx::Fixture) -> (i32, String, String) {
    let out = Command::new(switchyard_bin())
        .args(["whois", "--config"])
        .arg(config)
        .arg(value)
        .env("SY_TEST_DJANGO_KEY", &f.settings.secret_key)
        .env("SY_TEST_DJANGO_FALLBACKS", serde_json::to_string(&f.settings.secret_key_fallbacks).unwrap())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn cookie<'a>(f: &'a fx::Fixture, name: &str) -> &'a str {
    &f.cases.iter().find(|c| c.name == name).unwrap().cookie
}

#[test]
fn whois_prints_the_user_and_exits_0() {
    let f = fx::load("django52", "sqlite", "standard");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &f.settings.database);
    let key = cookie(&f, "login_superuser").trim_start_matches("sessionid=");
    let (code, out, err) = whois(&cfg, key, &f);
    assert_eq!(code, 0, "{out}{err}");
    let user: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(user["username"], "root");
    assert_eq!(user["is_superuser"], true);
}

#[test]
fn whois_takes_a_whole_cookie_header() {
    let f = fx::load("django52", "sqlite", "standard");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &f.settings.database);
    // The header has other cookies and odd spacing around alice's session key.
    let (code, out, err) = whois(&cfg, cookie(&f, "cookie_whitespace"), &f);
    assert_eq!(code, 0, "{out}{err}");
    let user: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(user["username"], "alice", "{out}");
}

#[test]
fn whois_prints_the_anonymous_reason_and_exits_1() {
    let f = fx::load("django52", "sqlite", "standard");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &f.settings.database);
    let key = cookie(&f, "password_changed").trim_start_matches("sessionid=");
    assert_eq!(whois(&cfg, key, &f).0, 1);
    assert_eq!(whois(&cfg, key, &f).1.trim(), "anonymous: hash_mismatch");
    assert_eq!(whois(&cfg, "nope", &f).1.trim(), "anonymous: malformed_key");
}

#[test]
fn whois_with_an_unreachable_store_exits_2() {
    let f = fx::load("django52", "sqlite", "standard");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &format!("sqlite://{}/missing.sqlite3", dir.path().display()));
    let (code, _, err) = whois(&cfg, &"a".repeat(32), &f);
    assert_eq!(code, 2);
    assert!(err.contains("session store unavailable"), "{err}");
}
