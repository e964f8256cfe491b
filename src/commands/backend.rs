//! Calls to Django views: a signed JSON POST over a pooled client, with a timeout and a
//! bounded reply. Used by `http` command backends and by the `on_connect`/`on_disconnect` hooks.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;

use super::signature;
use crate::clock::Clock;
use crate::config::{BackendsConfig, Secret};
use crate::protocol::{CommandError, ErrorCode};

/// Idle connections kept to Django views; calls are short and frequent.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Why a call to Django failed; [`BackendError::to_command_error`] maps it for the client.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The view could not be reached (Django down, wrong port).
    #[error("backend unreachable: {0}")]
    Unavailable(#[source] hyper_util::client::legacy::Error),
    /// The view took longer than the timeout.
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The view answered with a non-2xx status; `error` is its JSON `error`, if any.
    #[error("backend answered {status}")]
    Status { status: StatusCode, error: Option<Value> },
    /// The reply was not a JSON object, or was larger than `max_reply_size`.
    #[error("backend reply unusable: {0}")]
    BadReply(String),
}

impl BackendError {
    /// The one place a backend failure becomes a protocol error.
    pub fn to_command_error(&self) -> CommandError {
        match self {
            Self::Unavailable(_) => CommandError::new(ErrorCode::BackendUnavailable, "the backend is unavailable"),
            Self::Timeout(_) => CommandError::new(ErrorCode::BackendTimeout, "the backend did not answer in time"),
            Self::Status { status, error } => {
                let code =
                    if *status == StatusCode::FORBIDDEN { ErrorCode::Forbidden } else { ErrorCode::BackendError };
                let message = error
                    .as_ref()
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("the backend answered {}", status.as_u16()), str::to_string);
                CommandError { code, message, detail: error.clone() }
            }
            Self::BadReply(_) => CommandError::new(ErrorCode::BackendError, "the backend's reply was unusable"),
        }
    }
}

/// What a call carries besides its JSON body.
#[derive(Debug, Default)]
pub struct CallHeaders<'a> {
    /// The browser's `Host`.
    pub host: Option<&'a HeaderValue>,
    /// The browser's `Cookie`, when forwarded.
    pub cookie: Option<&'a HeaderValue>,
    /// `X-Forwarded-For` and `X-Forwarded-Proto` as the proxy would send them.
    pub forwarded_for: Option<&'a HeaderValue>,
    /// The scheme the browser used.
    pub forwarded_proto: Option<&'static str>,
    /// The `X-Request-Id` of the socket's upgrade request, so Django's log of a call can be
    /// matched to the socket.
    pub request_id: Option<&'a HeaderValue>,
}

/// The pooled, signing client; cheap to clone.
#[derive(Clone, Debug)]
pub struct Backend {
    client: Client<HttpConnector, Full<Bytes>>,
    secret: Secret,
    /// What each call is signed at (the system clock except in tests).
    clock: Clock,
    max_reply: usize,
    /// The timeout when a command sets none.
    pub default_timeout: Duration,
    /// Whether the browser's cookie goes along when a command does not say.
    pub forward_cookie: bool,
}

impl Backend {
    /// Builds the client from `[backends]`, signing each call at `clock`'s time when it is
    /// made; None when no secret is configured (no calls).
    pub fn new(config: &BackendsConfig, clock: Clock) -> Option<Self> {
        let secret = config.secret.clone()?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(http);
        Some(Self {
            client,
            secret,
            clock,
            max_reply: config.max_reply_size,
            default_timeout: config.timeout,
            forward_cookie: config.forward_cookie,
        })
    }

    /// POSTs `body` to `url`, signed, and returns the reply's JSON object.
    pub async fn call(
        &self,
        url: &str,
        body: &Value,
        headers: &CallHeaders<'_>,
        timeout: Duration,
    ) -> Result<Value, BackendError> {
        let bytes = Bytes::from(serde_json::to_vec(body).map_err(|e| BackendError::BadReply(e.to_string()))?);
        let request = self.request(url, bytes, headers)?;
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => return Err(BackendError::Timeout(timeout)),
            Ok(Err(e)) if e.is_connect() => return Err(BackendError::Unavailable(e)),
            Ok(Err(e)) => return Err(BackendError::BadReply(crate::error_chain(&e).to_string())),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let read = Limited::new(response.into_body(), self.max_reply).collect();
        let body = match tokio::time::timeout(timeout, read).await {
            Err(_) => return Err(BackendError::Timeout(timeout)),
            Ok(Err(e)) => return Err(BackendError::BadReply(e.to_string())),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let value: Option<Value> = serde_json::from_slice(&body).ok().filter(Value::is_object);
        if !status.is_success() {
            let error = value.and_then(|mut v| v.get_mut("error").map(Value::take));
            return Err(BackendError::Status { status, error });
        }
        value.ok_or_else(|| BackendError::BadReply("not a JSON object".into()))
    }

    fn request(&self, url: &str, body: Bytes, headers: &CallHeaders<'_>) -> Result<Request<Full<Bytes>>, BackendError> {
        let mut request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signature::sign(&self.secret, self.clock.unix_secs(), &body));
        if let Some(host) = headers.host {
            request = request.header(header::HOST, host);
        }
        if let Some(cookie) = headers.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(xff) = headers.forwarded_for {
            request = request.header("x-forwarded-for", xff);
        }
        if let Some(proto) = headers.forwarded_proto {
            request = request.header("x-forwarded-proto", proto);
        }
        if let Some(id) = headers.request_id {
            request = request.header(crate::downstream::X_REQUEST_ID, id);
        }
        request.body(Full::new(body)).map_err(|e| BackendError::BadReply(format!("bad backend URL {url}: {e}")))
    }
}
