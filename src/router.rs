//! Decides what each downstream request is: a redirect to HTTPS, a WebSocket upgrade under
//! a route (or a refusal: 404 no route, 403 denied, 400 plain HTTP on a WebSocket-only
//! path), or plain HTTP for the upstream.

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::config::Config;
use crate::downstream::Downstream;
use crate::proxy::Proxy;
use crate::routes::{Decision, Routes};
use crate::ws::Websockets;

/// Shared, cheap-to-clone request router; built once at start.
#[derive(Clone, Debug)]
pub struct Router {
    proxy: Proxy,
    routes: Routes,
    websockets: Websockets,
    /// Watches Django's responses for a deleted or replaced session cookie.
    watch: Option<crate::django::watch::SessionWatch>,
    /// The TLS port plain requests are redirected to, when `redirect_to_https` is on.
    https_port: Option<u16>,
}

impl Router {
    /// Builds the router and the pooled upstream client from config. `tls_port` is the
    /// first TLS listener's bound port (the config may say 0), where `redirect_to_https`
    /// sends plain requests.
    pub fn new(config: &Config, websockets: Websockets, tls_port: Option<u16>) -> Self {
        let https_port = tls_port.filter(|_| config.server.redirect_to_https);
        let watch = websockets.session_watch();
        Self { proxy: Proxy::new(&config.upstream), routes: Routes::new(config), websockets, watch, https_port }
    }

    /// Answers one downstream request.
    pub async fn handle(&self, req: Request<Incoming>, downstream: Downstream) -> Response<Body> {
        if let (false, Some(port)) = (downstream.tls, self.https_port) {
            return redirect_to_https(&req, port);
        }
        match self.routes.decide(req.uri().path(), is_websocket_upgrade(&req)) {
            Decision::Forward => self.forward(req, downstream).await,
            Decision::Upgrade(route) => self.websockets.upgrade(req, route, downstream).await,
            Decision::NoRoute => body::text(StatusCode::NOT_FOUND, "no WebSocket route for this path"),
            Decision::Denied => body::text(StatusCode::FORBIDDEN, "WebSocket is not allowed on this path"),
            Decision::WebsocketOnly => {
                body::text(StatusCode::BAD_REQUEST, "this path takes WebSocket connections only")
            }
        }
    }
}

impl Router {
    /// Plain HTTP to Django; a response that ends the request's session revokes it.
    async fn forward(&self, req: Request<Incoming>, downstream: Downstream) -> Response<Body> {
        let session = self.watch.as_ref().and_then(|w| w.session_of(req.headers()));
        let response = self.proxy.forward(req, &downstream).await;
        if let (Some(watch), Some(session)) = (&self.watch, session) {
            watch.observe(&session, response.headers()).await;
        }
        response
    }
}

/// True for an HTTP/1.1 WebSocket upgrade request (RFC 6455 §4.1), whatever else it carries.
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket"))))
}

/// A 308 to the same host and path on the TLS port (308 keeps the method and body).
fn redirect_to_https<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .and_then(|h| h.parse::<http::uri::Authority>().ok());
    let Some(host) = host else {
        return body::text(StatusCode::BAD_REQUEST, "a Host header is required");
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        443 => format!("https://{}{path}", host.host()),
        _ => format!("https://{}:{port}{path}", bracketed(host.host())),
    };
    let mut response = body::text(StatusCode::PERMANENT_REDIRECT, "moved to HTTPS");
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
