//! Forwarding plain HTTP to the upstream (Django under gunicorn or any WSGI server).
//!
//! One pooled keep-alive client is built at start and shared. Bodies stream both ways with
//! hyper's back-pressure, so memory stays bounded whatever their size. Every failure becomes a
//! short plain-text reply: 413 (body over the limit), 502 (upstream unreachable or broken),
//! 504 (upstream too slow). The upstream's own status, headers and trailers pass unchanged.

mod connector;
pub mod headers;
mod limit;

use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{self, Body};
use crate::config::{UpstreamConfig, UpstreamUrl};
use crate::downstream::Downstream;

pub use self::connector::{ConnectError, UpstreamConnector};
pub use self::limit::BodyTooLarge;

/// How long the upstream took to answer with its response head; put in the response's
/// extensions for the access log.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTime(pub Duration);

/// Why a request could not be forwarded; each maps to one status in [`ProxyError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The downstream's body is over `max_request_body` (the browser's doing).
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// The upstream could not be connected to (Django's side).
    #[error("upstream unreachable")]
    UpstreamUnreachable(#[source] hyper_util::client::legacy::Error),
    /// Connecting or waiting for the response head took too long (Django's side).
    #[error("upstream did not answer within {after:?}")]
    UpstreamTimeout { after: Duration },
    /// The upstream broke the exchange (closed early, sent garbage).
    #[error("upstream failed")]
    UpstreamFailed(#[source] hyper_util::client::legacy::Error),
}

impl ProxyError {
    /// The one place a forwarding failure becomes a status and a reply text.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            Self::UpstreamUnreachable(_) | Self::UpstreamFailed(_) => {
                (StatusCode::BAD_GATEWAY, "bad gateway: the application server did not answer")
            }
            Self::UpstreamTimeout { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "gateway timeout: the application server took too long")
            }
        }
    }

    fn respond(&self) -> Response<Body> {
        match self {
            Self::BodyTooLarge { .. } => tracing::debug!(error = %self, "request refused"),
            _ => tracing::warn!(error = %crate::error_chain(self), "forwarding failed"),
        }
        let (status, message) = self.status();
        body::text(status, message)
    }
}

/// The pooled client to the upstream and the limits it applies.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<UpstreamConnector, Body>,
    authority: Authority,
    response_timeout: Duration,
    max_request_body: u64,
}

impl Proxy {
    /// Builds the pooled client once; clones share the pool.
    pub fn new(config: &UpstreamConfig) -> Self {
        let connector = UpstreamConnector::new(config.url.clone(), config.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .build(connector);
        let authority = match &config.url {
            UpstreamUrl::Tcp { authority } => authority.parse().ok(),
            UpstreamUrl::Unix { .. } => None,
        };
        Self {
            client,
            // A unix upstream has no authority; this one only keys the connection pool.
            authority: authority.unwrap_or_else(|| Authority::from_static("upstream.invalid")),
            response_timeout: config.response_timeout,
            max_request_body: config.max_request_body,
        }
    }

    /// Forwards one plain-HTTP request and returns the upstream's response, or our error reply.
    pub async fn forward(&self, req: Request<Incoming>, downstream: &Downstream) -> Response<Body> {
        match self.try_forward(req, downstream).await {
            Ok(response) => response,
            Err(e) => e.respond(),
        }
    }

    async fn try_forward(&self, req: Request<Incoming>, downstream: &Downstream) -> Result<Response<Body>, ProxyError> {
        if declared_length(&req).is_some_and(|len| len > self.max_request_body) {
            return Err(ProxyError::BodyTooLarge { limit: self.max_request_body });
        }
        let upstream_req = self.upstream_request(req, downstream);
        let started = Instant::now();
        let waiting = tokio::time::timeout(self.response_timeout, self.client.request(upstream_req));
        let response = match waiting.await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(_) => return Err(ProxyError::UpstreamTimeout { after: self.response_timeout }),
        };
        let mut response = response.map(|b| b.map_err(Into::into).boxed());
        // The downstream connection has its own version; hyper picks the wire format from it.
        *response.version_mut() = Version::default();
        headers::prepare_response(response.headers_mut());
        response.extensions_mut().insert(UpstreamTime(started.elapsed()));
        Ok(response)
    }

    fn upstream_request(&self, req: Request<Incoming>, downstream: &Downstream) -> Request<Body> {
        let (mut parts, incoming) = req.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        headers::prepare_request(&mut parts.headers, downstream, authority.as_deref());
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .unwrap_or_default();
        parts.version = Version::HTTP_11;
        Request::from_parts(parts, limit::Limited::new(incoming, self.max_request_body).boxed())
    }

    /// Finds what went wrong by walking the error's causes.
    fn classify(&self, err: hyper_util::client::legacy::Error) -> ProxyError {
        if let Some(too_large) = crate::find_cause::<BodyTooLarge>(&err) {
            return ProxyError::BodyTooLarge { limit: too_large.limit };
        }
        match crate::find_cause::<ConnectError>(&err) {
            Some(ConnectError::TimedOut { after, .. }) => ProxyError::UpstreamTimeout { after: *after },
            Some(ConnectError::Unreachable { .. }) => ProxyError::UpstreamUnreachable(err),
            None => ProxyError::UpstreamFailed(err),
        }
    }
}

/// The request's `Content-Length`, when it sent one.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
