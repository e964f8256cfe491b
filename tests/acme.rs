//! `[server.tls] acme` end to end: the real binary obtains its certificate from Debian's
//! `pebble` (Let's Encrypt's ACME test server) on loopback, with pebble validating
//! TLS-ALPN-01 for real against the port Switchyard's TLS listener is on.
//!
//! The order of starts: the test holds Switchyard's TLS listening socket (bound to port 0)
//! and hands it over as systemd would (fd 3), so pebble can be told its port (`tlsPort`)
//! before either starts. Pebble binds port 0 too; its ports are read back from
//! `/proc/PID/fd` and `/proc/net/tcp`. Pebble's HTTPS certificate is a development
//! certificate made here; Switchyard trusts its CA through `directory_ca`, the option a
//! private ACME server needs in production too. Pebble runs with `PEBBLE_VA_NOSLEEP`
//! (no random 0-15 s pause before it validates) and `PEBBLE_WFE_NONCEREJECT=0` (no
//! randomly refused nonces, which would make the run's length a lottery); validation is
//! real (`PEBBLE_VA_ALWAYS_VALID` is not set).

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use support::binary::{self, Process};
use support::{tls, wait_for, Refusing, PATIENCE};
use switchyard::devcert::{self, Overwrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The name the certificate is for: pebble resolves it (system resolver, /etc/hosts) to
/// loopback, where it finds Switchyard.
const DOMAIN: &str = "localhost";

/// A running pebble; killed when dropped.
struct Pebble {
    child: Child,
    /// The ACME directory's address (HTTPS).
    acme: SocketAddr,
    /// The management address: `/roots/0` is the root its certificates chain to.
    management: SocketAddr,
    /// The CA its HTTPS certificate is signed by.
    https_ca: PathBuf,
    _lines: mpsc::Receiver<String>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Starts pebble, validating TLS-ALPN-01 on `tls_port` and issuing certificates valid
    /// for `validity` seconds when given (pebble's default is five years); returns once it
    /// listens.
    async fn start(dir: &Path, tls_port: u16, validity: Option<u64>) -> Self {
        let certs = dir.join("pebble-https");
        let written = devcert::write(&certs, Overwrite::Refuse).unwrap();
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": "127.0.0.1:0",
            "managementListenAddress": "127.0.0.1:0",
            "certificate": written.cert,
            "privateKey": written.key,
            "httpPort": tls_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let path = dir.join("pebble.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's pebble is installed (scripts/test installs it: apt-get install pebble)");
        let lines = lines_of(child.stdout.take().unwrap());
        let pid = child.id();
        let ports = wait_for("pebble listens on two ports", || {
            let ports = listening_ports(pid);
            std::future::ready((ports.len() == 2).then_some(ports))
        })
        .await;
        let mut pebble = Self {
            child,
            acme: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            management: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            https_ca: written.ca,
            _lines: lines,
        };
        // Which is which is the order Go bound them in: ask.
        if !https_get(&pebble, pebble.acme, "/dir").await.is_ok_and(|body| body.contains("newNonce")) {
            std::mem::swap(&mut pebble.acme, &mut pebble.management);
        }
        pebble
    }

    fn directory(&self) -> String {
        format!("https://{}/dir", self.acme)
    }

    /// The root pebble's certificates chain to (made anew at each pebble start).
    async fn root(&self) -> String {
        https_get(self, self.management, "/roots/0").await.unwrap()
    }
}

/// `GET path` over HTTPS from pebble, trusting its HTTPS CA: the body of a 200, else the
/// whole answer as the error.
async fn https_get(pebble: &Pebble, addr: SocketAddr, path: &str) -> Result<String, String> {
    let config = tls::client_config(&[&std::fs::read(&pebble.https_ca).unwrap()]);
    let mut stream = tls::connect(addr, "localhost", config).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // Go closes without close_notify, which rustls reports as an unexpected EOF.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8(answer).unwrap();
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("GET {path} from pebble: {answer}")),
    }
}

/// Lines of `out`, read on a thread.
fn lines_of(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// TCP ports `pid` listens on (IPv4), from its socket fds and /proc/net/tcp.
fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let inodes: HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A") && inodes.contains(*fields.get(9)?);
            let port = fields.get(1)?.rsplit_once(':')?.1;
            listening.then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect()
}

/// Switchyard with an ACME certificate from `directory`, serving TLS on `listener`.
fn switchyard(dir: &Path, listener: &TcpListener, directory: &str, directory_ca: &Path) -> Process {
    std::env::set_var("SWITCHYARD_ACME_TEST_KEY", "test-key");
    binary::spawn_with_socket(dir, &config(listener, &[DOMAIN], directory, directory_ca), listener)
}

/// The config [`switchyard`] runs, with a certificate for `domains`.
fn config(listener: &TcpListener, domains: &[&str], directory: &str, directory_ca: &Path) -> String {
    let tls = listener.local_addr().unwrap();
    let domains = serde_json::to_string(domains).unwrap();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nlisten = \"{tls}\"\nacme = {{ domains = {domains}, \
         contact = \"mailto:ops@example.com\", directory = \"{directory}\", cache = \"acme-cache\", \
         directory_ca = \"{}\" }}\n[upstream]\nurl = \"http://127.0.0.1:9\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         key_env = \"SWITCHYARD_ACME_TEST_KEY\"\n",
        directory_ca.display()
    )
}

/// The log lines up to the first whose message holds `needle` (those before "listening"
/// too); an ACME failure before it fails the test with its error.
fn wait_for_acme(sy: &Process, needle: &str) -> Vec<serde_json::Value> {
    let message = |line: &serde_json::Value| line["fields"]["message"].as_str().unwrap_or_default().to_string();
    let mut seen = Vec::new();
    let mut early = sy.early.iter().cloned();
    loop {
        let line = early.next().unwrap_or_else(|| binary::wait_for_log(&sy.lines, needle, PATIENCE, |_| true));
        let text = message(&line);
        assert!(!text.contains("ACME order failed"), "{line}");
        seen.push(line);
        if text.contains(needle) {
            return seen;
        }
    }
}

/// The chain Switchyard serves to a client that asks for [`DOMAIN`] and trusts only
/// `root`: the handshake fails unless the chain leads to `root` and names the domain.
async fn served_chain(addr: SocketAddr, root: &str) -> Vec<Vec<u8>> {
    let stream = tls::connect(addr, DOMAIN, tls::client_config(&[root.as_bytes()])).await;
    let stream = stream.expect("the served certificate chains to pebble's root and names the domain");
    tls::peer_chain(&stream).into_iter().map(|c| c.to_vec()).collect()
}

/// `GET /metrics` from the admin listener.
async fn metrics(sy: &Process) -> String {
    admin_get(sy, "/metrics").await
}

/// `GET path` from the admin listener: the whole answer.
async fn admin_get(sy: &Process, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(sy.admin.unwrap()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Pebble and Switchyard with the certificate Switchyard obtained from it.
struct Issued {
    // Dropped first: Switchyard, then pebble, then the folder.
    sy: Process,
    pebble: Pebble,
    listener: TcpListener,
    /// The root pebble's certificates chain to.
    root: String,
    dir: tempfile::TempDir,
}

/// Starts pebble (certificates valid for `validity` seconds, when given) and Switchyard,
/// and waits until Switchyard has its certificate.
async fn issued(validity: Option<u64>) -> Issued {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pebble = Pebble::start(dir.path(), listener.local_addr().unwrap().port(), validity).await;
    let sy = switchyard(dir.path(), &listener, &pebble.directory(), &pebble.https_ca);
    wait_for_acme(&sy, "ACME: certificate stored in the cache");
    let root = pebble.root().await;
    Issued { sy, pebble, listener, root, dir }
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn a_certificate_from_pebble_is_served_for_the_domain_and_chains_to_pebbles_root() {
    let Issued { sy, root, pebble: _pebble, listener: _listener, dir: _dir } = issued(None).await;
    let chain = served_chain(sy.tls[0], &root).await;
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let names = leaf.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
    assert_eq!(format!("{names:?}"), format!("[DNSName({DOMAIN:?})]"));
    assert!(leaf.issuer().to_string().contains("Pebble"), "{}", leaf.issuer());

    let text = metrics(&sy).await;
    let not_after = metric(&text, "switchyard_tls_certificate_not_after_seconds").expect(&text);
    assert_eq!(not_after, leaf.validity().not_after.timestamp());
    assert_eq!(metric(&text, "switchyard_acme_order_failures"), Some(0));
    // Pebble proved the name through Switchyard's listener: its probes came in there.
    assert!(metric(&text, "switchyard_acme_validation_connections_total").unwrap() >= 1, "{text}");
    let health = admin_get(&sy, "/healthz").await;
    let body: serde_json::Value = serde_json::from_str(health.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["acme"], serde_json::json!({"not_after": not_after, "order_failures": 0}), "{health}");
}

#[tokio::test]
async fn a_restart_serves_the_cached_certificate_without_asking_the_acme_server() {
    let Issued { sy: first, pebble, listener, root, dir } = issued(None).await;
    let (directory, https_ca) = (pebble.directory(), pebble.https_ca.clone());
    let issued = served_chain(first.tls[0], &root).await;
    drop(first);
    // Pebble is gone: a new order could only fail.
    drop(pebble);

    let second = switchyard(dir.path(), &listener, &directory, &https_ca);
    wait_for_acme(&second, "ACME: serving the cached certificate (no new order)");
    for file in std::fs::read_dir(dir.path().join("acme-cache")).unwrap() {
        let mode = file.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "cache files hold keys: {mode:o}");
    }
    assert_eq!(served_chain(second.tls[0], &root).await, issued);
    assert_eq!(metric(&metrics(&second).await, "switchyard_acme_order_failures"), Some(0));
}

#[tokio::test]
async fn a_reload_keeps_the_acme_certificate_and_names_an_acme_change_as_waiting_for_a_restart() {
    let Issued { sy, pebble, listener, root, dir } = issued(None).await;
    let before = served_chain(sy.tls[0], &root).await;

    let changed = config(&listener, &[DOMAIN, "www.localhost"], &pebble.directory(), &pebble.https_ca);
    binary::write_config(dir.path(), &changed);
    let hup = Command::new("kill").args(["-HUP", &sy.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let log = wait_for_acme(&sy, "reloaded");
    let warning = log.iter().find(|l| l["fields"]["message"].as_str().unwrap().contains("only at a restart"));
    let options = warning.expect("a restart-only warning")["fields"]["options"].as_str().unwrap().to_string();
    assert!(options.contains("[server.tls] acme"), "{options}");
    assert_eq!(served_chain(sy.tls[0], &root).await, before);
}

#[tokio::test]
async fn a_certificate_is_renewed_before_it_expires() {
    // Renewal starts at two thirds of the lifetime: 8 s in, 4 s before expiry.
    let Issued { sy, root, pebble: _pebble, listener: _listener, dir: _dir } = issued(Some(12)).await;
    let first = served_chain(sy.tls[0], &root).await;

    wait_for_acme(&sy, "ACME: obtained a new certificate");
    wait_for_acme(&sy, "ACME: certificate stored in the cache");
    let renewed = served_chain(sy.tls[0], &root).await;
    assert_ne!(renewed[0], first[0], "the renewed certificate is served to new connections");
    let validity = |der: &[u8]| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp())
    };
    let ((_, old_end), (new_start, _)) = (validity(&first[0]), validity(&renewed[0]));
    assert!(new_start < old_end, "renewed at {new_start}, after the old one expired at {old_end}");
}

#[tokio::test]
async fn a_failed_renewal_is_retried_while_the_certificate_in_use_is_served() {
    // Renewal starts 10 s in; pebble is gone by then, so it fails 5 s before expiry.
    let Issued { sy, root, pebble, listener: _listener, dir: _dir } = issued(Some(15)).await;
    let first = served_chain(sy.tls[0], &root).await;
    drop(pebble);
    let failed = lines_with(&sy, "ACME order failed", 1);
    assert!(failed[0]["fields"]["message"].as_str().unwrap().contains("serving the certificate in use"));
    assert_eq!(failed[0]["fields"]["retry_in"], "1s");
    assert_eq!(served_chain(sy.tls[0], &root).await, first);
}

#[tokio::test]
async fn an_unreachable_acme_server_is_logged_and_retried_while_the_listeners_serve() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = Refusing::new();
    let ca = dir.path().join("ca");
    let written = devcert::write(&ca, Overwrite::Refuse).unwrap();
    let mut sy = switchyard(dir.path(), &listener, &format!("https://{}/dir", nobody.addr), &written.ca);

    let failed = lines_with(&sy, "ACME order failed", 2);
    let (first, second) = (&failed[0], &failed[1]);
    let fields = &first["fields"];
    assert!(fields["error"].as_str().unwrap().to_lowercase().contains("refused"), "{first}");
    assert_eq!(fields["directory"], format!("https://{}/dir", nobody.addr));
    assert_eq!((fields["failures"].as_u64(), fields["retry_in"].as_str()), (Some(1), Some("1s")), "{first}");
    assert_eq!((second["fields"]["failures"].as_u64(), second["fields"]["retry_in"].as_str()), (Some(2), Some("2s")));

    assert!(sy.child.try_wait().unwrap().is_none(), "switchyard exited");
    let text = metrics(&sy).await;
    assert!(metric(&text, "switchyard_acme_order_failures").unwrap() >= 2, "{text}");
    assert_eq!(metric(&text, "switchyard_tls_certificate_not_after_seconds"), None, "{text}");
    // The plain listener answers (502: there is no Django here), the TLS one accepts.
    let mut plain = tokio::net::TcpStream::connect(sy.plain[0]).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    tokio::net::TcpStream::connect(sy.tls[0]).await.expect("the TLS listener accepts");
}

/// The first `n` log lines whose message holds `needle`, those before "listening" first.
fn lines_with(sy: &Process, needle: &str, n: usize) -> Vec<serde_json::Value> {
    let holds = |line: &serde_json::Value| line["fields"]["message"].as_str().is_some_and(|m| m.contains(needle));
    let mut found: Vec<_> = sy.early.iter().filter(|line| holds(line)).take(n).cloned().collect();
    while found.len() < n {
        found.push(binary::wait_for_line(&sy.lines, needle, PATIENCE));
    }
    found
}
