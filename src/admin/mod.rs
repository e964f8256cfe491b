//! The admin listener: how Django publishes, revokes and looks, and how monitoring reads
//! health and metrics. Its own address (`[admin] listen`, keep it private), plain HTTP/1.1,
//! JSON in and out. Every `/api/*` request needs `Authorization: Bearer <key>` (compared in
//! constant time); `/healthz` and `/metrics` need none. Failures are [`AdminError`]s, turned
//! into a status and `{"error": {"code", "message"}}` in [`AdminError::respond`] only.
//!
//! # API
//!
//! `POST /api/publish` — body: one item or a list of items. An item has exactly one target
//! and an event: `{"channel": "news" | "user": "42" | "users": ["1","2"] | "connection": "<id>"
//! | "connections": [...] | "broadcast": true, "event": "name" (default "message"), "data": any}`.
//! The whole batch is checked first (a bad item, or a channel no `[[channels]]` rule covers,
//! is 400 naming the item's index, and nothing is published), then sent through the broker
//! in order. 200 → `{"results": [...]}`, one per item in order: `{"channel": "news",
//! "offset": 42, "epoch": "k3f…"}` for channel items, `{"sent": true}` for the others.
//!
//! `POST /api/disconnect` — body `{"user": "42"}` (every session of the user: password
//! change, deactivation) or `{"session_key": "<key>"}` (one session: logout). The session
//! bridge forgets the cached identities and the sockets close with 4401, on every node.
//! 200 → `{"ok": true}`.
//!
//! `GET /api/presence?channel=NAME` — 200 → `{"channel", "count": sockets subscribed
//! (anonymous included), "users": [{"id", "username", "is_staff", "is_superuser"}] (each once)}`;
//! 400 when the channel's rule has `presence = false`; 404 when no rule covers it.
//!
//! `GET /api/channels` — 200 → `{"channels": [{"channel", "subscribers", "offset", "epoch"}]}`
//! for every channel this node holds. `GET /api/channels?channel=NAME` — the same shape with
//! that one channel, also when it has no subscribers yet (its current offset and epoch, the
//! position a page hands to the browser for `since`); 404 when no rule covers it.
//!
//! `GET /healthz` — 200 `{"ok": true, "broker": {"kind", "state", "ok", "lag_seconds",
//! "events_per_second", …}}`, 503 with the same body when the broker is not ok.
//! `GET /metrics` — Prometheus text (prometheus-client).
//!
//! Errors: 400 `bad_request` (malformed JSON or item), 401 `unauthorized` (no or wrong
//! key), 404 `not_found`, 405 `method_not_allowed`, 413 `too_large`, 503 `unavailable`
//! (the broker cannot take events now).

pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::{self, Body};
use crate::broker::{self, Message, Publication, Receipt, Revocation, Target};
use crate::config::Secret;
use crate::django::SessionBridge;
use crate::hub::Hub;

/// Largest request body: a batch of a few thousand events.
pub const MAX_BODY: usize = 8 << 20;
/// Most items in one publish batch.
pub const MAX_BATCH: usize = 10_000;

/// Why an admin request failed; each maps to one status in [`AdminError::respond`].
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No `Authorization: Bearer` header, or the wrong key (the caller's fault).
    #[error("a valid `Authorization: Bearer <key>` header is required")]
    Unauthorized,
    /// No such endpoint.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// The endpoint takes another method.
    #[error("{0} takes {1}")]
    MethodNotAllowed(&'static str, &'static str),
    /// The body is larger than [`MAX_BODY`].
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body or query is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// The broker cannot take events now (our side, or PostgreSQL's).
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
}

impl AdminError {
    /// The one place an admin failure becomes a status and a body.
    pub fn respond(&self) -> Response<Body> {
        let (status, code) = match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed(..) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        match self {
            Self::Unavailable(_) => tracing::warn!(error = %self, "admin request failed"),
            _ => tracing::debug!(error = %self, "admin request refused"),
        }
        let mut response = json_response(status, &json!({"error": {"code": code, "message": self.to_string()}}));
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<broker::BrokerError> for AdminError {
    fn from(e: broker::BrokerError) -> Self {
        match e {
            broker::BrokerError::Refused(reason) => Self::BadRequest(reason),
            broker::BrokerError::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}

/// What the admin listener serves from; cheap to clone.
#[derive(Clone, Debug)]
pub struct Admin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    key: Secret,
    metrics: metrics::Metrics,
}

impl Admin {
    /// The admin API over `hub`, requiring `key`.
    pub fn new(hub: Hub, bridge: Option<SessionBridge>, key: Secret) -> Self {
        let metrics = metrics::Metrics::new(hub.clone(), bridge);
        Self { inner: Arc::new(Inner { hub, key, metrics }) }
    }

    /// Accepts on `listener` until `shutdown`; each connection is a task in `tasks`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken, tasks: TaskTracker) {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let admin = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { admin.connection(stream, peer, shutdown).await });
        }
    }

    async fn connection(self, stream: tokio::net::TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let service = service_fn(move |req| {
            let admin = self.clone();
            async move { Ok::<_, Infallible>(admin.handle(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            },
            () = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match self.route(req).await {
            Ok(response) => response,
            Err(e) => e.respond(),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, AdminError> {
        let path = req.uri().path().to_string();
        match path.as_str() {
            "/healthz" => return Ok(self.healthz()),
            "/metrics" => return Ok(self.inner.metrics.respond()),
            _ if !path.starts_with("/api/") => return Err(AdminError::NotFound(path)),
            _ => {}
        }
        self.authorize(&req)?;
        let method = req.method().clone();
        match (path.as_str(), method) {
            ("/api/publish", Method::POST) => self.publish(read_json(req).await?).await,
            ("/api/disconnect", Method::POST) => self.disconnect(read_json(req).await?).await,
            ("/api/presence", Method::GET) => self.presence(query_channel(&req)?),
            ("/api/channels", Method::GET) => self.channels(query_channel(&req).ok()).await,
            ("/api/publish" | "/api/disconnect", _) => Err(AdminError::MethodNotAllowed("this endpoint", "POST")),
            ("/api/presence" | "/api/channels", _) => Err(AdminError::MethodNotAllowed("this endpoint", "GET")),
            _ => Err(AdminError::NotFound(path)),
        }
    }

    /// The bearer key, compared in constant time.
    fn authorize<B>(&self, req: &Request<B>) -> Result<(), AdminError> {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AdminError::Unauthorized)?;
        let expected = self.inner.key.expose().as_bytes();
        if bool::from(given.trim().as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(AdminError::Unauthorized)
        }
    }

    fn healthz(&self) -> Response<Body> {
        let health = self.inner.hub.broker().health();
        let status = if health.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        json_response(status, &json!({"ok": health.ok, "broker": health}))
    }

    async fn publish(&self, body: Value) -> Result<Response<Body>, AdminError> {
        let items = match body {
            Value::Array(items) => items,
            item @ Value::Object(_) => vec![item],
            _ => return Err(AdminError::BadRequest("the body is an item or a list of items".into())),
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(AdminError::BadRequest(format!("publish 1 to {MAX_BATCH} items")));
        }
        let hub = &self.inner.hub;
        let batch = (items.iter().enumerate())
            .map(|(i, item)| {
                let publication =
                    broker::parse_publication(item).map_err(|e| AdminError::BadRequest(format!("item {i}: {e}")))?;
                if let Target::Channel(channel) = &publication.target {
                    if hub.rules().for_channel(channel).is_none() {
                        return Err(AdminError::BadRequest(format!(
                            "item {i}: no [[channels]] rule covers `{channel}`"
                        )));
                    }
                }
                Ok(Message::Publish(publication))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channels: Vec<Option<String>> = (batch.iter())
            .map(|m| match m {
                Message::Publish(Publication { target: Target::Channel(c), .. }) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let receipts = hub.broker().send(batch).await?;
        let results: Vec<Value> = (receipts.iter().zip(channels))
            .map(|(receipt, channel)| match (receipt, channel) {
                (Receipt::Channel(p), Some(c)) => json!({"channel": c, "offset": p.offset, "epoch": &*p.epoch}),
                _ => json!({"sent": true}),
            })
            .collect();
        Ok(json_response(StatusCode::OK, &json!({ "results": results })))
    }

    async fn disconnect(&self, body: Value) -> Result<Response<Body>, AdminError> {
        let id = |v: &Value| match v {
            Value::String(s) if !s.is_empty() && s.len() <= 255 => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let revocation = match (body.get("user"), body.get("session_key")) {
            (Some(user), None) => Revocation::User(id(user).ok_or_else(|| bad("`user` is an id"))?),
            (None, Some(Value::String(key))) if !key.is_empty() && key.len() <= 4096 => {
                Revocation::Session(key.clone())
            }
            _ => return Err(bad("write {\"user\": \"42\"} or {\"session_key\": \"...\"}")),
        };
        self.inner.hub.broker().send(vec![Message::Revoke(revocation)]).await?;
        Ok(json_response(StatusCode::OK, &json!({"ok": true})))
    }

    fn presence(&self, channel: String) -> Result<Response<Body>, AdminError> {
        let hub = &self.inner.hub;
        let rule = hub.rules().for_channel(&channel).ok_or_else(|| no_rule(&channel))?;
        if !rule.presence {
            return Err(bad(&format!("presence is off for `{channel}`")));
        }
        let (users, count) = hub.existing_room(&channel).map(|room| room.presence()).unwrap_or_default();
        let users: Vec<&crate::django::User> = users.iter().map(|u| &**u).collect();
        Ok(json_response(StatusCode::OK, &json!({"channel": channel, "count": count, "users": users})))
    }

    async fn channels(&self, one: Option<String>) -> Result<Response<Body>, AdminError> {
        let hub = &self.inner.hub;
        let entry = |name: &str, subscribers: usize, p: &crate::broker::Position| json!({"channel": name, "subscribers": subscribers, "offset": p.offset, "epoch": &*p.epoch});
        let channels: Vec<Value> = match one {
            Some(channel) => {
                let room = hub.room(&channel).await.map_err(|e| match e {
                    crate::hub::SubscribeError::NoRule(_) => no_rule(&channel),
                    other => AdminError::Unavailable(other.to_string()),
                })?;
                vec![entry(&room.name, room.subscribers(), &room.position())]
            }
            None => hub.channels().iter().map(|(name, subs, position)| entry(name, *subs, position)).collect(),
        };
        Ok(json_response(StatusCode::OK, &json!({ "channels": channels })))
    }
}

fn bad(message: &str) -> AdminError {
    AdminError::BadRequest(message.to_string())
}

fn no_rule(channel: &str) -> AdminError {
    AdminError::NotFound(format!("no [[channels]] rule covers `{channel}`"))
}

/// The `channel` query parameter (percent-decoded).
fn query_channel<B>(req: &Request<B>) -> Result<String, AdminError> {
    let query = req.uri().query().unwrap_or("");
    let found = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "channel");
    let value = found.map(|(_, v)| v.into_owned()).ok_or_else(|| bad("give ?channel=NAME"))?;
    if crate::config::is_channel_name(&value) {
        Ok(value)
    } else {
        Err(bad("`channel` is 1 to 255 printable characters without spaces"))
    }
}

async fn read_json(req: Request<Incoming>) -> Result<Value, AdminError> {
    let collected = Limited::new(req.into_body(), MAX_BODY).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            AdminError::TooLarge
        } else {
            AdminError::BadRequest(format!("the body could not be read: {e}"))
        }
    })?;
    serde_json::from_slice(&collected.to_bytes()).map_err(|e| AdminError::BadRequest(format!("not JSON: {e}")))
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(body::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_parameter_is_form_decoded() {
        let channel = |uri: &str| query_channel(&Request::get(uri).body(()).unwrap());
        assert_eq!(channel("/api/presence?x=1&channel=model%3Aa%2Bb%26c").unwrap(), "model:a+b&c");
        assert!(channel("/api/presence?channel=a+b").is_err(), "a space is not a channel name");
        assert!(channel("/api/presence?chan=a").is_err());
    }

    #[test]
    fn every_error_has_its_status() {
        assert_eq!(AdminError::Unauthorized.respond().status(), 401);
        assert_eq!(AdminError::TooLarge.respond().status(), 413);
        assert_eq!(AdminError::Unavailable("x".into()).respond().status(), 503);
        assert_eq!(AdminError::BadRequest("x".into()).respond().status(), 400);
    }
}
