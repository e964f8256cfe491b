//! Downstream listeners: plain and TLS, HTTP/1.1 and HTTP/2 on each, graceful shutdown.
//!
//! [`start`] and [`start_workers`] bind every listener before they return (so a bad address
//! fails the start, and tests read the bound ports back), then run accept loops: on the
//! current runtime, or on one single-threaded runtime per worker thread. Each connection is
//! a task that serves requests through its runtime's [`Router`] until it ends or shutdown
//! begins. [`Running::shutdown`] stops accepting, asks every connection (WebSockets too) to
//! finish, and cuts what is left when the grace period runs out.

mod accept;
mod access;
mod acme;
mod idle;
mod listeners;
pub mod notify;
mod reload;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::Body;
use crate::clock::Clock;
use crate::config::Config;
use crate::django::SessionBridge;
use crate::downstream::{Downstream, X_REQUEST_ID};
use crate::hub::Hub;
use crate::proxy::{TempDisk, UpstreamTime};
use crate::router::Router;
use crate::ws::{Lifecycle, Websockets};

pub use self::acme::AcmeStatus;
pub use self::listeners::Inherited;
use self::listeners::Listeners;
pub use self::reload::{ReloadError, Reloaded};
use self::tls::Terminator;
pub use self::tls::TlsError;

/// How long a connection closed for idleness may take to say goodbye (HTTP/2 GOAWAY)
/// before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a stop waits for the first request of a connection accepted just before it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);
/// How often expired history is forgotten and idle rooms dropped: often enough that memory
/// follows the TTLs, rarely enough to cost nothing.
const HUB_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why Switchyard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A worker thread or its runtime could not be started.
    #[error("cannot start a worker thread: {0}")]
    Runtime(std::io::Error),
    /// The session bridge cannot be built from `[django]`.
    #[error("cannot set up the session bridge: {0}")]
    Bridge(#[from] crate::django::BridgeBuildError),
    /// A socket handed over by the service manager (`LISTEN_FDS`) is not a TCP listener.
    #[error("inherited socket #{index} (LISTEN_FDS) is not a listening TCP socket: {source}")]
    Inherited { index: usize, source: std::io::Error },
    /// Sockets handed over by the service manager that no listener of the config claims.
    #[error(
        "the service manager passed sockets on {0:?} that no listener claims: write each address of the socket \
         unit as a [server] listen, [server.tls] listen or [admin] listen address"
    )]
    Unplaced(Vec<SocketAddr>),
}

/// A started Switchyard: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    /// Bound plain-HTTP addresses, in config order.
    pub plain_addrs: Vec<SocketAddr>,
    /// Bound TLS addresses, in config order.
    pub tls_addrs: Vec<SocketAddr>,
    /// The bound admin address, when `[admin]` is configured.
    pub admin_addr: Option<SocketAddr>,
    /// How many listeners serve sockets the service manager handed over.
    pub inherited: usize,
    graceful: CancellationToken,
    hard: CancellationToken,
    tasks: TaskTracker,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Each runtime that serves (the worker threads', or the caller's) and what its
    /// connections share, which a reload replaces.
    workers: Vec<Worker>,
    plan: Arc<Plan>,
}

/// One runtime that serves, and the parts its requests use.
#[derive(Debug)]
struct Worker {
    runtime: tokio::runtime::Handle,
    current: Current,
}

/// The [`Shared`] in force on one worker: each new connection and each request loads it,
/// so a reload reaches the next request even on a kept-alive connection.
type Current = Arc<arc_swap::ArcSwap<Shared>>;

/// How shutdown ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every connection finished within the grace period.
    Clean,
    /// The grace period ran out; the remaining connections were cut.
    Cut,
}

/// What every connection task shares, built from one config.
struct Shared {
    router: Router,
    config: Arc<Config>,
    http: auto::Builder<TokioExecutor>,
    /// How TLS listeners accept (a reload may bring new certificate files).
    tls: Option<Terminator>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("router", &self.router).finish_non_exhaustive()
    }
}

/// Binds every listener and serves on the current tokio runtime; returns once all are bound.
/// Tests use this; the binary uses [`start_workers`].
pub async fn start(config: Arc<Config>) -> Result<Running, StartError> {
    start_with_clock(config, Clock::system()).await
}

/// [`start`] reading the wall-clock time from `clock`: session expiry and the time backend
/// calls are signed at. Tests set it to check both against exact instants.
pub async fn start_with_clock(config: Arc<Config>, clock: Clock) -> Result<Running, StartError> {
    let listeners = Listeners::bind(&config, Inherited::none())?;
    let plan = Arc::new(Plan::new(config, &listeners, clock)?);
    let mut running = plan.running(&listeners);
    let current = plan.serve(&listeners)?;
    running.workers.push(Worker { runtime: tokio::runtime::Handle::current(), current });
    plan.announce(&running);
    Ok(running)
}

/// Serves with `workers` threads, each running its own single-threaded runtime and its own
/// upstream pool, so a request never changes thread. Every thread accepts from the same
/// listeners (the least busy one tends to win each accept); sockets on every thread share
/// one hub and session bridge. Listeners whose address is among the `inherited` sockets
/// (systemd socket activation) serve those; the others are bound. Returns once every
/// thread serves.
pub fn start_workers(config: Arc<Config>, workers: usize, inherited: Inherited) -> Result<Running, StartError> {
    let listeners = Arc::new(Listeners::bind(&config, inherited)?);
    let plan = Arc::new(Plan::new(config, &listeners, Clock::system())?);
    let mut running = plan.running(&listeners);
    for i in 0..workers.max(1) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (plan, listeners, hard) = (plan.clone(), listeners.clone(), running.hard.clone());
        let thread = std::thread::Builder::new().name(format!("switchyard-{i}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(source) => return drop(ready_tx.send(Err(StartError::Runtime(source)))),
            };
            runtime.block_on(async move {
                let served = plan
                    .serve(&listeners)
                    .map(|current| Worker { runtime: tokio::runtime::Handle::current(), current });
                let failed = served.is_err();
                let _ = ready_tx.send(served);
                if !failed {
                    hard.cancelled().await;
                }
            });
        });
        running.threads.push(thread.map_err(StartError::Runtime)?);
        let worker =
            ready_rx.recv().map_err(|_| StartError::Runtime(std::io::Error::other("worker thread died")))??;
        running.workers.push(worker);
    }
    plan.announce(&running);
    Ok(running)
}

/// What every worker needs to serve: config, TLS, and the parts sockets share.
struct Plan {
    /// The config in force (a reload replaces it).
    config: arc_swap::ArcSwap<Config>,
    acceptor: Option<Terminator>,
    /// The ACME certificate's state, when `[server.tls] acme` was set at start.
    acme: Option<Arc<acme::Acme>>,
    /// The first TLS listener's bound port, where `redirect_to_https` points.
    tls_port: Option<u16>,
    hub: Hub,
    bridge: Option<SessionBridge>,
    lifecycle: Lifecycle,
    /// The temp-file budget for buffered bodies, one for every worker.
    disk: TempDisk,
    clock: Clock,
    hard: CancellationToken,
    /// Set by the first worker to serve: node-wide tasks (hub upkeep, the broker's own
    /// work) run once, on that worker's runtime.
    node_tasks: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("hub", &self.hub).finish_non_exhaustive()
    }
}

impl Plan {
    fn new(config: Arc<Config>, listeners: &Listeners, clock: Clock) -> Result<Self, StartError> {
        let acceptor = config.server.tls.as_ref().map(|t| Terminator::new(t, None)).transpose()?;
        let acme = match &acceptor {
            Some(Terminator::Acme(acme)) => Some(acme.clone()),
            _ => None,
        };
        let tls_port = Listeners::addrs(&listeners.tls).first().map(SocketAddr::port);
        let bridge = config.django.clone().map(|s| SessionBridge::with_clock(s, clock.clone())).transpose()?;
        let hub = Hub::from_config(&config, bridge.clone());
        let lifecycle = Lifecycle { graceful: CancellationToken::new(), tasks: TaskTracker::new() };
        let disk = TempDisk::new(config.buffering.temp_dir.clone(), config.buffering.max_temp_disk);
        let node_tasks = std::sync::atomic::AtomicBool::new(false);
        let config = arc_swap::ArcSwap::new(config);
        let hard = CancellationToken::new();
        Ok(Self { config, acceptor, acme, tls_port, hub, bridge, lifecycle, disk, clock, hard, node_tasks })
    }

    fn running(self: &Arc<Self>, listeners: &Listeners) -> Running {
        Running {
            plain_addrs: Listeners::addrs(&listeners.plain),
            tls_addrs: Listeners::addrs(&listeners.tls),
            admin_addr: listeners.admin.as_ref().and_then(|l| l.local_addr().ok()),
            inherited: listeners.inherited,
            graceful: self.lifecycle.graceful.clone(),
            hard: self.hard.clone(),
            tasks: self.lifecycle.tasks.clone(),
            threads: Vec::new(),
            workers: Vec::new(),
            plan: self.clone(),
        }
    }

    /// Starts accept loops for every listener on the current runtime, with a router (and
    /// upstream pool) of this runtime's own; returns the slot a reload replaces it in.
    fn serve(&self, listeners: &Listeners) -> Result<Current, StartError> {
        if !self.node_tasks.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.spawn_node_tasks(listeners)?;
        }
        let current = Arc::new(arc_swap::ArcSwap::new(self.shared(self.config.load_full(), self.acceptor.clone())));
        let plain = listeners.plain.iter().map(|l| (l, false));
        let tls = listeners.tls.iter().map(|l| (l, true));
        for (listener, is_tls) in plain.chain(tls) {
            let register = listener.try_clone().and_then(TcpListener::from_std);
            let addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let listener = register.map_err(|source| StartError::Bind { addr, source })?;
            self.spawn_accept(listener, is_tls, current.clone());
        }
        Ok(current)
    }

    /// What this runtime's connections share under `config`: the router with its own
    /// upstream pool, the HTTP settings, the TLS acceptor.
    fn shared(&self, config: Arc<Config>, tls: Option<Terminator>) -> Arc<Shared> {
        let websockets =
            Websockets::new(&config, self.bridge.clone(), self.hub.clone(), self.lifecycle.clone(), self.clock.clone());
        let router = Router::new(&config, websockets, self.tls_port, self.disk.clone());
        Arc::new(Shared { router, http: http_builder(&config), config, tls })
    }

    /// The admin API and the hub's upkeep (expired history, idle rooms); both end when
    /// shutdown begins. The broker's background work starts in [`Plan::announce`].
    fn spawn_node_tasks(&self, listeners: &Listeners) -> Result<(), StartError> {
        if let (Some(listener), Some(admin)) = (&listeners.admin, &self.config.load().admin) {
            let addr = admin.listen;
            let listener = listener.try_clone().and_then(TcpListener::from_std);
            let listener = listener.map_err(|source| StartError::Bind { addr, source })?;
            let certificate = self.acme.as_ref().map(|acme| acme.status());
            let api = crate::admin::Admin::new(self.hub.clone(), self.bridge.clone(), admin.key.clone(), certificate);
            let (graceful, tasks) = (self.lifecycle.graceful.clone(), self.lifecycle.tasks.clone());
            self.lifecycle.tasks.spawn(api.serve(listener, graceful, tasks));
        }
        if let Some(acme) = self.acme.clone() {
            let graceful = self.lifecycle.graceful.clone();
            self.lifecycle.tasks.spawn(async move { acme.drive(graceful).await });
        }
        let (hub, graceful) = (self.hub.clone(), self.lifecycle.graceful.clone());
        self.lifecycle.tasks.spawn(async move {
            let mut tick = tokio::time::interval(HUB_SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => hub.sweep(),
                    () = graceful.cancelled() => break,
                }
            }
        });
        Ok(())
    }

    /// Says the node listens, then starts the broker's background work on the first
    /// worker's runtime: after the "listening" line, so the broker's own lines ("broker
    /// listening") never come before it, however fast the database answers.
    fn announce(&self, running: &Running) {
        let config = self.config.load();
        let (plain, tls, upstream) = (&running.plain_addrs, &running.tls_addrs, &config.upstream.url);
        let workers = running.threads.len().max(1);
        let admin = running.admin_addr;
        let inherited = running.inherited;
        tracing::info!(?plain, ?tls, ?admin, %upstream, workers, inherited, "listening");
        if let (Some(first), Some(work)) =
            (running.workers.first(), self.hub.broker().background(self.lifecycle.graceful.clone()))
        {
            self.lifecycle.tasks.spawn_on(work, &first.runtime);
        }
    }

    fn spawn_accept(&self, listener: TcpListener, is_tls: bool, current: Current) {
        let (graceful, hard, tasks) =
            (self.lifecycle.graceful.clone(), self.hard.clone(), self.lifecycle.tasks.clone());
        self.lifecycle.tasks.spawn(async move {
            let mut backoff = accept::Backoff::default();
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => {
                            backoff.accepted();
                            pair
                        }
                        Err(e) => {
                            let pause = backoff.failed(&e);
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                () = graceful.cancelled() => break,
                            }
                            continue;
                        }
                    },
                    () = graceful.cancelled() => break,
                };
                let shared = current.load_full();
                let tls = if is_tls { shared.tls.clone() } else { None };
                let conn =
                    Connection { shared, current: current.clone(), graceful: graceful.clone(), hard: hard.clone() };
                tasks.spawn(conn.run(stream, peer, tls));
            }
        });
    }
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let server = &config.server;
    builder.http1().timer(TokioTimer::new()).header_read_timeout(server.header_read_timeout).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(server.http2_ping_interval))
        .keep_alive_timeout(server.http2_ping_timeout);
    builder
}

// === impl Running ===

impl Running {
    /// True when every worker's runtime runs a task within `patience` (the systemd
    /// watchdog's proof of life: a worker stuck in a loop or a blocking call fails it).
    pub async fn responsive(&self, patience: Duration) -> bool {
        let probes = self.workers.iter().map(|worker| worker.runtime.spawn(async {}));
        let answered = futures_util::future::join_all(probes);
        matches!(tokio::time::timeout(patience, answered).await, Ok(results) if results.iter().all(Result::is_ok))
    }

    /// Stops accepting, lets in-flight requests finish within `grace`, then cuts the rest.
    pub async fn shutdown(self, grace: Duration) -> Shutdown {
        self.graceful.cancel();
        self.tasks.close();
        let outcome = match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => Shutdown::Clean,
            Err(_) => Shutdown::Cut,
        };
        self.hard.cancel();
        let threads = self.threads;
        // Worker threads end as soon as `hard` is cancelled; their runtimes drop what is left.
        let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
        self.tasks.wait().await;
        tracing::info!(?outcome, "stopped");
        outcome
    }
}

/// One downstream connection's task.
struct Connection {
    /// What was in force when it was accepted: its TLS and HTTP settings.
    shared: Arc<Shared>,
    /// What each of its requests is routed with.
    current: Current,
    graceful: CancellationToken,
    hard: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, tls: Option<Terminator>) {
        let _ = stream.set_nodelay(true);
        let downstream = Downstream::new(peer, tls.is_some(), self.shared.config.server.trusts(peer.ip()));
        let Some(acceptor) = tls else {
            return self.serve(stream, downstream).await;
        };
        let handshake = tokio::time::timeout(self.shared.config.server.tls_handshake_timeout, acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(Some(stream))) => self.serve(stream, downstream).await,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(self, stream: S, downstream: Downstream)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let current = self.current.clone();
        let activity = idle::Activity::new();
        let tracked = activity.clone();
        let peer = downstream.clone();
        let service = service_fn(move |req| {
            let (shared, in_flight, downstream) = (current.load_full(), tracked.begin(), peer.clone());
            async move {
                let response = shared.respond(req, downstream).await;
                Ok::<_, std::convert::Infallible>(response.map(|body| idle::Held::new(body, in_flight)))
            }
        });
        let conn = self.shared.http.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let server = &self.shared.config.server;
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = activity.quiet(server.header_read_timeout, server.idle_timeout) => {
                tracing::debug!(peer = %downstream.peer, "closing a quiet connection");
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(IDLE_CLOSE_GRACE, conn.as_mut()).await {
                    Ok(result) => result,
                    Err(_) => return,
                }
            }
            () = self.graceful.cancelled() => {
                // hyper closes an HTTP/1 connection at once if no request has begun on it,
                // yet a client that connected before the stop has sent its request or is
                // sending it: let that request begin, then close after its response.
                let patience = FIRST_REQUEST_GRACE.min(server.header_read_timeout);
                tokio::select! {
                    result = conn.as_mut() => return log_end(result, &downstream),
                    _ = tokio::time::timeout(patience, activity.first_request()) => {}
                    () = self.hard.cancelled() => return,
                }
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = self.hard.cancelled() => return,
                }
            }
        };
        log_end(result, &downstream);
    }
}

fn log_end<E: std::fmt::Display>(result: Result<(), E>, downstream: &Downstream) {
    if let Err(e) = result {
        tracing::debug!(peer = %downstream.peer, error = %e, "connection ended with an error");
    }
}

impl Shared {
    /// Routes one request under its id (which the response carries) and wraps the
    /// response for the access log.
    async fn respond(&self, req: Request<Incoming>, downstream: Downstream) -> Response<Body> {
        let request_id = downstream.request_id(req.headers());
        let logged =
            self.config.log.access.then(|| (Instant::now(), req.method().clone(), req.uri().path().to_owned()));
        let peer = downstream.peer;
        let mut response = self.router.handle(req, downstream, request_id.clone()).await;
        let Some((started, method, path)) = logged else {
            response.headers_mut().insert(X_REQUEST_ID, request_id);
            return response;
        };
        response.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        let record = access::AccessRecord {
            started,
            method,
            path,
            status: response.status(),
            upstream: response.extensions().get::<UpstreamTime>().map(|t| t.0),
            peer,
            request_id,
        };
        response.map(|body| access::Logged::new(body, record).boxed())
    }
}
