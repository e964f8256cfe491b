//! The `switchyard` command line: check, dev-cert, and run's reaction to SIGTERM.

mod support;

use std::process::Command;
use std::time::Duration;

use support::binary::{self, switchyard_bin};
use support::*;

fn check(dir: &std::path::Path, text: &str) -> std::process::Output {
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(switchyard_bin()).args(["check", "--config"]).arg(&path).output().unwrap()
}

#[test]
fn check_prints_the_effective_config_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        check(dir.path(), "[server]\nlisten = [\"127.0.0.1:8080\"]\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n");
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("response_timeout = \"1m\""), "{printed}");
    assert!(printed.contains("url = \"http://127.0.0.1:8000\""), "{printed}");
}

#[test]
fn check_names_file_line_column_and_the_key_to_write_instead() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        check(dir.path(), "[server]\nlistn = [\"127.0.0.1:8080\"]\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("switchyard.toml:2:1:"), "{err}");
    assert!(err.contains("`listn`") && err.contains("did you mean `listen`?"), "{err}");
}

#[test]
fn check_reports_a_bad_size_at_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:8080\"\n[upstream]\nurl = \"http://127.0.0.1:8000\"\nmax_request_body = \"lots\"\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("switchyard.toml:5:20:") && err.contains("\"1MiB\""), "{err}");
}

#[test]
fn check_refuses_a_zero_ping_interval_naming_the_smallest_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:8080\"\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n[websocket]\nping_interval = \"0s\"\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("switchyard.toml:6:17: websocket.ping_interval: \"0s\" is too small"), "{err}");
    assert!(err.contains("the smallest allowed value is \"1ms\""), "{err}");
}

fn dev_cert(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(switchyard_bin()).args(["dev-cert", "--dir"]).arg(dir).args(extra).output().unwrap()
}

#[test]
fn dev_cert_writes_ca_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dev_cert(dir.path(), &[]).status.success());
    for file in ["localhost-ca.pem", "localhost.pem", "localhost-key.pem"] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(text.starts_with("-----BEGIN"), "{file}");
    }
}

#[test]
fn dev_cert_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    assert!(dev_cert(dir.path(), &[]).status.success());
    let mode = std::fs::metadata(dir.path().join("localhost-key.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn dev_cert_keeps_an_existing_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dev_cert(dir.path(), &[]).status.success());
    let ca = std::fs::read_to_string(dir.path().join("localhost-ca.pem")).unwrap();
    let again = dev_cert(dir.path(), &[]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8(again.stderr).unwrap();
    assert!(err.contains("localhost-ca.pem exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("localhost-ca.pem")).unwrap(), ca);
    assert!(dev_cert(dir.path(), &["--force"]).status.success());
    assert_ne!(std::fs::read_to_string(dir.path().join("localhost-ca.pem")).unwrap(), ca);
}

#[test]
fn dev_cert_writes_into_certs_by_default_and_git_ignores_what_it_writes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let help = Command::new(switchyard_bin()).args(["dev-cert", "--help"]).output().unwrap();
    assert!(String::from_utf8(help.stdout).unwrap().contains("[default: certs]"));
    let ignored = |path: &str| {
        let out = Command::new("git").arg("-C").arg(root).args(["check-ignore", "-q", "--no-index", path]).status();
        out.unwrap().success()
    };
    for written in ["certs/localhost-ca.pem", "certs/localhost.pem", "certs/localhost-key.pem", "certs/acme/x"] {
        assert!(ignored(written), "{written} would be committed");
    }
    assert!(!ignored("certs/README.md") && !ignored("certs/.gitignore"));
}

#[tokio::test]
async fn sigterm_stops_the_server_and_exits_0() {
    let up = upstream(|_| async { reply(200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sy = binary::spawn(dir.path(), &minimal_config(&up.url, ""));
    let response = client().get(url(sy.plain[0], "/").parse().unwrap()).await.unwrap();
    assert_eq!(read_body(response).await, "ok");
    let kill = Command::new("kill").args(["-TERM", &sy.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = wait_for("switchyard exits after SIGTERM", || std::future::ready(sy.child.try_wait().unwrap())).await;
    assert!(status.success(), "{status:?}");
    binary::wait_for_line(&sy.lines, "stopped", Duration::from_secs(1));
}
