//! Builders for integration tests: start Switchyard with a TOML text, start an in-test
//! upstream, talk to both over real sockets. Each test file uses the parts it needs.
#![allow(dead_code)]

pub mod binary;
pub mod browser;
pub mod django;
pub mod pg;
pub mod session_fixtures;
pub mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    task: tokio::task::JoinHandle<()>,
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
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            serve_upstream_conn(TokioIo::new(stream), handler.clone());
        }
    });
    Upstream { url, task }
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
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            serve_upstream_conn(TokioIo::new(stream), handler.clone());
        }
    });
    Upstream { url, task }
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

/// Waits until `check` is true, polling every 20 ms, failing after `patience`.
pub async fn eventually(patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + patience;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {patience:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A body for `Full` where a test needs the concrete type.
pub fn full(data: &'static str) -> Full<Bytes> {
    Full::new(Bytes::from_static(data.as_bytes()))
}
