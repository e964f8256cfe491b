//! Builders for integration tests: start Switchyard with a TOML text, start an in-test
//! upstream, talk to both over real sockets. Each test file uses the parts it needs.
//!
//! The rules these helpers exist for:
//! - No fixed ports and no "free port" guesses: everything binds port 0 and the port is
//!   read back (`Running::plain_addrs`, the binary's "listening" line, gunicorn's
//!   "Listening at:" line). An address that must refuse connections is a [`Refusing`].
//! - No sleeps as synchronisation: wait for a signal with [`eventually`] / [`wait_for`]
//!   (plain or async checks), a [`Gate`] for "the request is in flight", a log line
//!   ([`logs::capture`], [`binary::wait_for_log`]), a hook call. All patience is
//!   [`PATIENCE`]: long, because a loaded machine is slow, never waited out by a pass.
//! - The defaults users get: a test config sets an option only when the test is about it,
//!   and its name says so.
//! - A test that disturbs shared state gets its own: a copied SQLite file, a
//!   [`session_fixtures::PrivateDatabase`] on PostgreSQL.
//! - Verdicts that depend on the clock are checked against a clock the test sets
//!   ([`session_fixtures`]: each Django verdict at the instant Django gave it).
#![allow(dead_code)]

pub mod binary;
pub mod browser;
pub mod django;
pub mod gunicorn;
pub mod logs;
pub mod pg;
pub mod session_fixtures;
pub mod tls;
pub mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchyard::body::Body;
use switchyard::config::{self, Config};
use switchyard::server::Running;
use tokio::net::{TcpListener, UnixListener};

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses a config text as if it were a file in `dir`.
pub fn config_in(dir: &Path, text: &str) -> Arc<Config> {
    let env = std::collections::HashMap::<String, String>::new();
    Arc::new(config::parse(text, "test.toml", dir, &env).expect("test config is valid"))
}

/// Starts Switchyard in this process with `text` as its config file.
pub async fn start_switchyard(text: &str) -> Running {
    let config = config_in(Path::new("."), text);
    switchyard::server::start(config).await.expect("switchyard starts")
}

/// The minimal config: one plain listener on a free port, `upstream` as given, plus `extra`.
pub fn minimal_config(upstream: &str, extra_upstream: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{upstream}\"\n{extra_upstream}\n")
}

/// An in-test upstream; stops when dropped.
pub struct Upstream {
    /// Where it listens, as an `[upstream] url`.
    pub url: String,
    /// Connections it has accepted so far.
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// How many connections it has accepted (a pooled client reuses one).
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an HTTP/1.1 upstream on a free TCP port answering with `handler`.
pub async fn upstream<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = Arc::new(handler);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            serve_upstream_conn(TokioIo::new(stream), handler.clone());
        }
    });
    Upstream { url, accepted, task }
}

/// Starts an HTTP/1.1 upstream on a unix socket at `path`.
pub async fn unix_upstream<F, Fut>(path: &Path, handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = UnixListener::bind(path).unwrap();
    let url = format!("unix:{}", path.display());
    let handler = Arc::new(handler);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            serve_upstream_conn(TokioIo::new(stream), handler.clone());
        }
    });
    Upstream { url, accepted, task }
}

fn serve_upstream_conn<I, F, Fut>(io: I, handler: Arc<F>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(req).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
    });
}

/// A plain HTTP/1.1 client with a connection pool.
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// `http://ADDR/PATH` for a Switchyard listener.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// A request body from bytes.
pub fn bytes_body(data: impl Into<Bytes>) -> Body {
    switchyard::body::full(data)
}

/// The whole body of a response as bytes.
pub async fn read_body<B>(response: Response<B>) -> Bytes
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    response.into_body().collect().await.expect("body reads").to_bytes()
}

/// A reply with `status` and a text body.
pub fn reply(status: u16, text: &'static str) -> Response<Body> {
    let mut r = Response::new(switchyard::body::full(text));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

/// An upstream that answers 200 "reached" (after reading the body) and counts the requests
/// whose path is `path`, or every request when `path` is None: for tests that show a
/// request never reached Django.
pub async fn counting_upstream(path: Option<&'static str>) -> (Upstream, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let up = upstream(move |req: Request<hyper::body::Incoming>| {
        if path.is_none_or(|p| req.uri().path() == p) {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            let _ = req.into_body().collect().await;
            reply(200, "reached")
        }
    })
    .await;
    (up, calls)
}

/// How long a test waits for something that should happen soon: a frame, a log line, a
/// hook call. Generous, because the machine may be loaded; a passing test never waits it
/// out, it goes on as soon as the signal arrives.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How often [`eventually`] and [`wait_for`] look again.
const POLL: Duration = Duration::from_millis(20);

/// A condition [`eventually`] can poll: a closure returning `bool`, or one returning a
/// future of `bool` (for checks that must await: an HTTP request, a query, a frame).
/// `M` only tells the two kinds apart.
pub trait Check<M> {
    fn check(&mut self) -> impl Future<Output = bool>;
}

/// Marker for plain `FnMut() -> bool` checks.
pub struct Plain;
/// Marker for `FnMut() -> impl Future<Output = bool>` checks.
pub struct Awaited;

impl<F: FnMut() -> bool> Check<Plain> for F {
    fn check(&mut self) -> impl Future<Output = bool> {
        std::future::ready(self())
    }
}

impl<F: FnMut() -> Fut, Fut: Future<Output = bool>> Check<Awaited> for F {
    fn check(&mut self) -> impl Future<Output = bool> {
        self()
    }
}

/// Waits until `check` is true, looking every 20 ms, failing with `what` after
/// [`PATIENCE`]. `check` may be a plain closure or an async one:
///
/// ```ignore
/// eventually("the hook is called", || !log.lock().unwrap().is_empty()).await;
/// eventually("Django logged the disconnect", || async { hook_log(&site).await.len() == 2 }).await;
/// ```
pub async fn eventually<M>(what: &str, mut check: impl Check<M>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check.check().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `probe` gives `Some`, looking every 20 ms, and returns the value; fails
/// with `what` after [`PATIENCE`].
pub async fn wait_for<T, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// An address where nothing listens and nothing else can start listening while this
/// lives: a TCP socket bound to a port of its own but never listening, so a connection
/// is refused at once. For "upstream down" and "backend unreachable" tests (a port that
/// was bound and dropped may be taken by a concurrent test before it is used).
pub struct Refusing {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl Refusing {
    /// Binds the socket. Without `SO_REUSEADDR`, no other socket can bind the port.
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("binds port 0");
        Refusing { addr: socket.local_addr().unwrap(), _socket: socket }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A gate an in-test upstream or backend waits at until the test opens it: stands for
/// "the request is in flight" without guessing how long that takes.
#[derive(Clone, Default)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    entered: Arc<tokio::sync::Notify>,
    waiting: Arc<AtomicUsize>,
}

impl Gate {
    /// Called by the upstream: counts itself as waiting, then waits until opened.
    pub async fn pass(&self) {
        let mut open = self.open.subscribe();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_waiters();
        let _ = open.wait_for(|o| *o).await;
    }

    /// Waits (bounded) until `n` requests wait at the gate.
    pub async fn until_waiting(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // Registered before the count is read, so a pass in between still wakes us.
            let entered = self.entered.notified();
            tokio::pin!(entered);
            entered.as_mut().enable();
            if self.waiting.load(Ordering::SeqCst) >= n {
                return;
            }
            assert!(
                tokio::time::timeout_at(deadline, entered).await.is_ok(),
                "{n} request(s) did not reach the gate within {PATIENCE:?}"
            );
        }
    }

    /// Lets every waiting and later request through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// A body for `Full` where a test needs the concrete type.
pub fn full(data: &'static str) -> Full<Bytes> {
    Full::new(Bytes::from_static(data.as_bytes()))
}
