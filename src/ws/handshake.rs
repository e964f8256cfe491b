//! The opening handshake (RFC 6455 §4.2.1): every check made before the 101, and the one
//! function that turns a refusal into a status and a plain-text reason.

use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::body::{self, Body};
use crate::config::RouteConfig;
use crate::hub::CapExceeded;

/// Why an upgrade is refused before the 101.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not a GET.
    #[error("a WebSocket handshake must be a GET request")]
    NotGet,
    /// Not HTTP/1.1.
    #[error("a WebSocket handshake needs HTTP/1.1")]
    NotHttp11,
    /// `Connection` lacks the `upgrade` token.
    #[error("the Connection header must contain \"upgrade\"")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes of base64.
    #[error("Sec-WebSocket-Key must be 16 random bytes in base64")]
    BadKey,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("only WebSocket version 13 is supported")]
    BadVersion,
    /// `Origin` is not allowed on this route (cross-site WebSocket hijacking).
    #[error("origin not allowed")]
    OriginRejected,
    /// A cookie-bearing upgrade with no `Origin` (browsers always send one).
    #[error("an upgrade that carries cookies must carry an Origin header")]
    OriginMissing,
    /// The session store could not be reached and the policy is to refuse.
    #[error("the session store is unavailable, try again shortly")]
    StoreUnavailable,
    /// A socket cap is reached.
    #[error("{0}")]
    TooMany(#[from] CapExceeded),
}

impl HandshakeError {
    /// The one place a refusal becomes a response.
    pub fn respond(&self) -> Response<Body> {
        let status = match self {
            Self::NotGet | Self::NotHttp11 | Self::NoConnectionUpgrade | Self::BadKey => StatusCode::BAD_REQUEST,
            Self::BadVersion => StatusCode::UPGRADE_REQUIRED,
            Self::OriginRejected | Self::OriginMissing => StatusCode::FORBIDDEN,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        tracing::debug!(reason = %self, status = status.as_u16(), "upgrade refused");
        let mut response = body::text(status, &self.to_string());
        if let Self::BadVersion = self {
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}

/// A valid handshake: what the 101 must carry.
#[derive(Debug)]
pub struct Accepted {
    /// `Sec-WebSocket-Accept`.
    pub accept: String,
    /// The subprotocol chosen, only one the browser offered.
    pub subprotocol: Option<HeaderValue>,
}

/// Checks the request's shape; origin and identity come after.
pub fn validate<B>(req: &Request<B>, route: &RouteConfig) -> Result<Accepted, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if req.version() != Version::HTTP_11 {
        return Err(HandshakeError::NotHttp11);
    }
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HandshakeError::BadKey)?;
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(key.as_bytes()).map_err(|_| HandshakeError::BadKey)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::BadKey);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err(HandshakeError::BadVersion);
    }
    Ok(Accepted { accept: derive_accept_key(key.as_bytes()), subprotocol: choose_subprotocol(headers, route) })
}

/// The 101 response for an accepted handshake (no extensions: permessage-deflate is never
/// offered).
pub fn switching_protocols(accepted: &Accepted) -> Response<Body> {
    let mut response = Response::new(body::full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accepted.accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = &accepted.subprotocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
    }
    response
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The first subprotocol the browser offered that the route speaks.
fn choose_subprotocol(headers: &HeaderMap, route: &RouteConfig) -> Option<HeaderValue> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offered| route.subprotocols.iter().any(|p| p == offered))
        .and_then(|p| HeaderValue::from_str(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> http::request::Builder {
        handshake("dGhlIHNhbXBsZSBub25jZQ==", "13")
    }

    fn handshake(key: &str, version: &str) -> http::request::Builder {
        Request::get("/ws/")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", key)
    }

    #[test]
    fn rfc_sample_key_gives_the_rfc_accept() {
        let accepted = validate(&request().body(()).unwrap(), &RouteConfig::accept_all("/ws/")).unwrap();
        assert_eq!(accepted.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(accepted.subprotocol.is_none());
    }

    #[test]
    fn subprotocol_only_when_offered_and_spoken() {
        let mut route = RouteConfig::accept_all("/ws/");
        route.subprotocols = vec!["v2.switchyard".into()];
        let offered = request().header("sec-websocket-protocol", "v1.other, v2.switchyard").body(()).unwrap();
        assert_eq!(validate(&offered, &route).unwrap().subprotocol.unwrap(), "v2.switchyard");
        let not_offered = request().body(()).unwrap();
        assert!(validate(&not_offered, &route).unwrap().subprotocol.is_none());
    }

    #[test]
    fn malformed_handshakes_are_refused_with_a_reason() {
        let route = RouteConfig::accept_all("/ws/");
        let bad_key = handshake("c2hvcnQ=", "13").body(()).unwrap();
        assert!(matches!(validate(&bad_key, &route), Err(HandshakeError::BadKey)));
        let post = Request::post("/ws/").body(()).unwrap();
        assert!(matches!(validate(&post, &route), Err(HandshakeError::NotGet)));
        let v8 = handshake("dGhlIHNhbXBsZSBub25jZQ==", "8").body(()).unwrap();
        let response = validate(&v8, &route).unwrap_err().respond();
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
    }
}
