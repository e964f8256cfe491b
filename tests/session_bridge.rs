//! The session bridge against real Django: for every cookie in the fixtures that
//! `scripts/session-fixtures` made with Django 4.2, 5.2 and 6.x, on SQLite and on
//! PostgreSQL, Switchyard's answer equals Django's own `get_user` at the instant Django gave
//! it (the bridge's clock is set to each case's `at`). Plus the cache and store-failure
//! behaviours, on a copy of a Django-written SQLite file or a private PostgreSQL clone.

mod support;

use std::sync::Arc;

use std::time::Duration;

use support::session_fixtures::{self as fx, Case, Fixture, SCENARIOS, VERSIONS};
use switchyard::django::{Anonymous, Clock, Identity, SessionBridge, StoreErrorPolicy};

/// Compares one case; `Err` describes the disagreement.
fn check(case: &Case, got: &Identity) -> Result<(), String> {
    let django = &case.django;
    let ok = match (django.get("user"), got) {
        (Some(want), Identity::User(u)) => {
            let have = serde_json::to_value(&**u).unwrap();
            if &have == want {
                Ok(())
            } else {
                Err(format!("Django says {want}, Switchyard says {have}"))
            }
        }
        (Some(want), Identity::Anonymous(r)) => Err(format!("Django says user {want}, Switchyard says anonymous: {r}")),
        // Django answers 500 for a few corrupt sessions (an id that is not a pk); we say anonymous.
        (None, Identity::Anonymous(r)) => match &case.reason {
            Some(label) if label != r.as_str() => Err(format!("anonymous as expected but for {r}, labelled {label}")),
            _ => Ok(()),
        },
        (None, Identity::User(u)) => Err(format!("Django says {django}, Switchyard says user {u:?}")),
    };
    ok.map_err(|e| format!("{}: {e} (cookie {:?})", case.name, case.cookie))
}

async fn run_fixture(version: &str, db: &str, scenario: &str) -> (usize, Vec<String>) {
    let f: Fixture = fx::load(version, db, scenario);
    let clock = f.made_at();
    let bridge = fx::bridge_at(&f.settings, clock.clone());
    let mut failures = Vec::new();
    for case in &f.cases {
        clock.set(case.clock().now());
        match bridge.resolve(case.cookie.as_bytes()).await {
            Ok(id) => {
                if let Err(e) = check(case, &id) {
                    failures.push(format!("[{version} {} {db} {scenario}] {e}", f.django));
                }
            }
            Err(e) => failures.push(format!("[{version} {db} {scenario}] {}: store error {e}", case.name)),
        }
    }
    (f.cases.len(), failures)
}

async fn all_versions_agree(db: &str) {
    let mut total = 0;
    let mut failures = Vec::new();
    for version in VERSIONS {
        for scenario in SCENARIOS {
            let (n, f) = run_fixture(version, db, scenario).await;
            total += n;
            failures.extend(f);
        }
    }
    assert!(total > 150, "only {total} cases: are the fixtures complete?");
    assert!(failures.is_empty(), "{} of {total} cases disagree with Django:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn sqlite_sessions_resolve_as_django_does() {
    all_versions_agree("sqlite").await;
}

#[tokio::test]
async fn postgres_sessions_resolve_as_django_does() {
    all_versions_agree("postgres").await;
}

#[tokio::test]
async fn the_cached_db_engine_reads_the_table_like_db() {
    use switchyard::django::Engine;
    let mut failures = Vec::new();
    for version in VERSIONS {
        let f = fx::load(version, "sqlite", "standard");
        let mut settings = fx::settings(&f.settings, None);
        settings.engine = Engine::CachedDb;
        let clock = f.made_at();
        let bridge = SessionBridge::with_clock(settings, clock.clone()).unwrap();
        for case in &f.cases {
            clock.set(case.clock().now());
            if let Err(e) = check(case, &bridge.resolve(case.cookie.as_bytes()).await.unwrap()) {
                failures.push(format!("[{version}] {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_second_lookup_is_answered_from_the_cache() {
    let f = fx::load("django52", "postgres", "standard");
    let bridge = fx::bridge_at(&f.settings, f.made_at());
    let alice = f.case("login_alice");
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    let before = bridge.store_queries();
    for _ in 0..100 {
        bridge.resolve(alice.cookie.as_bytes()).await.unwrap();
    }
    assert_eq!(bridge.store_queries(), before);
}

// === cache and store failure, on a copy of a Django-written SQLite file ===

#[tokio::test]
async fn a_cached_answer_is_reloaded_once_cache_ttl_has_passed() {
    let (_dir, db, _, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let mut settings = fx::settings(&f.settings, Some(&db));
    settings.cache.ttl = Duration::from_millis(300);
    let bridge = SessionBridge::with_clock(settings, f.made_at()).unwrap();
    let alice = f.case("login_alice");
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    let loaded = bridge.store_queries();
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    assert_eq!(bridge.store_queries(), loaded, "answered from the cache inside the TTL");
    support::eventually("the answer is reloaded after the TTL", || async {
        assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
        bridge.store_queries() > loaded
    })
    .await;
}

#[tokio::test]
async fn the_cache_holds_no_more_than_cache_size_answers() {
    let (_dir, db, _, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let mut settings = fx::settings(&f.settings, Some(&db));
    settings.cache.size = 5;
    let bridge = SessionBridge::with_clock(settings, f.made_at()).unwrap();
    for i in 0..40 {
        let cookie = format!("sessionid=unknownsessionkey{i:04}");
        assert_eq!(bridge.resolve(cookie.as_bytes()).await.unwrap(), Identity::Anonymous(Anonymous::NoSuchSession));
    }
    bridge.run_pending_tasks().await;
    assert!(bridge.cached_answers() <= 5, "{} answers cached", bridge.cached_answers());
    assert!(bridge.cached_answers() > 0, "nothing was cached at all");
}

/// A bridge over a private copy of the django52 standard SQLite database.
fn sqlite_copy(policy: StoreErrorPolicy) -> (tempfile::TempDir, std::path::PathBuf, SessionBridge, Fixture) {
    let f = fx::load("django52", "sqlite", "standard");
    let src = fx::root().join("django52/sqlite/standard/db.sqlite3");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    std::fs::copy(&src, &db).unwrap();
    let mut s = fx::settings(&f.settings, Some(&db));
    s.on_store_error = policy;
    let bridge = SessionBridge::with_clock(s, f.made_at()).unwrap();
    (dir, db, bridge, f)
}

#[tokio::test]
async fn negative_ttl_stops_a_flood_of_unknown_keys() {
    let (_dir, _db, bridge, _f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let unknown = format!("sessionid={}", "q".repeat(32));
    for _ in 0..1000 {
        let id = bridge.resolve(unknown.as_bytes()).await.unwrap();
        assert_eq!(id, Identity::Anonymous(Anonymous::NoSuchSession));
    }
    assert_eq!(bridge.store_queries(), 1);
}

#[tokio::test]
async fn malformed_keys_never_reach_the_store() {
    let (_dir, _db, bridge, _f) = sqlite_copy(StoreErrorPolicy::Refuse);
    for bad in
        ["short", "UPPERCASEUPPERCASEUPPERCASE", "has space in it!", "x';DROP TABLE auth_user;--", &"a".repeat(41)]
    {
        let id = bridge.resolve(format!("sessionid={bad}").as_bytes()).await.unwrap();
        assert_eq!(id, Identity::Anonymous(Anonymous::MalformedKey), "{bad}");
    }
    assert_eq!(bridge.store_queries(), 0);
}

#[tokio::test]
async fn concurrent_misses_on_one_key_load_it_once() {
    let (_dir, _db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let cookie: Arc<str> = f.case("login_alice").cookie.as_str().into();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (b, c) = (bridge.clone(), cookie.clone());
            tokio::spawn(async move { b.resolve(c.as_bytes()).await.unwrap() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().user().is_some());
    }
    assert_eq!(bridge.store_queries(), 2, "one session query and one user query");
}

#[tokio::test]
async fn a_session_that_names_no_user_costs_one_query_and_one_that_does_two() {
    let (_dir, _db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let mut sent = 0;
    for (case, reason) in [
        ("tampered_payload", Anonymous::BadSignature),
        ("anonymous_session", Anonymous::NoUserId),
        ("expired_row", Anonymous::Expired),
    ] {
        let id = bridge.resolve(f.case(case).cookie.as_bytes()).await.unwrap();
        assert_eq!(id, Identity::Anonymous(reason), "{case}");
        sent += 1;
        assert_eq!(bridge.store_queries(), sent, "{case}: the session row only");
    }
    let alice = bridge.resolve(f.case("login_alice").cookie.as_bytes()).await.unwrap();
    assert_eq!(alice.user().unwrap().username, "alice");
    assert_eq!(bridge.store_queries(), sent + 2, "the session row, then the user row it names");
}

#[tokio::test]
async fn invalidating_a_user_or_a_session_forces_a_reload() {
    let (_dir, _db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let alice = f.case("login_alice");
    let user = bridge.resolve(alice.cookie.as_bytes()).await.unwrap();
    let id = user.user().unwrap().id.clone();
    assert_eq!(bridge.store_queries(), 2);
    bridge.invalidate_user(&id);
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    assert_eq!(bridge.store_queries(), 3, "a known key reloads in one joined query");
    let key = alice.cookie.trim_start_matches("sessionid=");
    bridge.invalidate_session(key).await;
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    assert_eq!(bridge.store_queries(), 4);
}

#[tokio::test]
async fn a_wrong_pk_guess_costs_a_second_query_not_a_wrong_answer() {
    let (_dir, db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let alice = f.case("login_alice").cookie.trim_start_matches("sessionid=").to_owned();
    let staff = f.case("login_staff").cookie.trim_start_matches("sessionid=").to_owned();
    assert_eq!(bridge.resolve_value(&alice).await.unwrap().user().unwrap().username, "alice");
    // The row under alice's key now holds staff's session (as if re-saved for another user).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE django_session SET session_data = (SELECT session_data FROM django_session WHERE session_key = ?2) \
         WHERE session_key = ?1",
        [&alice, &staff],
    )
    .unwrap();
    bridge.invalidate_session(&alice).await;
    let before = bridge.store_queries();
    assert_eq!(bridge.resolve_value(&alice).await.unwrap().user().unwrap().username, "staff");
    assert_eq!(bridge.store_queries() - before, 2, "joined query with the old guess, then the user by its pk");
}

/// Makes the SQLite file unreadable as a database, for connections already open too.
fn break_database(db: &std::path::Path) {
    let len = std::fs::metadata(db).unwrap().len() as usize;
    std::fs::write(db, vec![0x5au8; len]).unwrap();
}

#[tokio::test]
async fn store_down_refuses_under_the_refuse_policy() {
    let (_dir, db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    break_database(&db);
    assert!(bridge.resolve(f.case("login_alice").cookie.as_bytes()).await.is_err());
}

#[tokio::test]
async fn store_down_is_anonymous_under_the_anonymous_policy() {
    let (_dir, db, bridge, f) = sqlite_copy(StoreErrorPolicy::Anonymous);
    break_database(&db);
    let id = bridge.resolve(f.case("login_alice").cookie.as_bytes()).await.unwrap();
    assert_eq!(id, Identity::Anonymous(Anonymous::StoreUnavailable));
}

#[tokio::test]
async fn a_recheck_during_an_outage_is_an_error_even_under_the_anonymous_policy() {
    let (_dir, db, bridge, f) = sqlite_copy(StoreErrorPolicy::Anonymous);
    break_database(&db);
    assert!(bridge.recheck(f.case("login_alice").cookie.as_bytes()).await.is_err());
}

#[tokio::test]
async fn cached_answers_keep_serving_while_the_store_is_down() {
    let (_dir, db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    let alice = f.case("login_alice");
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    break_database(&db);
    assert!(bridge.resolve(alice.cookie.as_bytes()).await.unwrap().user().is_some());
    assert!(bridge.resolve(f.case("login_staff").cookie.as_bytes()).await.is_err());
}

#[tokio::test]
async fn a_missing_database_file_is_a_store_error_not_a_crash() {
    let (_dir, db, bridge, f) = sqlite_copy(StoreErrorPolicy::Refuse);
    std::fs::remove_file(&db).unwrap();
    assert!(bridge.resolve(f.case("login_alice").cookie.as_bytes()).await.is_err());
}

/// Every fixture resolved twice, the second time through the one-query join (the pk is
/// known from the first): the answers must not change.
async fn joined_reloads_agree(db: &str) {
    for version in VERSIONS {
        for scenario in ["standard", "custom", "bigint"] {
            let f = fx::load(version, db, scenario);
            let clock = f.made_at();
            let bridge = fx::bridge_at(&f.settings, clock.clone());
            for c in &f.cases {
                clock.set(c.clock().now());
                let first = bridge.resolve(c.cookie.as_bytes()).await.unwrap();
                if let Some(key) = switchyard::django::cookies::cookie_value(c.cookie.as_bytes(), "sessionid") {
                    bridge.invalidate_session(&key).await;
                }
                let again = bridge.resolve(c.cookie.as_bytes()).await.unwrap();
                assert_eq!(first, again, "[{version} {db} {scenario}] {}", c.name);
            }
        }
    }
}

#[tokio::test]
async fn joined_reloads_agree_on_sqlite() {
    joined_reloads_agree("sqlite").await;
}

#[tokio::test]
async fn joined_reloads_agree_on_postgres() {
    joined_reloads_agree("postgres").await;
}

#[tokio::test]
async fn the_postgres_pool_reconnects_after_its_connections_are_killed() {
    let f = fx::load("django6", "postgres", "standard");
    // Killing connections is done on a database of this test's own: on the shared one it
    // would cut the connections of every test running beside it.
    let own = fx::PrivateDatabase::clone_of(&f.settings.database).await;
    let mut settings = fx::settings(&f.settings, None);
    settings.database = switchyard::django::Database::parse(&own.url).unwrap();
    let bridge = SessionBridge::with_clock(settings, f.made_at()).unwrap();
    assert!(bridge.resolve(f.case("login_alice").cookie.as_bytes()).await.unwrap().user().is_some());
    let dbname = own.url.rsplit('/').next().unwrap().to_owned();
    let (client, conn) = tokio_postgres::connect(&own.url, tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(conn);
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&dbname],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty(), "the bridge held no connection to kill");
    drop(client);
    let _ = driver.await;
    // Every slot was killed; the next misses reconnect by themselves.
    for name in
        ["login_staff", "login_superuser", "signed_with_fallback_key", "login_unicode_username", "login_bigint_pk"]
    {
        let id = bridge.resolve(f.case(name).cookie.as_bytes()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(id.user().is_some(), "{name}");
    }
}

// === the clock ===

/// A bridge over `db`'s standard fixture whose clock the test moves.
fn bridge_with_clock(db: &str, scenario: &str) -> (Fixture, SessionBridge, Clock) {
    let f = fx::load("django52", db, scenario);
    let clock = f.made_at();
    let bridge = fx::bridge_at(&f.settings, clock.clone());
    (f, bridge, clock)
}

fn seconds_after(case: &Case, secs: f64) -> std::time::SystemTime {
    let at = case.clock().now();
    if secs >= 0.0 {
        at + Duration::from_secs_f64(secs)
    } else {
        at - Duration::from_secs_f64(-secs)
    }
}

#[tokio::test]
async fn a_signed_cookie_an_hour_from_its_max_age_expires_when_the_clock_passes_it() {
    let (f, bridge, clock) = bridge_with_clock("sqlite", "signed");
    let near = f.case("cookie_near_max_age");
    clock.set(seconds_after(near, 3540.0));
    assert!(bridge.resolve(near.cookie.as_bytes()).await.unwrap().user().is_some(), "valid a minute before");
    let (_, later, later_clock) = bridge_with_clock("sqlite", "signed");
    later_clock.set(seconds_after(near, 3660.0));
    assert_eq!(later.resolve(near.cookie.as_bytes()).await.unwrap(), Identity::Anonymous(Anonymous::Expired));
}

async fn a_rows_expire_date_is_read_against_the_bridge_clock(db: &str) {
    let (f, bridge, clock) = bridge_with_clock(db, "standard");
    // Made with expire_date one second before the fixture's "now": valid just before that.
    let expired = f.case("expired_row");
    clock.set(seconds_after(expired, -3600.0));
    assert!(bridge.resolve(expired.cookie.as_bytes()).await.unwrap().user().is_some(), "valid before expire_date");
    // A valid row: anonymous once the clock is past its expire_date (two weeks on).
    let (_, later, later_clock) = bridge_with_clock(db, "standard");
    let alice = f.case("login_alice");
    later_clock.set(seconds_after(alice, 1_209_600.0 + 60.0));
    assert_eq!(later.resolve(alice.cookie.as_bytes()).await.unwrap(), Identity::Anonymous(Anonymous::Expired));
}

#[tokio::test]
async fn a_rows_expire_date_is_read_against_the_bridge_clock_on_sqlite() {
    a_rows_expire_date_is_read_against_the_bridge_clock("sqlite").await;
}

#[tokio::test]
async fn a_rows_expire_date_is_read_against_the_bridge_clock_on_postgres() {
    a_rows_expire_date_is_read_against_the_bridge_clock("postgres").await;
}
