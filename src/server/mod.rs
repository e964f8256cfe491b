//! Downstream listeners: plain and TLS, HTTP/1.1 and HTTP/2 on each, graceful shutdown.
//!
//! [`start`] binds every listener before it returns (so a bad address fails the start, and
//! tests read the bound ports back), then runs one accept loop per listener. Each connection
//! is a task that serves requests through the [`Router`] until it ends or shutdown begins.
//! [`Running::shutdown`] stops accepting, asks every connection to finish its in-flight
//! requests, and cuts what is left when the grace period runs out.

mod access;
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
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::Body;
use crate::config::Config;
use crate::django::SessionBridge;
use crate::downstream::Downstream;
use crate::hub::Hub;
use crate::proxy::UpstreamTime;
use crate::router::Router;
use crate::ws::{Lifecycle, Websockets};

pub use self::tls::TlsError;

/// After an accept error (out of file descriptors), wait this long before accepting again
/// instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why Switchyard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The session bridge cannot be built from `[django]`.
    #[error("cannot set up the session bridge: {0}")]
    Bridge(#[from] crate::django::BridgeBuildError),
}

/// A started Switchyard: its bound addresses and the handle to stop it.
#[derive(Debug)]
pub struct Running {
    /// Bound plain-HTTP addresses, in config order.
    pub plain_addrs: Vec<SocketAddr>,
    /// Bound TLS addresses, in config order.
    pub tls_addrs: Vec<SocketAddr>,
    graceful: CancellationToken,
    hard: CancellationToken,
    tasks: TaskTracker,
}

/// How shutdown ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Every connection finished within the grace period.
    Clean,
    /// The grace period ran out; the remaining connections were cut.
    Cut,
}

/// What every connection task shares.
struct Shared {
    router: Router,
    config: Arc<Config>,
    http: auto::Builder<TokioExecutor>,
}

/// Binds every listener and starts serving; returns once all are bound.
pub async fn start(config: Arc<Config>) -> Result<Running, StartError> {
    let acceptor = config.server.tls.as_ref().map(tls::acceptor).transpose()?;
    let mut running = Running {
        plain_addrs: Vec::new(),
        tls_addrs: Vec::new(),
        graceful: CancellationToken::new(),
        hard: CancellationToken::new(),
        tasks: TaskTracker::new(),
    };
    let hub = Hub::new(config.websocket.max_per_user, config.websocket.max_per_ip);
    let lifecycle = Lifecycle { graceful: running.graceful.clone(), tasks: running.tasks.clone() };
    let bridge = config.django.as_ref().and_then(|d| d.bridge_settings()).map(SessionBridge::new).transpose()?;
    let websockets = Websockets::new(&config, bridge, hub, lifecycle);
    let router = Router::new(&config, websockets);
    let shared = Arc::new(Shared { router, http: http_builder(&config), config: config.clone() });
    for addr in &config.server.listen.0 {
        let listener = bind(*addr).await?;
        running.plain_addrs.push(listener.local_addr().unwrap_or(*addr));
        running.spawn_accept(listener, None, shared.clone());
    }
    if let (Some(tls), Some(acceptor)) = (&config.server.tls, acceptor) {
        for addr in &tls.listen.0 {
            let listener = bind(*addr).await?;
            running.tls_addrs.push(listener.local_addr().unwrap_or(*addr));
            running.spawn_accept(listener, Some(acceptor.clone()), shared.clone());
        }
    }
    tracing::info!(plain = ?running.plain_addrs, tls = ?running.tls_addrs, upstream = %config.upstream.url, "listening");
    Ok(running)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.server.header_read_timeout.0).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

// === impl Running ===

impl Running {
    /// Stops accepting, lets in-flight requests finish within `grace`, then cuts the rest.
    pub async fn shutdown(self, grace: Duration) -> Shutdown {
        self.graceful.cancel();
        self.tasks.close();
        let outcome = match tokio::time::timeout(grace, self.tasks.wait()).await {
            Ok(()) => Shutdown::Clean,
            Err(_) => Shutdown::Cut,
        };
        self.hard.cancel();
        self.tasks.wait().await;
        tracing::info!(?outcome, "stopped");
        outcome
    }

    fn spawn_accept(&self, listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
        let (graceful, hard, tasks) = (self.graceful.clone(), self.hard.clone(), self.tasks.clone());
        self.tasks.spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    },
                    () = graceful.cancelled() => break,
                };
                let conn = Connection { shared: shared.clone(), graceful: graceful.clone(), hard: hard.clone() };
                tasks.spawn(conn.run(stream, peer, tls.clone()));
            }
        });
    }
}

/// One downstream connection's task.
struct Connection {
    shared: Arc<Shared>,
    graceful: CancellationToken,
    hard: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let downstream = Downstream { peer, tls: tls.is_some(), trusted: self.shared.config.server.trusts(peer.ip()) };
        let Some(acceptor) = tls else {
            return self.serve(stream, downstream).await;
        };
        let handshake = tokio::time::timeout(self.shared.config.server.header_read_timeout.0, acceptor.accept(stream));
        match handshake.await {
            Ok(Ok(stream)) => self.serve(stream, downstream).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(self, stream: S, downstream: Downstream)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.shared.clone();
        let service = service_fn(move |req| {
            let shared = shared.clone();
            async move { Ok::<_, std::convert::Infallible>(shared.respond(req, downstream).await) }
        });
        let conn = self.shared.http.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.graceful.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = self.hard.cancelled() => return,
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %downstream.peer, error = %e, "connection ended with an error");
        }
    }
}

impl Shared {
    /// Routes one request and wraps the response for the access log.
    async fn respond(&self, req: Request<Incoming>, downstream: Downstream) -> Response<Body> {
        if !self.config.log.access {
            return self.router.handle(req, downstream).await;
        }
        let started = Instant::now();
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let response = self.router.handle(req, downstream).await;
        let record = access::AccessRecord {
            started,
            method,
            path,
            status: response.status(),
            upstream: response.extensions().get::<UpstreamTime>().map(|t| t.0),
            peer: downstream.peer,
        };
        response.map(|body| access::Logged::new(body, record).boxed())
    }
}
