//! Header rules between downstream and upstream (RFC 9110 §7.6.1 hop-by-hop fields).
//!
//! Requests: hop-by-hop fields go (those `Connection` names too, except `Host`), client-sent
//! `X-Switchyard-*` go, header names with an underscore go (a WSGI server maps
//! `X_Switchyard_User` onto the same variable as `X-Switchyard-User`; nginx drops them
//! too), several `Cookie` fields become one joined with "; " (as Django 6 does), and
//! `X-Forwarded-For/-Proto/-Host` and `X-Request-Id` are set from the request's
//! [`Forwarding`] facts. From an
//! untrusted peer every other forwarding claim (`Forwarded`, `X-Real-IP`,
//! `X-Forwarded-Port`, `-Ssl`, `-Scheme`, `X-Client-IP`) goes. Request trailers never reach
//! the upstream (see `request_body`).
//! Responses: hop-by-hop fields go, and a `Content-Length` sent beside `Transfer-Encoding`
//! goes with it (RFC 9112 §6.3: the chunked framing wins).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::downstream::{Forwarding, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the old Keep-Alive
/// and Proxy-Connection that browsers still send, and the proxy credentials meant for us).
/// `Trailer` is end-to-end: hyper sends only the trailer fields it declares.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// Forwarding claims believed only from a trusted proxy, and otherwise dropped.
const UNTRUSTED_CLAIMS: [HeaderName; 6] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-client-ip"),
];

/// Prefix of the headers only Switchyard may send to Django.
const SWITCHYARD_PREFIX: &str = "x-switchyard-";

/// Rewrites downstream request headers for the upstream; `trusted` is whether the peer is
/// a trusted proxy, `forwarding` what the request's browser is.
pub fn prepare_request(headers: &mut HeaderMap, trusted: bool, forwarding: &Forwarding) {
    let wants_trailers = accepts_trailers(headers);
    remove_hop_by_hop(headers);
    if wants_trailers {
        // `TE: trailers` is the one TE value that must travel: without it the upstream may
        // not send the trailers the downstream asked for.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(header::UPGRADE);
    strip_spoofable(headers);
    merge_cookies(headers);
    if !trusted {
        for name in &UNTRUSTED_CLAIMS {
            headers.remove(name);
        }
    }
    headers.insert(X_FORWARDED_FOR, forwarding.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(forwarding.scheme));
    headers.insert(X_REQUEST_ID, forwarding.request_id.clone());
    match &forwarding.forwarded_host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")))
}

/// Removes hop-by-hop headers from an upstream response before it goes downstream.
pub fn prepare_response(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Both framings: the body was read as chunked, so the length is a lie (a smuggling
        // vector if it travelled on).
        headers.remove(header::CONTENT_LENGTH);
    }
    remove_hop_by_hop(headers);
}

/// Removes the fixed hop-by-hop set and every field named in `Connection` (but never
/// `Host`: a request without one means something else).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != header::HOST)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Identity and signatures toward Django come only from Switchyard: client `X-Switchyard-*`
/// go, and so does every name with an underscore (WSGI would read it as a dash).
pub fn strip_spoofable(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(SWITCHYARD_PREFIX) || k.as_str().contains('_'))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Joins several `Cookie` fields with "; " (HTTP/2 splits cookies into many fields).
pub fn merge_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = Vec::with_capacity(first.len() * 2);
    for value in headers.get_all(header::COOKIE) {
        let part = value.as_bytes();
        let part = part.strip_suffix(b"; ").unwrap_or(part);
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(part);
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests;
