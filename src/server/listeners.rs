//! The listening sockets: bound here, or handed over by systemd (socket activation:
//! `LISTEN_FDS`/`LISTEN_PID`, read through `listenfd`).
//!
//! An inherited socket is placed by its address: it serves the listener of `[server]
//! listen`, `[server.tls] listen` or `[admin] listen` written the same way
//! (`ListenStream=0.0.0.0:443` in the socket unit, `listen = "0.0.0.0:443"` in the file).
//! An address with no inherited socket is bound here as usual; an inherited socket that no
//! listener claims is refused, because a socket systemd listens on but nobody serves
//! would take connections that never get an answer. Holding the sockets in systemd is what
//! lets a restart never refuse a connect: the kernel queues new connections in the
//! socket's backlog while the old process drains and the new one starts.

use std::net::{SocketAddr, TcpListener};

use super::StartError;
use crate::config::Config;

/// Sockets handed over by the service manager, not yet placed.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(SocketAddr, TcpListener)>,
}

impl Inherited {
    /// No inherited sockets: every listener is bound here (tests, a plain start).
    pub fn none() -> Self {
        Self::default()
    }

    /// The sockets systemd (or `systemd-socket-activate`) passed to this process; none when
    /// `LISTEN_FDS` is unset or meant for another process. The variables are removed so
    /// that child processes do not take them for theirs.
    pub fn from_env() -> Result<Self, StartError> {
        let mut fds = listenfd::ListenFd::from_env();
        let mut sockets = Vec::with_capacity(fds.len());
        for index in 0..fds.len() {
            let listener = match fds.take_tcp_listener(index) {
                Ok(Some(listener)) => listener,
                Ok(None) => continue,
                Err(source) => return Err(StartError::Inherited { index, source }),
            };
            let addr = listener.local_addr().map_err(|source| StartError::Inherited { index, source })?;
            sockets.push((addr, listener));
        }
        Ok(Self { sockets })
    }

    /// How many sockets were handed over.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when none were.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The inherited socket listening on exactly `addr`, if any.
    fn take(&mut self, addr: SocketAddr) -> Option<TcpListener> {
        let at = self.sockets.iter().position(|(a, _)| *a == addr)?;
        Some(self.sockets.swap_remove(at).1)
    }
}

/// The bound listening sockets, shared by every worker.
#[derive(Debug)]
pub(super) struct Listeners {
    pub plain: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    pub admin: Option<TcpListener>,
    /// How many of them came from the service manager.
    pub inherited: usize,
}

impl Listeners {
    /// Every listener of `config`: the inherited socket for its address, or a new one.
    pub fn bind(config: &Config, mut inherited: Inherited) -> Result<Self, StartError> {
        let handed_over = inherited.len();
        let tls_addrs = config.server.tls.as_ref().map(|t| t.listen.as_slice()).unwrap_or_default();
        let plain = open_all(&config.server.listen, &mut inherited)?;
        let tls = open_all(tls_addrs, &mut inherited)?;
        let admin = config.admin.as_ref().map(|a| open(a.listen, &mut inherited)).transpose()?;
        if !inherited.is_empty() {
            let addrs = inherited.sockets.iter().map(|(a, _)| *a).collect();
            return Err(StartError::Unplaced(addrs));
        }
        Ok(Self { plain, tls, admin, inherited: handed_over })
    }

    /// The bound addresses of `list`, in order.
    pub fn addrs(list: &[TcpListener]) -> Vec<SocketAddr> {
        list.iter().filter_map(|l| l.local_addr().ok()).collect()
    }
}

fn open_all(addrs: &[SocketAddr], inherited: &mut Inherited) -> Result<Vec<TcpListener>, StartError> {
    addrs.iter().map(|&addr| open(addr, inherited)).collect()
}

/// The inherited socket for `addr`, or one bound now; non-blocking either way, for tokio.
fn open(addr: SocketAddr, inherited: &mut Inherited) -> Result<TcpListener, StartError> {
    let listener = match inherited.take(addr) {
        Some(listener) => listener,
        None => TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?,
    };
    listener.set_nonblocking(true).map_err(|source| StartError::Bind { addr, source })?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, tls: bool) -> Config {
        let tls = if tls { "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n" } else { "" };
        let text = format!("[server]\nlisten = {listen}\n{tls}[upstream]\nurl = \"http://127.0.0.1:1\"\n");
        crate::config::parse(&text, "t.toml", std::path::Path::new("/"), &crate::config::ProcessEnv).unwrap()
    }

    fn inherited(listeners: Vec<TcpListener>) -> Inherited {
        Inherited { sockets: listeners.into_iter().map(|l| (l.local_addr().unwrap(), l)).collect() }
    }

    #[test]
    fn an_inherited_socket_serves_the_listener_written_with_its_address() {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let listeners = Listeners::bind(&config(&format!("\"{addr}\""), false), inherited(vec![socket])).unwrap();
        assert_eq!(Listeners::addrs(&listeners.plain), [addr]);
        assert_eq!(listeners.inherited, 1);
    }

    #[test]
    fn listeners_without_an_inherited_socket_are_bound_here() {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let listen = format!("[\"{addr}\", \"127.0.0.1:0\"]");
        let listeners = Listeners::bind(&config(&listen, true), inherited(vec![socket])).unwrap();
        assert_eq!(listeners.plain.len(), 2);
        assert_eq!(listeners.tls.len(), 1);
        assert_ne!(Listeners::addrs(&listeners.plain)[1].port(), 0);
    }

    #[test]
    fn an_inherited_socket_no_listener_claims_is_refused_by_address() {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let err = Listeners::bind(&config("\"127.0.0.1:0\"", false), inherited(vec![socket])).unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
