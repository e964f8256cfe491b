//! The subscriber side of scripts/bench-hub (not a test): opens many WebSockets to
//! Switchyard or to Django Channels, subscribes each to one shared channel and to one of
//! many small rooms, publishes through the server's HTTP publish endpoint, and counts and
//! timestamps every event read.
//!
//!     bench_hub --kind switchyard|channels --ws URL --publish URL [--key K]
//!               --server-pid PID [--broker-pid PID] --sockets N --rooms R --seconds S --rate D
//!
//! Prints one JSON object: sockets opened and failed, RSS per idle subscribed socket, and
//! per phase (`fanout_max`, `fanout_rate`, `rooms_max`, `rooms_rate`) deliveries per second,
//! publish-to-deliver p50/p99, deliveries owed but never read, and the CPU (cores busy) of
//! the server, its broker and this client over the phase.
//!
//! Why hand-rolled: at a million frames a second the reader must cost little. Each socket
//! waits for readability and then drains the kernel into one buffer per thread, walking the
//! frame headers (server frames are unmasked) and reading the publisher's timestamp (`"t"`,
//! microseconds since this process started) out of each text frame; only a partial frame is
//! kept per socket. Publishing goes through hyper's HTTP/1.1 client on kept-alive
//! connections; the events carry the time they were handed to the server.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Sockets being opened at once (the listen backlog and daphne take no more gladly).
const OPEN_CONCURRENCY: usize = 200;
/// How long opening every socket may take, all of them: what is not open by then counts as
/// failed (daphne at nice 19 on a loaded machine opened about 6 a second).
const OPEN_PATIENCE: Duration = Duration::from_secs(180);
/// The closed-loop phases keep at most this many events per socket unread: below every
/// server's per-socket queue (Switchyard 256, the Channels layers' capacity 1000), so a
/// phase measures delivery, not slow-reader policies.
const WINDOW_EVENTS: u64 = 64;
/// Events per publish request for rooms (each reaches ten); the shared channel's batch is
/// `--fanout-batch` (each of its events reaches every socket).
const ROOMS_BATCH: usize = 500;
/// The paced phases publish what is due at every tick.
const TICK: Duration = Duration::from_millis(5);
/// After a phase, how long deliveries may keep trickling in before the rest counts as lost.
const DRAIN_PATIENCE: Duration = Duration::from_secs(5);
/// The kernel's clock ticks in /proc/PID/stat: USER_HZ is 100 on every Linux architecture.
const USER_HZ: f64 = 100.0;
/// Each worker thread's read buffer.
const READ_BUFFER: usize = 256 << 10;
/// Latency histogram: 16 sub-buckets per power of two of microseconds (±3%), up to 2^40.
const SUB_BUCKETS: usize = 16;
const BUCKETS: usize = 40 * SUB_BUCKETS;
/// Histogram and counter shards (one per thread in practice: no shared cache line).
const SHARDS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// Switchyard: welcome, then a `subscribe` command; the admin API with a bearer key.
    Switchyard,
    /// bench/channels_echo's fan-out consumer: groups named in the query string.
    Channels,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    kind: Kind,
    /// ws://HOST:PORT/PATH of the subscribe endpoint.
    #[arg(long)]
    ws: String,
    /// http://HOST:PORT/PATH that takes a JSON list of {channel, event, data}.
    #[arg(long)]
    publish: String,
    /// Bearer key for the publish endpoint.
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    server_pid: u32,
    #[arg(long)]
    broker_pid: Option<u32>,
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    #[arg(long, default_value_t = 1_000)]
    rooms: usize,
    /// Length of each phase.
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    /// Deliveries per second offered in the paced phases (or 80% of the measured maximum).
    #[arg(long, default_value_t = 1_000_000)]
    rate: u64,
    /// Events per publish request to the shared channel: a larger batch lets the server
    /// put more frames in each write to a subscriber.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    fanout_batch: u16,
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn micros_now() -> u64 {
    START.elapsed().as_micros() as u64
}

// === counters ===

/// What every reader adds to, sharded by thread.
struct Stats {
    delivered: [Padded; SHARDS],
    histogram: Vec<AtomicU64>,
    closed_by_server: AtomicUsize,
    lost_frames: AtomicU64,
}

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER]);
}

impl Stats {
    fn new() -> Self {
        Self {
            delivered: Default::default(),
            histogram: (0..SHARDS * BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            closed_by_server: AtomicUsize::new(0),
            lost_frames: AtomicU64::new(0),
        }
    }

    fn delivered(&self) -> u64 {
        self.delivered.iter().map(|p| p.0.load(Relaxed)).sum()
    }

    fn reset_histogram(&self) {
        self.histogram.iter().for_each(|b| b.store(0, Relaxed));
    }

    /// p50 and p99 in milliseconds of what was recorded since the last reset.
    fn percentiles(&self) -> (f64, f64) {
        let mut merged = [0u64; BUCKETS];
        for (i, b) in self.histogram.iter().enumerate() {
            merged[i % BUCKETS] += b.load(Relaxed);
        }
        let total: u64 = merged.iter().sum();
        let at = |q: f64| {
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in merged.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_floor(i) as f64 / 1000.0;
                }
            }
            f64::NAN
        };
        if total == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (at(0.5), at(0.99))
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let power = 63 - micros.leading_zeros() as usize; // ≥ 4
    let sub = (micros >> (power - 4)) as usize & (SUB_BUCKETS - 1);
    ((power - 3) * SUB_BUCKETS + sub).min(BUCKETS - 1)
}

fn bucket_floor(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let (power, sub) = (index / SUB_BUCKETS + 3, (index % SUB_BUCKETS) as u64);
    (SUB_BUCKETS as u64 + sub) << (power - 4)
}

// === one socket ===

struct Socket {
    stream: TcpStream,
    /// A frame cut by the end of a read, kept for the next.
    partial: Vec<u8>,
}

#[derive(Debug)]
enum Frame<'a> {
    Text(&'a [u8]),
    Ping(&'a [u8]),
    Close,
    Other,
}

/// Splits one whole frame off `data`: the frame and its length, or None when incomplete.
fn split_frame(data: &[u8]) -> Option<(Frame<'_>, usize)> {
    if data.len() < 2 {
        return None;
    }
    let (opcode, short) = (data[0] & 0x0f, (data[1] & 0x7f) as usize);
    let (len, header) = match short {
        126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as usize, 4),
        127 if data.len() >= 10 => (u64::from_be_bytes(data[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n, 2),
    };
    let payload = data.get(header..header + len)?;
    let frame = match opcode {
        0 | 1 => Frame::Text(payload),
        8 => Frame::Close,
        9 => Frame::Ping(payload),
        _ => Frame::Other,
    };
    Some((frame, header + len))
}

/// A masked client frame (the mask is fixed: this client is not a browser to protect).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// The publisher's timestamp in an event frame: the number after `"t":`.
fn timestamp(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value = 0u64;
    let mut any = false;
    for d in digits {
        value = value * 10 + u64::from(d - b'0');
        any = true;
    }
    any.then_some(value)
}

impl Socket {
    /// TCP connect, the HTTP/1.1 upgrade, and anything the server sent after its 101.
    async fn open(host: &str, path: &str) -> Result<Self, String> {
        let mut stream = TcpStream::connect(host).await.map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).ok();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut head = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        let end = loop {
            let n = stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if head.len() > 16 << 10 {
                return Err("handshake answer too long".into());
            }
        };
        if !head.starts_with(b"HTTP/1.1 101") {
            let line = String::from_utf8_lossy(&head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)]);
            return Err(format!("upgrade refused: {line}"));
        }
        Ok(Self { stream, partial: head[end..].to_vec() })
    }

    /// Reads frames until one contains `needle` (set-up only: the subscribe reply).
    async fn until(&mut self, needle: &[u8]) -> Result<(), String> {
        let mut chunk = vec![0u8; 16 << 10];
        loop {
            while let Some((frame, used)) = split_frame(&self.partial) {
                let found = match frame {
                    Frame::Text(p) if p.windows(needle.len()).any(|w| w == needle) => {
                        if p.windows(8).any(|w| w == b"\"error\":") {
                            return Err(format!("refused: {}", String::from_utf8_lossy(p)));
                        }
                        true
                    }
                    Frame::Close => return Err("closed during set-up".into()),
                    _ => false,
                };
                self.partial.drain(..used);
                if found {
                    return Ok(());
                }
            }
            let n = self.stream.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed during set-up".into());
            }
            self.partial.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes: counts event frames, records their latency, answers pings.
    async fn read_events(mut self, stats: Arc<Stats>) {
        loop {
            if self.stream.readable().await.is_err() {
                break;
            }
            let (pongs, closed) = BUFFER.with(|buffer| self.drain_kernel(&mut buffer.borrow_mut(), &stats));
            for pong in pongs {
                if self.stream.write_all(&pong).await.is_err() {
                    return;
                }
            }
            if closed {
                stats.closed_by_server.fetch_add(1, Relaxed);
                return;
            }
        }
    }

    /// Everything the kernel holds for this socket, parsed; gives the pongs owed and
    /// whether the server closed.
    fn drain_kernel(&mut self, buffer: &mut [u8], stats: &Stats) -> (Vec<Vec<u8>>, bool) {
        let mut pongs = Vec::new();
        let mut len = self.partial.len();
        if len > buffer.len() / 2 {
            // A frame larger than the buffer: never in this benchmark.
            return (pongs, true);
        }
        buffer[..len].copy_from_slice(&self.partial);
        let (mut events, mut closed) = (0u64, false);
        let shard = SHARD.with(|s| *s);
        loop {
            match self.stream.try_read(&mut buffer[len..]) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            let now = micros_now();
            let mut at = 0;
            while let Some((frame, used)) = split_frame(&buffer[at..len]) {
                match frame {
                    Frame::Text(payload) => {
                        if let Some(t) = timestamp(payload) {
                            events += 1;
                            let b = bucket(now.saturating_sub(t));
                            stats.histogram[shard * BUCKETS + b].fetch_add(1, Relaxed);
                        } else if payload.starts_with(b"{\"lost\"") {
                            stats.lost_frames.fetch_add(1, Relaxed);
                        }
                    }
                    Frame::Ping(payload) => pongs.push(client_frame(0x0a, payload)),
                    Frame::Close => closed = true,
                    Frame::Other => {}
                }
                at += used;
            }
            buffer.copy_within(at..len, 0);
            len -= at;
            if closed || len > buffer.len() / 2 {
                break;
            }
        }
        stats.delivered[shard].0.fetch_add(events, Relaxed);
        self.partial.clear();
        self.partial.extend_from_slice(&buffer[..len]);
        if self.partial.capacity() > 64 << 10 && len < 4 << 10 {
            self.partial.shrink_to(4 << 10);
        }
        (pongs, closed)
    }
}

/// Opens socket `i` and subscribes it to `bench` and `room:{i % rooms}`.
async fn subscriber(args: &Args, i: usize) -> Result<Socket, String> {
    let (host, path) =
        args.ws.strip_prefix("ws://").and_then(|r| r.split_once('/')).ok_or("--ws must be ws://HOST/PATH")?;
    let room = format!("room:{}", i % args.rooms);
    match args.kind {
        Kind::Switchyard => {
            let mut socket = Socket::open(host, &format!("/{path}")).await?;
            socket.until(b"\"welcome\"").await?;
            let command = json!({"id": 1, "subscribe": ["bench", room]}).to_string();
            socket.stream.write_all(&client_frame(1, command.as_bytes())).await.map_err(|e| e.to_string())?;
            socket.until(b"\"subscribe\"").await?;
            Ok(socket)
        }
        Kind::Channels => {
            let path = format!("/{path}?c=bench&c={}", room.replace(':', "%3A"));
            let mut socket = Socket::open(host, &path).await?;
            socket.until(b"\"subscribed\"").await?;
            Ok(socket)
        }
    }
}

// === publishing ===

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Publisher {
    host: String,
    path: String,
    key: Option<String>,
    sender: Option<Sender>,
}

impl Publisher {
    fn new(args: &Args) -> Self {
        let rest = args.publish.strip_prefix("http://").expect("--publish must be http://HOST/PATH");
        let (host, path) = rest.split_once('/').expect("--publish must be http://HOST/PATH");
        Self { host: host.into(), path: format!("/{path}"), key: args.key.clone(), sender: None }
    }

    async fn connect(&self) -> Sender {
        let stream = TcpStream::connect(&self.host).await.expect("the publish endpoint accepts");
        stream.set_nodelay(true).ok();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1");
        tokio::spawn(connection);
        sender
    }

    /// POSTs `channels` as events stamped now; fails loudly on a refusal.
    async fn publish(&mut self, channels: impl Iterator<Item = String>) {
        let t = micros_now();
        let mut body = String::from("[");
        for (n, channel) in channels.enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(&format!(r#"{{"channel":"{channel}","event":"e","data":{{"t":{t}}}}}"#));
        }
        body.push(']');
        let body = Bytes::from(body);
        for attempt in 0..2 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.sender = Some(self.connect().await);
            }
            let sender = self.sender.as_mut().unwrap();
            let mut request =
                http::Request::post(&self.path).header("host", &self.host).header("content-type", "application/json");
            if let Some(key) = &self.key {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            let request = request.body(Full::new(body.clone())).unwrap();
            if sender.ready().await.is_err() {
                self.sender = None;
                continue;
            }
            match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let answer = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    assert!(status.is_success(), "publish refused: {status} {}", String::from_utf8_lossy(&answer));
                    return;
                }
                Err(e) if attempt == 0 => {
                    eprintln!("publish failed ({e}), reconnecting");
                    self.sender = None;
                }
                Err(e) => panic!("publish failed twice: {e}"),
            }
        }
    }
}

// === phases ===

/// What the phases need: the counters, the room of each socket, and the processes.
struct Bench {
    args: Arc<Args>,
    stats: Arc<Stats>,
    /// Subscribers per room.
    room_sizes: Vec<u64>,
    opened: u64,
    publisher: Publisher,
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Every event to `bench`: reaches every socket.
    Fanout,
    /// Events round-robin over the rooms: each reaches about ten.
    Rooms,
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct CpuMeter {
    at: Instant,
    server: Option<f64>,
    broker: Option<f64>,
    client: Option<f64>,
    pids: (u32, Option<u32>),
}

impl CpuMeter {
    fn start(server: u32, broker: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            server: cpu_seconds(server),
            broker: broker.and_then(cpu_seconds),
            client: cpu_seconds(std::process::id()),
            pids: (server, broker),
        }
    }

    /// Cores busy since `start`, per process.
    fn stop(&self) -> Value {
        let elapsed = self.at.elapsed().as_secs_f64();
        let busy = |before: Option<f64>, pid: Option<u32>| match (before, pid.and_then(cpu_seconds)) {
            (Some(a), Some(b)) => json!(((b - a) / elapsed * 100.0).round() / 100.0),
            _ => Value::Null,
        };
        let mut out = json!({
            "server": busy(self.server, Some(self.pids.0)),
            "client": busy(self.client, Some(std::process::id())),
        });
        if self.pids.1.is_some() {
            out["broker"] = busy(self.broker, self.pids.1);
        }
        out
    }
}

impl Bench {
    fn channel_batch(&self, shape: Shape, next: &mut usize, count: usize) -> (Vec<String>, u64) {
        let mut owed = 0;
        let channels = (0..count)
            .map(|_| match shape {
                Shape::Fanout => {
                    owed += self.opened;
                    "bench".to_string()
                }
                Shape::Rooms => {
                    let room = *next % self.args.rooms;
                    *next += 1;
                    owed += self.room_sizes[room];
                    format!("room:{room}")
                }
            })
            .collect();
        (channels, owed)
    }

    /// Waits until every owed delivery arrived or none came for a while; gives when the
    /// last one came.
    async fn drain(&self, owed: u64) -> Instant {
        let (mut last, mut last_count) = (Instant::now(), self.stats.delivered());
        loop {
            let now = self.stats.delivered();
            if now != last_count {
                (last, last_count) = (Instant::now(), now);
            }
            if now >= owed || last.elapsed() > DRAIN_PATIENCE {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Publishes as fast as deliveries come back, keeping at most WINDOW_EVENTS per socket unread.
    async fn closed_loop(&mut self, shape: Shape) -> Value {
        let base = self.stats.delivered();
        self.stats.reset_histogram();
        let cpu = CpuMeter::start(self.args.server_pid, self.args.broker_pid);
        let (start, deadline) = (Instant::now(), Instant::now() + Duration::from_secs(self.args.seconds));
        let window = WINDOW_EVENTS * self.opened;
        let batch = batch_size(&self.args, shape);
        let (mut owed, mut next, mut events) = (base, 0usize, 0u64);
        while Instant::now() < deadline {
            if owed.saturating_sub(self.stats.delivered()) > window {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            let (channels, more) = self.channel_batch(shape, &mut next, batch);
            self.publisher.publish(channels.into_iter()).await;
            owed += more;
            events += batch as u64;
        }
        let last = self.drain(owed).await;
        let cpu = cpu.stop();
        self.report(base, owed, events, start, last, None, cpu)
    }

    /// Publishes `deliveries_per_s` worth of events, what is due at every tick.
    async fn paced(&mut self, shape: Shape, deliveries_per_s: f64) -> Value {
        let base = self.stats.delivered();
        self.stats.reset_histogram();
        let per_event = match shape {
            Shape::Fanout => self.opened as f64,
            Shape::Rooms => self.opened as f64 / self.args.rooms as f64,
        };
        let events_per_s = deliveries_per_s / per_event;
        let cpu = CpuMeter::start(self.args.server_pid, self.args.broker_pid);
        let (start, deadline) = (Instant::now(), Instant::now() + Duration::from_secs(self.args.seconds));
        let (mut owed, mut next, mut events) = (base, 0usize, 0u64);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < deadline {
            ticker.tick().await;
            let due = (start.elapsed().as_secs_f64() * events_per_s) as u64;
            let mut count = due.saturating_sub(events) as usize;
            while count > 0 {
                let now = count.min(batch_size(&self.args, shape));
                let (channels, more) = self.channel_batch(shape, &mut next, now);
                self.publisher.publish(channels.into_iter()).await;
                owed += more;
                events += now as u64;
                count -= now;
            }
        }
        let last = self.drain(owed).await;
        let cpu = cpu.stop();
        self.report(base, owed, events, start, last, Some(deliveries_per_s), cpu)
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        base: u64,
        owed: u64,
        events: u64,
        start: Instant,
        last: Instant,
        offered: Option<f64>,
        cpu: Value,
    ) -> Value {
        let delivered = self.stats.delivered() - base;
        let elapsed = last.duration_since(start).as_secs_f64().max(1e-3);
        let (p50, p99) = self.stats.percentiles();
        let mut out = json!({
            "events": events,
            "deliveries": delivered,
            "seconds": (elapsed * 1000.0).round() / 1000.0,
            "deliveries_per_s": (delivered as f64 / elapsed).round(),
            "p50_ms": if p50.is_nan() { Value::Null } else { json!(p50) },
            "p99_ms": if p99.is_nan() { Value::Null } else { json!(p99) },
            "lost": (owed - base).saturating_sub(delivered),
            "cpu": cpu,
        });
        if let Some(offered) = offered {
            out["offered_per_s"] = json!(offered.round());
        }
        eprintln!("{out}");
        out
    }
}

/// Events per publish request (Switchyard's admin API takes at most 10,000).
fn batch_size(args: &Args, shape: Shape) -> usize {
    match shape {
        Shape::Fanout => usize::from(args.fanout_batch),
        Shape::Rooms => ROOMS_BATCH,
    }
}

async fn open_all(args: &Arc<Args>, stats: &Arc<Stats>) -> (Vec<u64>, u64, u64, Vec<String>) {
    let gate = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let deadline = tokio::time::Instant::now() + OPEN_PATIENCE;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.sockets {
        let (args, stats, gate) = (args.clone(), stats.clone(), gate.clone());
        tasks.spawn(async move {
            let socket = tokio::time::timeout_at(deadline, async {
                let _permit = gate.acquire_owned().await.unwrap();
                subscriber(&args, i).await
            })
            .await;
            match socket {
                Ok(Ok(socket)) => {
                    // The reader lives on as its own task; report the room it joined.
                    tokio::spawn(socket.read_events(stats));
                    Ok(i % args.rooms)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err("timed out".into()),
            }
        });
    }
    let mut room_sizes = vec![0; args.rooms];
    let (mut opened, mut failed, mut errors) = (0, 0, Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.expect("no panic") {
            Ok(room) => {
                room_sizes[room] += 1;
                opened += 1;
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }
    (room_sizes, opened, failed, errors)
}

fn main() {
    let args = Arc::new(Args::parse());
    LazyLock::force(&START);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let out = runtime.block_on(run(args));
    println!("{out}");
    // Dropping the runtime would wait on every reader: exit at once.
    std::process::exit(0);
}

async fn run(args: Arc<Args>) -> Value {
    let stats = Arc::new(Stats::new());
    let rss_before = rss_kib(args.server_pid) + args.broker_pid.map_or(0, rss_kib);
    let opening = Instant::now();
    let (room_sizes, opened, failed, errors) = open_all(&args, &stats).await;
    let open_seconds = opening.elapsed().as_secs_f64();
    eprintln!("opened {opened} sockets in {open_seconds:.1} s, {failed} failed {errors:?}");
    // Idle for a moment: the server's per-socket work is done, its allocator settled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(args.server_pid) + args.broker_pid.map_or(0, rss_kib);
    let mut out = json!({
        "kind": format!("{:?}", args.kind).to_lowercase(),
        "opened": opened,
        "failed": failed,
        "errors": errors,
        "open_seconds": (open_seconds * 10.0).round() / 10.0,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_socket_kib": if opened > 0 {
            json!(((rss_after.saturating_sub(rss_before)) as f64 / opened as f64 * 100.0).round() / 100.0)
        } else { Value::Null },
    });
    if opened == 0 {
        return out;
    }
    let publisher = Publisher::new(&args);
    let rate = args.rate as f64;
    let mut bench = Bench { args, stats, room_sizes, opened, publisher };
    for (shape, name) in [(Shape::Fanout, "fanout"), (Shape::Rooms, "rooms")] {
        let max = bench.closed_loop(shape).await;
        let measured = max["deliveries_per_s"].as_f64().unwrap_or(0.0);
        out[format!("{name}_max")] = max;
        let offered = rate.min(0.8 * measured).max(1.0);
        out[format!("{name}_rate")] = bench.paced(shape, offered).await;
    }
    out["slow_reader_closes_seen"] = json!(bench.stats.closed_by_server.load(Relaxed));
    out["lost_frames_seen"] = json!(bench.stats.lost_frames.load(Relaxed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_rise_and_floor_below_the_value() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 100, 1_000, 12_345, 1 << 30] {
            let b = bucket(v);
            assert!(b >= last, "{v}");
            assert!(bucket_floor(b) <= v && v - bucket_floor(b) <= v / 16 + 1, "{v} → {}", bucket_floor(b));
            last = b;
        }
    }

    #[test]
    fn frames_split_and_timestamps_read() {
        let payload = br#"{"push":{"channel":"bench","event":"e","data":{"t":12345},"offset":7}}"#;
        let mut data = vec![0x81, payload.len() as u8];
        data.extend_from_slice(payload);
        let (frame, used) = split_frame(&data).unwrap();
        assert_eq!(used, data.len());
        let Frame::Text(p) = frame else { panic!("{frame:?}") };
        assert_eq!(timestamp(p), Some(12345));
        assert!(split_frame(&data[..data.len() - 1]).is_none());
    }
}
