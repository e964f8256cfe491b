//! The handshake and echo load of scripts/bench-ws (not a test), in Rust: the same work as
//! bench/ws_load.py's modes of those names, for a fraction of its CPU.
//!
//!     ws_load handshake --url ws://HOST:PORT/PATH --keys FILE --count N --concurrency C
//!     ws_load echo      --url ws://HOST:PORT/PATH --keys FILE --connections N --seconds S [--size B]
//!
//! Why: both ends share this machine's cores. The Python client spent about 0.8 of the two
//! cores on the handshakes and more on the echo load, CPU the server under test could not
//! have; against daphne it spent 0.1. A client that costs little leaves the cores to the
//! server whichever server it is.
//!
//! Each socket sends the upgrade with its own session key (`sessionid`, one per line of
//! `--keys`) from one of `--sources` loopback addresses (127.0.0.2, ...), masks its frames
//! with the all-zero key (valid, and masking is then free), answers pings and takes server
//! frames unmasked, a message whole once a frame with FIN arrives. A handshake counts once
//! one echo round trip has come back on it. Work is split over `--threads` threads, each
//! with its own single-threaded runtime. Prints one JSON line, in ws_load.py's shape:
//! `client_cpu` is this process's CPU over the wall time per thread (near 1: the client
//! was the limit).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long one handshake or one round trip may take before it counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes one socket reads at a time; a 64 KiB message takes a few reads.
const READ_CHUNK: usize = 16 << 10;
/// Upgrade responses longer than this are refused (no server here sends one).
const MAX_RESPONSE_HEAD: usize = 16 << 10;
/// Errors kept for the report, as ws_load.py keeps them.
const ERRORS_KEPT: usize = 3;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

#[derive(Parser, Debug)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// ws://HOST:PORT/PATH to connect to.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:8000/ws/")]
    url: String,
    /// Session keys, one per line; socket i uses line i (mod their number).
    #[arg(long, global = true)]
    keys: Option<std::path::PathBuf>,
    #[arg(long, global = true, default_value = "sessionid")]
    cookie_name: String,
    /// Loopback source addresses 127.0.0.2 and up, each with its own ephemeral ports.
    #[arg(long, global = true, default_value_t = 8)]
    sources: u8,
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum Mode {
    /// `--count` handshakes, `--concurrency` at a time, each proven by one round trip.
    Handshake {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
    },
    /// `--connections` sockets, each one message of `--size` bytes at a time, for `--seconds`.
    Echo {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        size: usize,
    },
}

/// Where and as whom to connect.
struct Target {
    server: SocketAddr,
    path: String,
    host: String,
    keys: Vec<String>,
    cookie_name: String,
    sources: Vec<Ipv4Addr>,
}

impl Target {
    fn new(args: &Args) -> Result<Self, String> {
        let rest = args.url.strip_prefix("ws://").ok_or("--url must start with ws://")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let server = host.parse().map_err(|e| format!("--url host `{host}`: {e} (write an IP:port)"))?;
        let keys = match &args.keys {
            None => vec![],
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        Ok(Self {
            server,
            path: if path.is_empty() { "/".into() } else { path.into() },
            host: host.into(),
            keys,
            cookie_name: args.cookie_name.clone(),
            sources: (0..args.sources).map(|i| Ipv4Addr::new(127, 0, 0, 2 + i)).collect(),
        })
    }

    fn request(&self, i: usize) -> Vec<u8> {
        let cookie = match self.keys.len() {
            0 => String::new(),
            n => format!("Cookie: {}={}\r\n", self.cookie_name, self.keys[i % n]),
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://{}\r\n{cookie}\r\n",
            self.path, self.host, self.host
        )
        .into_bytes()
    }

    /// Socket number `i`, upgraded; `Err` says why not.
    async fn open(&self, i: usize) -> Result<Socket, String> {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if !self.sources.is_empty() {
            let source = self.sources[i % self.sources.len()];
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).map_err(|e| format!("bind {source}: {e}"))?;
        }
        let stream = socket.connect(self.server).await.map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut socket = Socket { stream, buf: Vec::with_capacity(READ_CHUNK) };
        socket.stream.write_all(&self.request(i)).await.map_err(|e| format!("write: {e}"))?;
        socket.read_head().await?;
        Ok(socket)
    }
}

/// One upgraded socket and what it has read but not yet taken.
struct Socket {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Socket {
    async fn fill(&mut self) -> Result<(), String> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let n = self.stream.read(&mut self.buf[start..]).await.map_err(|e| format!("read: {e}"));
        self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => Err("connection closed by the server".into()),
            _ => Ok(()),
        }
    }

    async fn read_head(&mut self) -> Result<(), String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let status = self.buf.split(|&b| b == b'\r').next().unwrap_or_default();
                if !status.starts_with(b"HTTP/1.1 101") {
                    return Err(String::from_utf8_lossy(status).into_owned());
                }
                self.buf.drain(..end + 4);
                return Ok(());
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err("upgrade response head too long".into());
            }
            self.fill().await?;
        }
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]); // the zero mask: the payload goes as it is
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await.map_err(|e| format!("write: {e}"))
    }

    /// The next whole data message's length, answering pings on the way.
    async fn next_message(&mut self) -> Result<usize, String> {
        let mut message = 0;
        loop {
            while let Some((fin, opcode, start, len)) = frame_at(&self.buf) {
                match opcode {
                    OP_PING => {
                        let payload = self.buf[start..start + len].to_vec();
                        self.buf.drain(..start + len);
                        self.send(OP_PONG, &payload).await?;
                        continue;
                    }
                    OP_CLOSE => {
                        let code = self.buf.get(start..start + 2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                        return Err(format!("closed by the server with {code:?}"));
                    }
                    _ => {}
                }
                self.buf.drain(..start + len);
                message += len;
                if fin {
                    return Ok(message);
                }
            }
            self.fill().await?;
        }
    }

    async fn roundtrip(&mut self, payload: &[u8]) -> Result<(), String> {
        self.send(OP_TEXT, payload).await?;
        match tokio::time::timeout(STEP_TIMEOUT, self.next_message()).await {
            Err(_) => Err("no echo within the timeout".into()),
            Ok(r) => r.map(drop),
        }
    }

    async fn close(mut self) {
        let _ = self.send(OP_CLOSE, &1000u16.to_be_bytes()).await;
    }
}

/// A complete server frame at the start of `buf`: FIN, opcode, payload start and length.
fn frame_at(buf: &[u8]) -> Option<(bool, u8, usize, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)? & 0x7f);
    let (start, len) = match b1 {
        126 => (4, u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize),
        127 => (10, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize),
        n => (2, n as usize),
    };
    (buf.len() >= start + len).then_some((b0 & 0x80 != 0, b0 & 0x0f, start, len))
}

/// What one thread did.
#[derive(Default)]
struct Tally {
    done: usize,
    failed: usize,
    errors: Vec<String>,
    latencies_us: Vec<u32>,
    seconds: f64,
}

impl Tally {
    fn fail(&mut self, error: String) {
        self.failed += 1;
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push(error);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.done += other.done;
        self.failed += other.failed;
        self.errors.extend(other.errors.into_iter().take(ERRORS_KEPT - self.errors.len().min(ERRORS_KEPT)));
        self.latencies_us.extend(other.latencies_us);
        self.seconds = self.seconds.max(other.seconds);
    }
}

/// One thread's handshakes: workers take socket numbers from the shared counter.
async fn handshakes(target: Arc<Target>, next: Arc<AtomicUsize>, count: usize, workers: usize) -> Tally {
    let started = Instant::now();
    let local = tokio::task::LocalSet::new();
    let tallies: Vec<_> = (0..workers)
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            local.spawn_local(async move {
                let mut tally = Tally::default();
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= count {
                        return tally;
                    }
                    match tokio::time::timeout(STEP_TIMEOUT, target.open(i)).await {
                        Err(_) => tally.fail("handshake timed out".into()),
                        Ok(Err(e)) => tally.fail(e),
                        Ok(Ok(mut socket)) => match socket.roundtrip(b"x").await {
                            Ok(()) => {
                                socket.close().await;
                                tally.done += 1;
                            }
                            Err(e) => tally.fail(e),
                        },
                    }
                }
            })
        })
        .collect();
    let mut total = Tally::default();
    local
        .run_until(async {
            for t in tallies {
                total.merge(t.await.unwrap_or_default());
            }
        })
        .await;
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// One thread's echo sockets, numbered from `first`, each one message at a time.
async fn echoes(target: Arc<Target>, first: usize, share: usize, seconds: u64, size: usize) -> Tally {
    let mut tally = Tally::default();
    let mut sockets = Vec::with_capacity(share);
    for i in first..first + share {
        match tokio::time::timeout(STEP_TIMEOUT, target.open(i)).await {
            Ok(Ok(s)) => sockets.push(s),
            Ok(Err(e)) => tally.fail(e),
            Err(_) => tally.fail("handshake timed out".into()),
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let payload: Arc<[u8]> = vec![b'x'; size].into();
    let local = tokio::task::LocalSet::new();
    let loops: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let payload = payload.clone();
            local.spawn_local(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if let Err(e) = socket.roundtrip(&payload).await {
                        tally.fail(e);
                        return tally;
                    }
                    tally.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                socket.close().await;
                tally
            })
        })
        .collect();
    local
        .run_until(async {
            for l in loops {
                tally.merge(l.await.unwrap_or_default());
            }
        })
        .await;
    tally.done = tally.latencies_us.len();
    tally.seconds = started.elapsed().as_secs_f64();
    tally
}

/// Runs `work(thread index)` on `threads` threads, each its own current-thread runtime.
fn on_threads<F, Fut>(threads: usize, work: F) -> Tally
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Tally>,
{
    let work = Arc::new(work);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let work = work.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                runtime.block_on(work(t))
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        total.merge(h.join().expect("a load thread panicked"));
    }
    total
}

/// This process's user and system CPU so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |i| i + 2)..].split(' ').collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on every Linux architecture
}

fn percentile_ms(sorted_us: &[u32], q: f64) -> Option<f64> {
    let i = ((sorted_us.len() as f64 * q) as usize).min(sorted_us.len().checked_sub(1)?);
    Some(f64::from(sorted_us[i]) / 1000.0) // microseconds: three decimals of a millisecond
}

fn main() {
    let args = Args::parse();
    let target = match Target::new(&args) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("ws_load: {e}");
            std::process::exit(2);
        }
    };
    let threads = args.threads.max(1);
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let (name, mut tally) = match args.mode {
        Mode::Handshake { count, concurrency } => {
            let next = Arc::new(AtomicUsize::new(0));
            let per_thread = (concurrency / threads).max(1);
            let t = on_threads(threads, move |_| handshakes(target.clone(), next.clone(), count, per_thread));
            ("handshake", t)
        }
        Mode::Echo { connections, seconds, size } => {
            let t = on_threads(threads, move |i| {
                let (base, extra) = (connections / threads, connections % threads);
                let first = i * base + i.min(extra);
                echoes(target.clone(), first, base + usize::from(i < extra), seconds, size)
            });
            ("echo", t)
        }
    };
    let cpu = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64() / threads as f64;
    tally.latencies_us.sort_unstable();
    let mut out = json!({
        "mode": name,
        "procs": threads,
        "client_cpu": (cpu * 100.0).round() / 100.0,
        "done": tally.done,
        "failed": tally.failed,
        "seconds": (tally.seconds * 100.0).round() / 100.0,
        "per_second": (tally.done as f64 / tally.seconds.max(1e-9) * 10.0).round() / 10.0,
        "errors": tally.errors,
    });
    if name == "echo" {
        out["p50_ms"] = json!(percentile_ms(&tally.latencies_us, 0.50));
        out["p99_ms"] = json!(percentile_ms(&tally.latencies_us, 0.99));
    }
    println!("{out}");
}
