//! Header rules between downstream and upstream (RFC 9110 §7.6.1 hop-by-hop fields).
//!
//! Requests: hop-by-hop fields go, client-sent `X-Switchyard-*` go, several `Cookie` fields
//! become one joined with "; " (as Django 6 does), `Host` is kept (or taken from an HTTP/2
//! `:authority`), and `X-Forwarded-*` are believed only from a trusted proxy.
//! Responses: hop-by-hop fields go; everything else passes unchanged.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::downstream::Downstream;

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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Prefix of the headers only Switchyard may send to Django.
const SWITCHYARD_PREFIX: &str = "x-switchyard-";

/// Rewrites downstream request headers for the upstream; `authority` is the request URI's
/// authority (HTTP/2 carries the host there instead of in `Host`).
pub fn prepare_request(headers: &mut HeaderMap, downstream: &Downstream, authority: Option<&str>) {
    let wants_trailers = accepts_trailers(headers);
    remove_hop_by_hop(headers);
    if wants_trailers {
        // `TE: trailers` is the one TE value that must travel: without it the upstream may
        // not send the trailers the downstream asked for.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(header::UPGRADE);
    strip_switchyard_headers(headers);
    merge_cookies(headers);
    if !headers.contains_key(header::HOST) {
        if let Some(value) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
            headers.insert(header::HOST, value);
        }
    }
    set_forwarded(headers, downstream);
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
    remove_hop_by_hop(headers);
}

/// Removes the fixed hop-by-hop set and every field named in `Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Identity and signatures toward Django come only from Switchyard.
pub fn strip_switchyard_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> =
        headers.keys().filter(|k| k.as_str().starts_with(SWITCHYARD_PREFIX)).cloned().collect();
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

/// Sets `X-Forwarded-For/-Proto/-Host`, believing what a trusted proxy sent and replacing
/// what anyone else sent.
fn set_forwarded(headers: &mut HeaderMap, downstream: &Downstream) {
    let peer = downstream.peer.ip().to_canonical().to_string();
    let prior_for = downstream.trusted.then(|| joined_values(headers, &X_FORWARDED_FOR)).flatten();
    let forwarded_for = match prior_for {
        Some(prior) => format!("{prior}, {peer}"),
        None => peer,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !downstream.trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(downstream.scheme()));
    }
    if !downstream.trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        match headers.get(header::HOST).cloned() {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    if !downstream.trusted {
        headers.remove(FORWARDED);
    }
}

fn joined_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The scheme the browser used: a trusted proxy's `X-Forwarded-Proto`, else the listener's.
pub fn effective_scheme<'a>(headers: &'a HeaderMap, downstream: &Downstream) -> &'a str {
    let claimed = downstream
        .trusted
        .then(|| headers.get(&X_FORWARDED_PROTO).and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    match claimed {
        Some("https") => "https",
        Some("http") => "http",
        _ => downstream.scheme(),
    }
}

#[cfg(test)]
mod tests;
