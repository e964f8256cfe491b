//! WebSocket termination: the phases of an upgrade (handshake → origin → identity → caps →
//! 101), then the socket's life in [`connection`]. RFC 6455; permessage-deflate is never
//! offered (tungstenite has none).

mod close;
mod connection;
pub mod handshake;
mod hooks;
mod read_ahead;

use std::sync::{Arc, Mutex};

use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::close::CloseReason;
use self::handshake::HandshakeError;
use crate::body::Body;
use crate::clock::Clock;
use crate::commands::{Caller, Commands};
use crate::config::{Config, RouteConfig};
use crate::django::{Identity, SessionBridge};
use crate::downstream::{owned, Forwarding};
use crate::hub::{Hub, Slot};
use crate::proxy::headers;
use crate::routes;

/// Who owns socket tasks: shutdown cancels `graceful` and waits for `tasks`.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// Cancelled when shutdown begins: every socket closes with 1001.
    pub graceful: CancellationToken,
    /// Every socket task, so shutdown can wait for their disconnect hooks.
    pub tasks: TaskTracker,
}

/// Everything sockets share; built once, cheap to clone.
#[derive(Clone)]
pub struct Websockets {
    inner: Arc<Shared>,
}

struct Shared {
    config: crate::config::WebsocketConfig,
    hub: Hub,
    commands: Commands,
    bridge: Option<SessionBridge>,
    lifecycle: Lifecycle,
}

impl std::fmt::Debug for Websockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Websockets").field("sockets", &self.inner.hub.len()).finish()
    }
}

impl Websockets {
    /// Builds the shared parts; `bridge` is None when no `[django]` section exists (everyone
    /// is anonymous then); backend calls are signed at `clock`'s time.
    pub fn new(config: &Config, bridge: Option<SessionBridge>, hub: Hub, lifecycle: Lifecycle, clock: Clock) -> Self {
        let commands = Commands::new(config, hub.clone(), clock);
        let shared = Shared { config: config.websocket.clone(), hub, commands, bridge, lifecycle };
        Self { inner: Arc::new(shared) }
    }

    /// The watch on Django's responses, when there is a session bridge.
    pub fn session_watch(&self) -> Option<crate::django::watch::SessionWatch> {
        let bridge = self.inner.bridge.clone()?;
        Some(crate::django::watch::SessionWatch::new(bridge, self.inner.hub.clone()))
    }

    /// Runs every pre-upgrade check and answers 101 (the socket then runs in its own task)
    /// or the refusal.
    pub async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        route: Arc<RouteConfig>,
        forwarding: Forwarding,
    ) -> Response<Body> {
        let (accepted, caller, slot) = match self.admit(&req, &route, forwarding).await {
            Ok(admitted) => admitted,
            Err(e) => return e.respond(),
        };
        let response = handshake::switching_protocols(&accepted);
        let upgrade = hyper::upgrade::on(&mut req);
        let shared = self.inner.clone();
        self.inner.lifecycle.tasks.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        read_ahead::ReadAhead::new(TokioIo::new(upgraded)),
                        Role::Server,
                        Some(shared.ws_config(&route)),
                    )
                    .await;
                    connection::run(ws, caller, slot, shared).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
            }
        });
        response
    }

    /// Handshake → origin → identity → caps, in that order; each refusal has its status.
    async fn admit(
        &self,
        req: &Request<Incoming>,
        route: &Arc<RouteConfig>,
        forwarding: Forwarding,
    ) -> Result<(handshake::Accepted, Arc<Caller>, Slot), HandshakeError> {
        let accepted = handshake::validate(req, route)?;
        check_origin(req, route, forwarding.scheme)?;
        let cookie = merged_cookie(req);
        let user = self.identify(cookie.as_ref()).await?;
        let slot = self.inner.hub.reserve(user.as_ref().map(|u| u.id.as_str()), forwarding.client)?;
        let caller = Caller {
            id: uuid::Uuid::new_v4().to_string().into(),
            route: route.clone(),
            path: req.uri().path().to_string(),
            query: req.uri().query().unwrap_or("").to_string(),
            user,
            host: req.headers().get(header::HOST).map(owned),
            cookie,
            forwarded_for: Some(forwarding.forwarded_for),
            scheme: forwarding.scheme,
            request_id: forwarding.request_id,
            state: Mutex::new(serde_json::json!({})),
        };
        Ok((accepted, Arc::new(caller), slot))
    }

    async fn identify(&self, cookie: Option<&HeaderValue>) -> Result<Option<Arc<crate::django::User>>, HandshakeError> {
        let (Some(bridge), Some(cookie)) = (&self.inner.bridge, cookie) else { return Ok(None) };
        match bridge.resolve_handshake(cookie.as_bytes()).await {
            Ok(Identity::User(user)) => Ok(Some(user)),
            Ok(Identity::Anonymous(_)) => Ok(None),
            Err(_) => Err(HandshakeError::StoreUnavailable),
        }
    }
}

impl Shared {
    /// tungstenite's limits for a socket on `route`: a small read buffer (see DESIGN.md,
    /// performance notes), frames gathered up to the write buffer before one write (the
    /// write loop flushes each batch), and the route's message size for frames and messages.
    fn ws_config(&self, route: &RouteConfig) -> WebSocketConfig {
        let max = route.max_message_size;
        WebSocketConfig::default()
            .read_buffer_size(self.config.read_buffer_size)
            .write_buffer_size(self.config.write_buffer_size)
            // tungstenite panics unless the cap is above the write buffer.
            .max_write_buffer_size(max.saturating_mul(2).max(1 << 20) + self.config.write_buffer_size)
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
    }
}

/// Cross-site WebSocket hijacking defence: a foreign Origin, or cookies without an Origin,
/// is refused before any upgrade.
fn check_origin<B>(req: &Request<B>, route: &RouteConfig, scheme: &str) -> Result<(), HandshakeError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return if req.headers().contains_key(header::COOKIE) { Err(HandshakeError::OriginMissing) } else { Ok(()) };
    };
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let own = format!("{scheme}://{host}");
    let origin = origin.to_str().unwrap_or("");
    if routes::origin_allowed(route, origin, &own) {
        Ok(())
    } else {
        Err(HandshakeError::OriginRejected)
    }
}

/// Several `Cookie` headers joined with "; ", as Django 6 and the proxy do.
fn merged_cookie<B>(req: &Request<B>) -> Option<HeaderValue> {
    let mut copy = http::HeaderMap::new();
    for value in req.headers().get_all(header::COOKIE) {
        copy.append(header::COOKIE, value.clone());
    }
    headers::merge_cookies(&mut copy);
    copy.remove(header::COOKIE).as_ref().map(owned)
}
