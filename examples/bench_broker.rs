//! Broker throughput and latency, for scripts/bench-broker (not a test).
//!
//!     bench_broker --publish ADDR --subscribe ADDR[,ADDR…] [--subscribers 1000] [--publishers 1]
//!                  [--seconds 10] [--via ws|sql] [--sql URL] [--pids PID,…] --label NAME
//!
//! Opens `--subscribers` sockets on each `--subscribe` node, all on channel `bench`, then
//! publishes for `--seconds` from `--publishers` concurrent publishers, each with one event in
//! flight: over a socket's `publish` command on `--publish` (`ws`, any broker), or as one
//! `INSERT` per transaction into the outbox (`sql`, what Django does). Every event carries its
//! send time; a few subscribers per node read every frame's time (the others only count
//! frames), which gives publish-to-deliver latency per node. Prints one JSON line: events/s
//! acknowledged, deliveries per node, p50/p99, slow-reader closes, and the CPU used by this
//! process and by the `--pids` servers (so you can see which one was the limit).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Subscribers per node that read every frame's timestamp.
const SAMPLED: usize = 8;
/// Longest wait for the last events to arrive after publishing stops.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
struct Args {
    /// The node publishers talk to (ws).
    #[arg(long)]
    publish: SocketAddr,
    /// The nodes subscribers connect to, comma-separated.
    #[arg(long, value_delimiter = ',')]
    subscribe: Vec<SocketAddr>,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// ws (a socket's publish command) or sql (an INSERT per transaction).
    #[arg(long, default_value = "ws")]
    via: String,
    /// The outbox database, for --via sql.
    #[arg(long)]
    sql: Option<String>,
    /// Server processes whose CPU to report.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    #[arg(long)]
    label: String,
}

#[derive(Default)]
struct Node {
    frames: AtomicU64,
    slow_closes: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    /// Events each sampled subscriber has seen.
    sampled_seen: Vec<AtomicU64>,
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

async fn socket(
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{addr}/ws/").into_client_request().unwrap();
    request.headers_mut().insert("origin", format!("http://{addr}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("socket opens");
    ws.next().await.expect("welcome").expect("welcome frame");
    ws
}

/// Joins `bench`; then counts frames (and, when sampled, reads each event's send time).
async fn subscriber(addr: SocketAddr, node: Arc<Node>, sample: Option<usize>, ready: Arc<tokio::sync::Barrier>) {
    let mut ws = socket(addr).await;
    ws.send(Message::text(r#"{"id":1,"subscribe":"bench"}"#)).await.unwrap();
    while let Some(Ok(frame)) = ws.next().await {
        if matches!(&frame, Message::Text(t) if t.contains("\"id\":1")) {
            break;
        }
    }
    ready.wait().await;
    while let Some(Ok(frame)) = ws.next().await {
        match frame {
            Message::Text(text) => {
                node.frames.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = sample {
                    let at = now_micros();
                    let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                    if let Some(sent) = value["push"]["data"]["t"].as_u64() {
                        node.latencies.lock().unwrap().push(at.saturating_sub(sent) as u32);
                        node.sampled_seen[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Message::Close(Some(close)) if u16::from(close.code) == 4008 => {
                node.slow_closes.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
}

async fn publish_ws(addr: SocketAddr, id: usize, until: Instant, sent: Arc<AtomicU64>) {
    let mut ws = socket(addr).await;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let frame = json!({"id": n, "publish": {"channel": "bench", "event": "e", "data": {"t": now_micros(), "p": id, "n": n}}});
        ws.send(Message::text(frame.to_string())).await.unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.contains("\"publish\"") => {
                    if text.contains("\"result\"") {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Some(Ok(_)) => continue,
                _ => return,
            }
        }
    }
}

async fn publish_sql(url: String, id: usize, until: Instant, sent: Arc<AtomicU64>) {
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL answers");
    tokio::spawn(connection);
    let insert = client
        .prepare("INSERT INTO switchyard_outbox (kind, channel, event, data) VALUES ('channel', 'bench', 'e', $1::text::json)")
        .await
        .expect("the outbox exists");
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let data = json!({"t": now_micros(), "p": id, "n": n}).to_string();
        client.execute(&insert, &[&data]).await.expect("insert");
        sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let nodes: Vec<Arc<Node>> = args
        .subscribe
        .iter()
        .map(|_| Arc::new(Node { sampled_seen: (0..SAMPLED).map(|_| AtomicU64::new(0)).collect(), ..Node::default() }))
        .collect();
    let ready = Arc::new(tokio::sync::Barrier::new(args.subscribe.len() * args.subscribers + 1));
    let mut tasks = Vec::new();
    for (addr, node) in args.subscribe.iter().zip(&nodes) {
        for i in 0..args.subscribers {
            let sample = (i < SAMPLED).then_some(i);
            tasks.push(tokio::spawn(subscriber(*addr, node.clone(), sample, ready.clone())));
            if i % 100 == 99 {
                tokio::task::yield_now().await;
            }
        }
    }
    ready.wait().await;

    let cpu = |pids: &[String]| pids.iter().map(|p| cpu_seconds(p)).collect::<Vec<_>>();
    let pids: Vec<String> = args.pids.iter().map(|p| p.to_string()).chain(["self".to_string()]).collect();
    let cpu_before = cpu(&pids);
    let frames_before: Vec<u64> = nodes.iter().map(|n| n.frames.load(Ordering::Relaxed)).collect();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..args.publishers)
        .map(|id| match args.via.as_str() {
            "sql" => tokio::spawn(publish_sql(args.sql.clone().expect("--sql URL"), id, until, sent.clone())),
            _ => tokio::spawn(publish_ws(args.publish, id, until, sent.clone())),
        })
        .collect();
    for p in publishers {
        let _ = p.await;
    }
    let elapsed = started.elapsed();
    let published = sent.load(Ordering::Relaxed);
    // Let the last events arrive (bounded).
    let drained = Instant::now() + DRAIN;
    while Instant::now() < drained
        && nodes.iter().any(|n| n.sampled_seen.iter().any(|s| s.load(Ordering::Relaxed) < published))
        && nodes.iter().all(|n| n.slow_closes.load(Ordering::Relaxed) == 0)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = cpu(&pids);
    let per_node: Vec<Value> = nodes
        .iter()
        .zip(&frames_before)
        .map(|(n, before)| {
            let mut lat = n.latencies.lock().unwrap().clone();
            lat.sort_unstable();
            let seen: Vec<u64> = n.sampled_seen.iter().map(|s| s.load(Ordering::Relaxed)).collect();
            json!({
                "deliveries": n.frames.load(Ordering::Relaxed) - before,
                "deliveries_per_s": ((n.frames.load(Ordering::Relaxed) - before) as f64 / wall).round(),
                "p50_ms": percentile(&lat, 0.50),
                "p99_ms": percentile(&lat, 0.99),
                "max_ms": percentile(&lat, 1.0),
                "sampled_complete": seen.iter().all(|s| *s == published),
                "slow_reader_closes": n.slow_closes.load(Ordering::Relaxed),
            })
        })
        .collect();
    let cpu: Vec<Value> = pids
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .map(|(pid, (b, a))| json!({"pid": pid, "cpu_percent": ((a - b) / wall * 100.0).round()}))
        .collect();
    let report = json!({
        "label": args.label,
        "via": args.via,
        "publishers": args.publishers,
        "subscribers_per_node": args.subscribers,
        "events": published,
        "events_per_s": (published as f64 / elapsed.as_secs_f64()).round(),
        "nodes": per_node,
        "cpu": cpu,
    });
    println!("{report}");
    for t in tasks {
        t.abort();
    }
}
