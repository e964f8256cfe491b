//! What Switchyard knows about the downstream (the browser's) connection, handed to every
//! request: the peer, whether it came over TLS, and whether its forwarding headers are believed.

use std::net::SocketAddr;

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

impl Downstream {
    /// The scheme the browser used as far as we can tell without headers.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}
