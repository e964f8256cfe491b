//! Decides what each downstream request is: refused outright (CONNECT 405; a missing,
//! doubled or contradicted `Host` 400), a redirect to HTTPS, the browser client at
//! `/_switchyard/client.js`, a WebSocket upgrade under a route (or a refusal: 404 no route,
//! 403 denied, 400 plain HTTP on a WebSocket-only path), a file under a `[[static]]`
//! prefix (after the WebSocket routes, so a route may claim a path under it), or plain
//! HTTP for the upstream.
//! The request's forwarding facts are worked out here, once, for both sides, under the id
//! the server gave the request (`downstream::Downstream::request_id`).

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::client_script;
use crate::config::Config;
use crate::downstream::{Downstream, Forwarding};
use crate::proxy::{Proxy, TempDisk};
use crate::routes::{Decision, Routes};
use crate::static_files::Statics;
use crate::ws::Websockets;

/// Shared, cheap-to-clone request router; built once at start.
#[derive(Clone, Debug)]
pub struct Router {
    proxy: Proxy,
    routes: Routes,
    /// `[[static]]` folders, asked after the WebSocket routes and before the upstream.
    statics: Statics,
    websockets: Websockets,
    /// Watches Django's responses for a deleted or replaced session cookie.
    watch: Option<crate::django::watch::SessionWatch>,
    /// The TLS port plain requests are redirected to, when `redirect_to_https` is on.
    https_port: Option<u16>,
}

impl Router {
    /// Builds the router and the pooled upstream client from config. `tls_port` is the
    /// first TLS listener's bound port (the config may say 0), where `redirect_to_https`
    /// sends plain requests; `disk` is the temp-file budget all workers share.
    pub fn new(config: &Config, websockets: Websockets, tls_port: Option<u16>, disk: TempDisk) -> Self {
        let https_port = tls_port.filter(|_| config.server.redirect_to_https);
        let watch = websockets.session_watch();
        let (proxy, routes, statics) = (Proxy::new(config, disk), Routes::new(config), Statics::new(&config.statics));
        Self { proxy, routes, statics, websockets, watch, https_port }
    }

    /// Answers one downstream request known by `request_id` (from
    /// [`Downstream::request_id`]; the caller puts it on the response).
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        downstream: Downstream,
        request_id: HeaderValue,
    ) -> Response<Body> {
        if req.method() == Method::CONNECT {
            tracing::debug!(peer = %downstream.peer, "CONNECT refused");
            return body::text(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported: this is not a forward proxy");
        }
        if let Err(reason) = settle_host(&mut req) {
            tracing::debug!(peer = %downstream.peer, reason, "bad Host");
            return body::text(StatusCode::BAD_REQUEST, reason);
        }
        if let (false, Some(port)) = (downstream.tls, self.https_port) {
            return redirect_to_https(&req, port);
        }
        if client_script::wants(&req) {
            return client_script::serve(&req);
        }
        match self.routes.decide(req.uri().path(), is_websocket_upgrade(&req)) {
            Decision::Forward { buffering } => match self.statics.find(req.uri().path()) {
                // Boxed, as below: a rare branch's state would otherwise be in every request's.
                Some(dir) => Box::pin(dir.serve(req)).await,
                None => {
                    let forwarding = downstream.forwarding(req.headers(), request_id);
                    self.forward(req, &downstream, &forwarding, buffering).await
                }
            },
            Decision::Upgrade(route) => {
                let forwarding = downstream.forwarding(req.headers(), request_id).detached();
                Box::pin(self.websockets.upgrade(req, route, forwarding)).await
            }
            Decision::NoRoute => body::text(StatusCode::NOT_FOUND, "no WebSocket route for this path"),
            Decision::Denied => body::text(StatusCode::FORBIDDEN, "WebSocket is not allowed on this path"),
            Decision::WebsocketOnly => {
                body::text(StatusCode::BAD_REQUEST, "this path takes WebSocket connections only")
            }
        }
    }
}

/// Exactly one `Host` for the request, or why not (RFC 9110 §7.2, RFC 9113 §8.3.1): an
/// HTTP/1.1 request needs one, none may have two, and a URI authority (HTTP/2's
/// `:authority`, an absolute-form target) must agree with it, or becomes it.
fn settle_host<B>(req: &mut Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err("bad request: more than one Host header");
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    match (host, authority) {
        (Some(host), authority) => {
            let Ok(parsed) = host.to_str().unwrap_or("").parse::<http::uri::Authority>() else {
                return Err("bad request: the Host header is not a host and port");
            };
            if authority.is_some_and(|a| !a.eq_ignore_ascii_case(parsed.as_str())) {
                return Err("bad request: Host and the request's authority disagree");
            }
            Ok(())
        }
        (None, Some(authority)) => {
            let value = HeaderValue::from_str(&authority).map_err(|_| "bad request: malformed authority")?;
            req.headers_mut().insert(header::HOST, value);
            Ok(())
        }
        (None, None) if req.version() == Version::HTTP_10 || req.version() == Version::HTTP_09 => Ok(()),
        (None, None) => Err("bad request: a Host header is required"),
    }
}

impl Router {
    /// Plain HTTP to Django; a response that ends the request's session revokes it.
    async fn forward(
        &self,
        req: Request<Incoming>,
        downstream: &Downstream,
        forwarding: &Forwarding,
        buffering: Option<bool>,
    ) -> Response<Body> {
        let session = self.watch.as_ref().and_then(|w| w.session_of(req.headers()));
        let response = self.proxy.forward(req, downstream, forwarding, buffering).await;
        if let (Some(watch), Some(session)) = (&self.watch, session) {
            Box::pin(watch.observe(&session, response.headers())).await;
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
        return body::text(StatusCode::BAD_REQUEST, "bad request: a Host header is required");
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
