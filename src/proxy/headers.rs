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
use smallvec::SmallVec;

use crate::downstream::{Forwarding, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the old Keep-Alive
/// and Proxy-Connection that browsers still send, and the proxy credentials meant for us).
/// `Trailer` is end-to-end: hyper sends only the trailer fields it declares.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
];

/// For a field's (lower-case) name.
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Forwarding claims believed only from a trusted proxy, and otherwise dropped.
fn is_forwarding_claim(name: &str) -> bool {
    matches!(
        name,
        "forwarded" | "x-real-ip" | "x-forwarded-port" | "x-forwarded-ssl" | "x-forwarded-scheme" | "x-client-ip"
    )
}

/// Identity and signatures toward Django come only from Switchyard: client `X-Switchyard-*`
/// go, and so does every name with an underscore (WSGI would read it as a dash).
fn is_spoofable(name: &str) -> bool {
    name.starts_with(SWITCHYARD_PREFIX) || name.contains('_')
}

/// Prefix of the headers only Switchyard may send to Django.
const SWITCHYARD_PREFIX: &str = "x-switchyard-";

/// Rewrites downstream request headers for the upstream; `trusted` is whether the peer is
/// a trusted proxy, `forwarding` what the request's browser is.
pub fn prepare_request(headers: &mut HeaderMap, trusted: bool, forwarding: &Forwarding) {
    let wants_trailers = accepts_trailers(headers);
    // One pass over the names, and a removal only for those present: most requests carry
    // none of these, and a lookup per rule would cost more than the rest of the rewrite.
    let doomed = hop_by_hop_and(headers, |name| {
        name == "upgrade" || is_spoofable(name) || (!trusted && is_forwarding_claim(name))
    });
    remove_all(headers, doomed);
    if wants_trailers {
        // `TE: trailers` is the one TE value that must travel: without it the upstream may
        // not send the trailers the downstream asked for.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    merge_cookies(headers);
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
    let doomed = hop_by_hop_and(headers, |_| false);
    remove_all(headers, doomed);
}

/// The fields `Connection` names as hop-by-hop, beyond those always removed (never
/// `Host`: a request without one means something else). Usually none (`keep-alive` is
/// always removed), and then nothing is allocated.
fn connection_listed(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("host") && !HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(t)))
        .collect()
}

/// The names present that are hop-by-hop (fixed, or listed in `Connection`) or that `also`
/// picks (it is shown lower-case names).
fn hop_by_hop_and(headers: &HeaderMap, also: impl Fn(&str) -> bool) -> Doomed {
    let listed = connection_listed(headers);
    let doomed = |name: &str| is_hop_by_hop(name) || listed.iter().any(|l| l.eq_ignore_ascii_case(name)) || also(name);
    headers.keys().filter(|name| doomed(name.as_str())).cloned().collect()
}

/// Names to remove. Nearly every response carries one (`Connection: keep-alive`) and few
/// requests carry more than a couple, so they are kept on the stack.
type Doomed = SmallVec<[HeaderName; 4]>;

fn remove_all(headers: &mut HeaderMap, names: Doomed) {
    for name in names {
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
