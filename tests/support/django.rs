//! The demo Django project under real gunicorn, as the upstream for end-to-end tests.
//!
//! Needs the venv `scripts/test` builds (`.venv` at the repo root, or `SWITCHYARD_TEST_VENV`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo_root;

/// The demo's Django signing key in tests (Switchyard reads it from `secret_key_file`).
pub const SECRET_KEY: &str = "switchyard-tests-django-secret-key-0123456789abcdef";
/// The secret Switchyard signs command and hook calls with, in tests.
pub const BACKEND_SECRET: &str = "switchyard-tests-backend-secret";

/// A gunicorn serving the demo site on a unix socket (pages) and a loopback port (command
/// views), with its own SQLite file; killed on drop.
pub struct DjangoSite {
    /// `unix:/…/gunicorn.sock`, for `[upstream] url`.
    pub url: String,
    /// `http://127.0.0.1:PORT`, for command and hook URLs.
    pub http: String,
    /// The SQLite file Django writes.
    pub db: PathBuf,
    /// A folder for the test's own files (config, secrets); removed on drop.
    pub dir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for DjangoSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv with Django and gunicorn.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("SWITCHYARD_TEST_VENV").map_or_else(|| repo_root().join(".venv"), PathBuf::from);
    assert!(
        venv.join("bin/gunicorn").exists(),
        "no Django venv at {} (gunicorn missing): run scripts/test, which builds it",
        venv.display()
    );
    venv
}

fn demo_dir() -> PathBuf {
    repo_root().join("examples/demo")
}

fn manage(venv: &Path, db: &Path, args: &[&str]) {
    let status = Command::new(venv.join("bin/python"))
        .arg("manage.py")
        .args(args)
        .current_dir(demo_dir())
        .env("DEMO_DB", db)
        .env("DJANGO_SECRET_KEY", SECRET_KEY)
        .stdout(Stdio::null())
        .status()
        .expect("manage.py runs");
    assert!(status.success(), "manage.py {args:?} failed");
}

/// Migrates a fresh database, creates the demo user, starts gunicorn and waits for its socket.
pub fn start() -> DjangoSite {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    manage(&venv, &db, &["migrate", "--noinput"]);
    manage(&venv, &db, &["ensure_demo_user"]);
    let socket = dir.path().join("gunicorn.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(venv.join("bin/gunicorn"))
        .args(["--workers", "2", "--no-control-socket", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("demo.wsgi:application")
        .current_dir(demo_dir())
        .env("DEMO_DB", &db)
        .env("DJANGO_SECRET_KEY", SECRET_KEY)
        .env("SWITCHYARD_BACKEND_SECRET", BACKEND_SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gunicorn starts");
    wait_for_socket(&socket, Duration::from_secs(30));
    wait_for_answer(&socket, Duration::from_secs(60));
    std::fs::write(dir.path().join("django-secret"), SECRET_KEY).unwrap();
    std::fs::write(dir.path().join("backend-secret"), BACKEND_SECRET).unwrap();
    DjangoSite {
        url: format!("unix:{}", socket.display()),
        http: format!("http://127.0.0.1:{port}"),
        db,
        dir: dir.path().to_path_buf(),
        child,
        _dir: dir,
    }
}

impl DjangoSite {
    /// `[django]` and `[backends]` sections that read this site's sessions and sign calls.
    pub fn switchyard_sections(&self) -> String {
        format!(
            "[django]\nsecret_key_file = \"{dir}/django-secret\"\nsession_engine = \"db\"\ndatabase = \"sqlite://{db}\"\ncache_ttl = \"100ms\"\n[backends]\nsecret_file = \"{dir}/backend-secret\"\n",
            dir = self.dir.display(),
            db = self.db.display(),
        )
    }
}

/// gunicorn listens before its workers have loaded Django; on a busy machine the first
/// answer can take longer than a hook's 5 s timeout. Ready means one page was answered.
fn wait_for_answer(path: &Path, patience: Duration) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + patience;
    loop {
        let mut head = [0u8; 12];
        let answered = std::os::unix::net::UnixStream::connect(path).and_then(|mut stream| {
            stream.set_read_timeout(Some(patience))?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            stream.read_exact(&mut head)
        });
        if answered.is_ok() && head.starts_with(b"HTTP/1.") {
            return;
        }
        assert!(Instant::now() < deadline, "gunicorn answered nothing on {} within {patience:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_socket(path: &Path, patience: Duration) {
    let deadline = Instant::now() + patience;
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "gunicorn did not listen on {} within {patience:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
