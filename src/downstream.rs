//! What Switchyard knows about the downstream (the browser's) side, worked out once per
//! connection ([`Downstream`]: the peer, TLS, whether its forwarding headers are believed)
//! and once per request ([`Forwarding`]: the scheme the browser used, its address, the
//! `X-Forwarded-For` chain to pass on). The proxy and the WebSocket side both take these
//! facts from here, so Django's views and the command backends are told the same thing.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For`: the chain of addresses a request passed.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the browser used.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the Host the browser asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Facts about one downstream connection; cheap to copy into each request.
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    /// The TCP peer (a browser, or a trusted load balancer).
    pub peer: SocketAddr,
    /// True when the connection arrived on a TLS listener.
    pub tls: bool,
    /// True when `peer` is in `[server] trusted_proxies`.
    pub trusted: bool,
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
}

impl Downstream {
    /// The scheme the browser used as far as we can tell without headers.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The forwarding facts of a request on this connection with `headers`.
    pub fn forwarding(&self, headers: &HeaderMap) -> Forwarding {
        let peer = self.peer.ip().to_canonical();
        let prior_chain = self.trusted.then(|| joined(headers, &X_FORWARDED_FOR)).flatten();
        let client = prior_chain
            .as_deref()
            .and_then(|chain| chain.rsplit(',').next())
            .and_then(|last| last.trim().parse::<IpAddr>().ok())
            .map_or(peer, |ip| ip.to_canonical());
        let chain = match prior_chain {
            Some(prior) => format!("{prior}, {peer}"),
            None => peer.to_string(),
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
            forwarded_for: HeaderValue::from_str(&chain).unwrap_or_else(|_| HeaderValue::from_static("")),
            forwarded_host: trusted_host.or_else(|| headers.get(header::HOST)).map(owned),
        }
    }
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
        Downstream { peer: "10.0.0.9:5555".parse().unwrap(), tls, trusted }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn an_untrusted_peers_claims_are_ignored() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"), ("host", "a.example")]);
        let f = downstream(false, false).forwarding(&h);
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
        let f = downstream(true, false).forwarding(&h);
        assert_eq!((f.scheme, f.client.to_string()), ("https", "9.9.9.9".to_string()));
        assert_eq!(f.forwarded_for, "1.2.3.4, 5.6.7.8, 9.9.9.9, 10.0.0.9");
        assert_eq!(f.forwarded_host.unwrap(), "www.example");
    }

    #[test]
    fn a_trusted_proxy_without_claims_leaves_the_connections_facts() {
        let f = downstream(true, true).forwarding(&HeaderMap::new());
        assert_eq!((f.scheme, f.client.to_string()), ("https", "10.0.0.9".to_string()));
        assert!(f.forwarded_host.is_none());
    }
}
