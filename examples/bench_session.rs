//! Session-bridge throughput, for scripts/bench-session (not a test).
//!
//!     bench_session SETTINGS_JSON KEYS_TXT
//!
//! On a single-threaded runtime (one core): cached resolutions per second (Cookie header
//! parse + cache hit), then uncached resolutions per second against PostgreSQL (every key
//! a miss: session query + user query + signature + hash).

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use switchyard::config::Secret;
use switchyard::django::*;

const CACHED_RUN: Duration = Duration::from_secs(3);
const UNCACHED_CONCURRENCY: usize = 32;

fn settings(secret: &str, database: &str, cache_size: u64) -> BridgeSettings {
    BridgeSettings {
        secret_key: Secret::new(secret),
        secret_key_fallbacks: vec![],
        engine: Engine::Db,
        database: Database::parse(database).expect("database URL"),
        session_cookie_name: DEFAULT_SESSION_COOKIE_NAME.into(),
        session_cookie_age: DEFAULT_SESSION_COOKIE_AGE,
        session_store_class: DEFAULT_SESSION_STORE_CLASS.into(),
        authentication_backends: vec![DEFAULT_AUTHENTICATION_BACKEND.into()],
        check_is_active: true,
        pushed_revocation: true,
        store: StoreSettings {
            session_table: Ident::new(DEFAULT_SESSION_TABLE).unwrap(),
            users: UserTable {
                table: Ident::new(DEFAULT_USER_TABLE).unwrap(),
                pk: Ident::new("id").unwrap(),
                pk_type: PkType::Int,
                username: Ident::new("username").unwrap(),
                password: Ident::new("password").unwrap(),
                is_active: Some(Ident::new("is_active").unwrap()),
                is_staff: Some(Ident::new("is_staff").unwrap()),
                is_superuser: Some(Ident::new("is_superuser").unwrap()),
            },
            pool_size: DEFAULT_POOL_SIZE,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        },
        cache: CacheSettings { ttl: Duration::from_secs(600), negative_ttl: Duration::from_secs(5), size: cache_size },
        on_store_error: StoreErrorPolicy::Refuse,
    }
}

/// Resolves every header, `UNCACHED_CONCURRENCY` at a time; prints the rate and the queries
/// each resolution cost, prefixed with `label`.
async fn concurrent_round(bridge: &SessionBridge, headers: &[Vec<u8>], label: &str) {
    let q0 = bridge.store_queries();
    let start = Instant::now();
    let users = stream::iter(headers)
        .map(|h| bridge.resolve(h))
        .buffer_unordered(UNCACHED_CONCURRENCY)
        .filter(|r| std::future::ready(matches!(r, Ok(Identity::User(_)))))
        .count()
        .await;
    let elapsed = start.elapsed();
    assert_eq!(users, headers.len(), "every bench session must resolve to a user");
    println!("{label}_per_sec {:.0}", headers.len() as f64 / elapsed.as_secs_f64());
    println!("{label}_queries_per_resolution {:.2}", (bridge.store_queries() - q0) as f64 / headers.len() as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[1]).unwrap()).unwrap();
    let keys: Vec<String> =
        std::fs::read_to_string(&args[2]).unwrap().lines().filter(|l| !l.is_empty()).map(String::from).collect();
    let headers: Vec<Vec<u8>> = keys.iter().map(|k| format!("csrftoken=abc; sessionid={k}").into_bytes()).collect();
    let (secret, db) = (cfg["secret_key"].as_str().unwrap(), cfg["database"].as_str().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Uncached: a fresh bridge, so every key is a miss.
        let bridge = SessionBridge::new(settings(secret, db, 1_000_000)).unwrap();
        // Open the pool first so connecting is not timed.
        let _ = bridge.resolve(b"sessionid=warmupwarmupwarmup").await;
        concurrent_round(&bridge, &headers, "uncached").await;

        // Reload of known keys (cache entries dropped, as after the TTL or a revalidation):
        // one joined query each.
        for k in &keys {
            bridge.invalidate_session(k).await;
        }
        concurrent_round(&bridge, &headers, "reload").await;

        // Uncached, one at a time (Django's pattern): latency rather than throughput.
        let fresh = SessionBridge::new(settings(secret, db, 1_000_000)).unwrap();
        let _ = fresh.resolve(b"sessionid=warmupwarmupwarmup").await;
        let start = Instant::now();
        for h in &headers {
            assert!(fresh.resolve(h).await.unwrap().user().is_some());
        }
        println!("uncached_sequential_per_sec {:.0}", headers.len() as f64 / start.elapsed().as_secs_f64());

        // Cached: the first bridge, now warm; one task, one core.
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < CACHED_RUN {
            for h in &headers {
                let id = bridge.resolve(h).await.unwrap();
                debug_assert!(id.user().is_some());
                n += 1;
            }
        }
        println!("cached_per_sec {:.0}", n as f64 / start.elapsed().as_secs_f64());
    });
}
