//! What Switchyard knows about the downstream (the browser's) side, worked out once per
//! connection ([`Downstream`]: the peer, TLS, whether its forwarding headers are believed)
//! and once per request ([`Forwarding`]: the scheme the browser used, its address, the
//! `X-Forwarded-For` chain to pass on, the request's id). The proxy and the WebSocket side
//! both take these facts from here, so Django's views and the command backends are told
//! the same thing.
//!
//! The request id (`X-Request-Id`) is a trusted proxy's, when it sent exactly one that is
//! 1 to [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 - _ . : + / = @`; otherwise ours:
//! 32 hex digits, a random prefix per worker thread and that thread's counter, so making
//! one takes no lock, no shared atomic and no system call. Anyone else's id is replaced.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For`: the chain of addresses a request passed.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the browser used.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the Host the browser asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `X-Request-Id`: the id one request is known by in Switchyard's and Django's logs.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a trusted proxy: a UUID (36) or a load balancer's
/// trace id (AWS's `Root=1-…` is 40) fits with room, and a log line stays a line.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Facts about one downstream connection; cheap to clone into each request.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The TCP peer (a browser, or a trusted load balancer).
    pub peer: SocketAddr,
    /// True when the connection arrived on a TLS listener.
    pub tls: bool,
    /// True when `peer` is in `[server] trusted_proxies`.
    pub trusted: bool,
    /// The peer's address as a header value, formatted once per connection rather than
    /// once per request.
    peer_value: HeaderValue,
}

/// Who is behind one request, as far as we believe: from the connection, and from a
/// trusted proxy's `X-Forwarded-For`/`-Proto`/`-Host` (from anyone else those are ignored).
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// "https" or "http".
    pub scheme: &'static str,
    /// The browser's address: the peer, or behind a trusted proxy the last address that
    /// proxy appended.
    pub client: IpAddr,
    /// `X-Forwarded-For` to send on: a trusted proxy's chain plus the peer, or the peer.
    pub forwarded_for: HeaderValue,
    /// `X-Forwarded-Host` to send on: a trusted proxy's, else the request's `Host`.
    pub forwarded_host: Option<HeaderValue>,
    /// `X-Request-Id` to send on, from [`Downstream::request_id`].
    pub request_id: HeaderValue,
}

impl Downstream {
    /// The facts of a connection from `peer`.
    pub fn new(peer: SocketAddr, tls: bool, trusted: bool) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        let peer_value = HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static(""));
        Self { peer, tls, trusted, peer_value }
    }

    /// The scheme the browser used as far as we can tell without headers.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The id of a request on this connection with `headers`: a trusted proxy's valid one,
    /// else a new one (see the module doc). Called once per request, before anything
    /// answers it, so every response and access line carries it.
    pub fn request_id(&self, headers: &HeaderMap) -> HeaderValue {
        if !self.trusted {
            return new_request_id();
        }
        let mut claimed = headers.get_all(&X_REQUEST_ID).iter();
        match (claimed.next(), claimed.next()) {
            (Some(id), None) if is_request_id(id.as_bytes()) => owned(id),
            (Some(_), _) => {
                tracing::debug!(peer = %self.peer, "a trusted proxy's X-Request-Id is malformed: replaced");
                new_request_id()
            }
            (None, _) => new_request_id(),
        }
    }

    /// The forwarding facts of a request on this connection with `headers`, known by
    /// `request_id`.
    pub fn forwarding(&self, headers: &HeaderMap, request_id: HeaderValue) -> Forwarding {
        let peer = self.peer.ip().to_canonical();
        let prior_chain = self.trusted.then(|| joined(headers, &X_FORWARDED_FOR)).flatten();
        let client = prior_chain
            .as_deref()
            .and_then(|chain| chain.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
            .map_or(peer, |ip| ip.to_canonical());
        let forwarded_for = match prior_chain {
            Some(prior) => {
                HeaderValue::from_str(&format!("{prior}, {peer}")).unwrap_or_else(|_| self.peer_value.clone())
            }
            None => self.peer_value.clone(),
        };
        let claimed_scheme = self
            .trusted
            .then(|| headers.get(&X_FORWARDED_PROTO).and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        let scheme = match claimed_scheme {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            _ => self.scheme(),
        };
        let trusted_host = self.trusted.then(|| headers.get(&X_FORWARDED_HOST)).flatten();
        Forwarding {
            scheme,
            client,
            forwarded_for,
            forwarded_host: trusted_host.or_else(|| headers.get(header::HOST)).cloned(),
            request_id,
        }
    }
}

impl Forwarding {
    /// These facts with nothing borrowed from the request's read buffer (see [`owned`]), for
    /// whoever keeps them past the request: a socket does. A plain request drops them with
    /// its headers, so it skips the copy.
    pub fn detached(mut self) -> Self {
        self.forwarded_host = self.forwarded_host.as_ref().map(owned);
        self
    }
}

/// Whether a claimed id may be passed on and logged as it is (see the module doc).
fn is_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

thread_local! {
    /// This thread's random prefix and how many ids it has made.
    static ID_SOURCE: Cell<(u64, u64)> = Cell::new((rand_prefix(), 0));
}

/// A random 64-bit prefix, once per thread (a v4 UUID's randomness from the OS).
fn rand_prefix() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A new request id: 16 hex digits of this thread's prefix, 16 of its counter.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (prefix, count) = ID_SOURCE.with(|source| {
        let (prefix, count) = source.get();
        source.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        let word = if i < 16 { prefix } else { count };
        *digit = HEX[((word >> (4 * (15 - i % 16))) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).expect("hex digits")
}

/// Every value of `name`, joined with ", " (a header may be split over several fields).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A copy that owns its bytes. hyper's header values are slices of the connection's read
/// buffer (~16 KiB); whoever keeps one for long (a socket) would keep that whole buffer.
pub fn owned(value: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream(trusted: bool, tls: bool) -> Downstream {
        Downstream::new("10.0.0.9:5555".parse().unwrap(), tls, trusted)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn an_untrusted_peers_claims_are_ignored() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"), ("host", "a.example")]);
        let f = downstream(false, false).forwarding(&h, HeaderValue::from_static("id"));
        assert_eq!((f.scheme, f.client.to_string()), ("http", "10.0.0.9".to_string()));
        assert_eq!(f.forwarded_for, "10.0.0.9");
        assert_eq!(f.forwarded_host.unwrap(), "a.example");
    }

    #[test]
    fn a_trusted_proxys_chain_scheme_and_host_are_believed() {
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
            ("x-forwarded-for", "9.9.9.9"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "www.example"),
            ("host", "internal"),
        ]);
        let f = downstream(true, false).forwarding(&h, HeaderValue::from_static("id"));
        assert_eq!((f.scheme, f.client.to_string()), ("https", "9.9.9.9".to_string()));
        assert_eq!(f.forwarded_for, "1.2.3.4, 5.6.7.8, 9.9.9.9, 10.0.0.9");
        assert_eq!(f.forwarded_host.unwrap(), "www.example");
    }

    #[test]
    fn a_trusted_proxy_without_claims_leaves_the_connections_facts() {
        let f = downstream(true, true).forwarding(&HeaderMap::new(), HeaderValue::from_static("id"));
        assert_eq!((f.scheme, f.client.to_string()), ("https", "10.0.0.9".to_string()));
        assert!(f.forwarded_host.is_none());
    }

    #[test]
    fn new_request_ids_are_32_hex_digits_and_differ() {
        let ids: std::collections::HashSet<HeaderValue> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
        let other_thread = std::thread::spawn(new_request_id).join().unwrap();
        assert_ne!(&other_thread.as_bytes()[..16], &ids.iter().next().unwrap().as_bytes()[..16], "own prefix");
    }

    #[test]
    fn a_trusted_proxys_request_id_is_kept_only_when_well_formed() {
        let id = |trusted: bool, claimed: &[&str]| {
            let h = claimed.iter().map(|v| (X_REQUEST_ID, HeaderValue::from_str(v).unwrap())).collect();
            downstream(trusted, false).request_id(&h)
        };
        assert_eq!(id(true, &["Root=1-67891233-abcdef012345678912345678"]), "Root=1-67891233-abcdef012345678912345678");
        assert_eq!(id(true, &["a"]), "a");
        assert_eq!(id(true, &[&"x".repeat(MAX_REQUEST_ID_LEN)]), "x".repeat(MAX_REQUEST_ID_LEN).as_str());
        for bad in
            ["", "has space", "quote\"", "semi;colon", "tab\tid", "caf\u{e9}", &"x".repeat(MAX_REQUEST_ID_LEN + 1)]
        {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            let h = [(X_REQUEST_ID, value.clone())].into_iter().collect();
            assert_ne!(downstream(true, false).request_id(&h), value, "{bad:?} must be replaced");
        }
        assert_eq!(id(true, &["one", "two"]).len(), 32, "two ids: neither is believed");
        assert_eq!(id(false, &["chosen-by-the-browser"]).len(), 32, "untrusted: replaced");
    }
}
