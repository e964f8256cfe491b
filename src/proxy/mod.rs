//! Forwarding plain HTTP to the upstream (Django under gunicorn or any WSGI server).
//!
//! The life of a request: refuse a declared body over `max_request_body` → read the body
//! whole (memory, then a temp file; [`request_body`]) unless the route streams → send it
//! with the headers rewritten ([`headers`]) → wait for the response head, the clock
//! starting once the request has gone out → read the response as fast as the upstream
//! writes it ([`response_body`]) unless the route or Django (`X-Accel-Buffering: no`) asks
//! for streaming. A gunicorn sync worker is therefore never held by a slow browser.
//!
//! Each worker thread keeps its own keep-alive connections ([`pool`]); the temp-file budget
//! is shared by all. Every failure is a short plain-text reply from [`ProxyError::status`],
//! logged by who caused it: the browser (400/408/413, debug), Django (502/504, warn), or us
//! (503).

mod connector;
mod disk;
pub mod headers;
mod pool;
mod request_body;
mod response_body;

use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::config::{BufferingConfig, Config};
use crate::downstream::{Downstream, Forwarding};

pub use self::connector::{ConnectError, UpstreamConnector};
pub use self::disk::TempDisk;
use self::pool::{Pool, PoolError, PooledBody};
pub use self::request_body::RequestBodyError;
use self::request_body::{BodyLimits, Sent};
pub use self::response_body::ResponseBodyError;
use self::response_body::{ReadSmall, SpoolLimits};

/// The nginx header a Django view sets to have its response streamed, not buffered.
const X_ACCEL_BUFFERING: &str = "x-accel-buffering";

/// How long the upstream took to answer with its response head; put in the response's
/// extensions for the access log.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTime(pub Duration);

/// Why a request could not be forwarded; each maps to one status in [`ProxyError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The downstream's body cannot go on: too large, too slow, malformed (the browser's
    /// doing), or no room to buffer it (ours).
    #[error(transparent)]
    RequestBody(#[from] RequestBodyError),
    /// The upstream could not be connected to (Django's side).
    #[error("upstream unreachable")]
    UpstreamUnreachable(#[source] ConnectError),
    /// Connecting or waiting for the response head took too long (Django's side).
    #[error("upstream did not answer within {after:?}")]
    UpstreamTimeout { after: Duration },
    /// The upstream broke the exchange (closed early, sent garbage).
    #[error("upstream failed")]
    UpstreamFailed(#[source] hyper::Error),
    /// A small response's body broke before anything was sent downstream.
    #[error(transparent)]
    ResponseBody(#[from] ResponseBodyError),
    /// The upstream answered 101 Switching Protocols, which no forwarded request asks for.
    #[error("upstream switched protocols unasked")]
    UnaskedUpgrade,
}

/// Who a failure is blamed on: decides the log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blame {
    /// The browser (a client fault: debug).
    Downstream,
    /// Django, gunicorn, the upstream socket (warn).
    Upstream,
    /// Switchyard itself: its temp files (error).
    Switchyard,
}

impl ProxyError {
    /// The one place a forwarding failure becomes a status and a reply text.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::RequestBody(RequestBodyError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            Self::RequestBody(RequestBodyError::ReadTimeout { .. }) => {
                (StatusCode::REQUEST_TIMEOUT, "request timeout: the request body did not arrive in time")
            }
            Self::RequestBody(RequestBodyError::Malformed(_)) => {
                (StatusCode::BAD_REQUEST, "bad request: the request body is malformed")
            }
            Self::RequestBody(RequestBodyError::TempDiskFull { .. } | RequestBodyError::TempFile(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "service unavailable: no room to buffer the request body")
            }
            Self::UpstreamUnreachable(_) | Self::UpstreamFailed(_) | Self::ResponseBody(_) | Self::UnaskedUpgrade => {
                (StatusCode::BAD_GATEWAY, "bad gateway: the application server did not answer")
            }
            Self::UpstreamTimeout { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "gateway timeout: the application server took too long")
            }
        }
    }

    fn blame(&self) -> Blame {
        match self {
            Self::RequestBody(RequestBodyError::TempDiskFull { .. } | RequestBodyError::TempFile(_)) => {
                Blame::Switchyard
            }
            Self::RequestBody(_) => Blame::Downstream,
            Self::ResponseBody(ResponseBodyError::TempFile(_)) => Blame::Switchyard,
            _ => Blame::Upstream,
        }
    }

    fn respond(&self) -> Response<Body> {
        let error = crate::error_chain(self);
        match self.blame() {
            Blame::Downstream => tracing::debug!(%error, "request refused: the browser's fault"),
            Blame::Upstream => tracing::warn!(%error, "the application server (Django) failed the request"),
            Blame::Switchyard => tracing::error!(%error, "cannot forward the request"),
        }
        let (status, message) = self.status();
        body::text(status, message)
    }
}

/// The worker's upstream connections and the limits forwarding applies.
#[derive(Clone, Debug)]
pub struct Proxy {
    pool: Pool,
    response_timeout: Duration,
    body_limits: BodyLimits,
    buffering: BufferingConfig,
    disk: TempDisk,
    /// Whether responses carry [`UpstreamTime`]: only the access log reads it.
    timed: bool,
}

impl Proxy {
    /// Built once per worker; clones share the pool. `disk` is the temp-file budget every
    /// worker shares.
    pub fn new(config: &Config, disk: TempDisk) -> Self {
        let upstream = &config.upstream;
        let connector = UpstreamConnector::new(upstream.url.clone(), upstream.connect_timeout);
        Self {
            pool: Pool::new(connector, upstream.pool_max_idle, upstream.pool_idle_timeout),
            response_timeout: upstream.response_timeout,
            body_limits: BodyLimits {
                max: upstream.max_request_body,
                read_timeout: config.server.body_read_timeout,
                memory: config.buffering.request_memory,
                disk_limit: config.buffering.max_temp_disk,
            },
            buffering: config.buffering.clone(),
            disk,
            timed: config.log.access,
        }
    }

    /// Forwards one plain-HTTP request and returns the upstream's response, or our error
    /// reply. `buffering` is the route's say (`None`: `[buffering]` decides).
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        downstream: &Downstream,
        forwarding: &Forwarding,
        buffering: Option<bool>,
    ) -> Response<Body> {
        match self.try_forward(req, downstream, forwarding, buffering).await {
            Ok(response) => response,
            Err(e) => e.respond(),
        }
    }

    async fn try_forward(
        &self,
        req: Request<Incoming>,
        downstream: &Downstream,
        forwarding: &Forwarding,
        buffering: Option<bool>,
    ) -> Result<Response<Body>, ProxyError> {
        if declared_length(&req).is_some_and(|len| len > self.body_limits.max) {
            return Err(RequestBodyError::TooLarge { limit: self.body_limits.max }.into());
        }
        let buffer_request = buffering.unwrap_or(self.buffering.requests);
        let upstream_req = self.upstream_request(req, downstream.trusted, forwarding, buffer_request).await?;
        let (response, waited) = self.send(upstream_req).await?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // We never forward an upgrade (WebSockets end here), so nobody asked for this.
            return Err(ProxyError::UnaskedUpgrade);
        }
        let mut response = response;
        let stream = match response.headers_mut().remove(X_ACCEL_BUFFERING) {
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"no") => true,
            Some(v) if v.as_bytes().eq_ignore_ascii_case(b"yes") => false,
            _ => !buffering.unwrap_or(self.buffering.responses),
        };
        let mut response = match stream {
            true => response.map(boxed),
            false => self.buffered_response(response).await?,
        };
        // The downstream connection has its own version; hyper picks the wire format from it.
        *response.version_mut() = Version::default();
        headers::prepare_response(response.headers_mut());
        if self.timed {
            response.extensions_mut().insert(UpstreamTime(waited));
        }
        Ok(response)
    }

    /// Sends the request; the upstream's clock (`response_timeout`) starts once the request
    /// body has gone out, so a slow upload is never blamed on Django.
    async fn send(&self, req: Request<Body>) -> Result<(Response<PooledBody>, Duration), ProxyError> {
        let (parts, body) = req.into_parts();
        let (body, sent) = match body.is_end_stream() {
            true => (body, None),
            false => {
                let (body, sent) = Sent::new(body);
                (body.boxed(), Some(sent))
            }
        };
        let request = self.pool.send(Request::from_parts(parts, body));
        tokio::pin!(request);
        let early = match sent {
            Some(sent) => tokio::select! {
                answered = &mut request => Some(answered),
                _ = sent => None,
            },
            None => None,
        };
        let started = Instant::now();
        let answered = match early {
            Some(answered) => answered,
            None => tokio::time::timeout(self.response_timeout, request)
                .await
                .map_err(|_| ProxyError::UpstreamTimeout { after: self.response_timeout })?,
        };
        answered.map(|response| (response, started.elapsed())).map_err(|e| self.classify(e))
    }

    /// The response with its body read as fast as the upstream writes it.
    async fn buffered_response(&self, response: Response<PooledBody>) -> Result<Response<Body>, ProxyError> {
        let (parts, body) = response.into_parts();
        let limits = SpoolLimits {
            memory: self.buffering.response_memory,
            max_file: self.buffering.max_response_temp_file,
            read_timeout: self.response_timeout,
        };
        let body = match response_body::read_small(body, &limits).await {
            Ok(whole) => whole,
            Err(ReadSmall::Unread(body)) if body.is_end_stream() => boxed(body),
            Err(ReadSmall::Unread(body)) => response_body::spool(body, limits, self.disk.clone()),
            Err(ReadSmall::Failed(e)) => return Err(e.into()),
        };
        Ok(Response::from_parts(parts, body))
    }

    /// The request as the upstream gets it: headers rewritten, the target in origin form,
    /// and the body either read whole (with its `Content-Length`) or streamed.
    async fn upstream_request(
        &self,
        req: Request<Incoming>,
        trusted: bool,
        forwarding: &Forwarding,
        buffer: bool,
    ) -> Result<Request<Body>, ProxyError> {
        let (mut parts, incoming) = req.into_parts();
        headers::prepare_request(&mut parts.headers, trusted, forwarding);
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
        parts.version = Version::HTTP_11;
        let body = if incoming.is_end_stream() {
            // Most requests (every GET): nothing to read, time or count.
            body::empty()
        } else if buffer {
            let buffered = Box::pin(request_body::buffer(incoming, &self.body_limits, &self.disk)).await?;
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(buffered.len));
            buffered.body
        } else {
            request_body::Downstream::new(incoming, &self.body_limits).boxed()
        };
        Ok(Request::from_parts(parts, body))
    }

    /// Finds what went wrong by walking the error's causes.
    fn classify(&self, err: PoolError) -> ProxyError {
        match err {
            PoolError::Connect(ConnectError::TimedOut { after, .. }) => ProxyError::UpstreamTimeout { after },
            PoolError::Connect(unreachable) => ProxyError::UpstreamUnreachable(unreachable),
            PoolError::Exchange(err) => match crate::find_cause::<RequestBodyError>(&err) {
                Some(body) => ProxyError::RequestBody(body.copied()),
                None => ProxyError::UpstreamFailed(err),
            },
        }
    }
}

/// The upstream's body as every response's; boxed only once it is known not to be read
/// whole here.
fn boxed(body: PooledBody) -> Body {
    body.map_err(Into::into).boxed()
}

/// The request's `Content-Length`, when it sent one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
