//! The demo Django project under real gunicorn, as the upstream for end-to-end tests.
//!
//! Needs the venv `scripts/test` builds (`.venv` at the repo root, or `SWITCHYARD_TEST_VENV`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo_root;

/// A gunicorn serving the demo site on a unix socket, with its own SQLite file; killed on drop.
pub struct DjangoSite {
    /// `unix:/…/gunicorn.sock`, for `[upstream] url`.
    pub url: String,
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
    let child = Command::new(venv.join("bin/gunicorn"))
        .args(["--workers", "2", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .arg("demo.wsgi:application")
        .current_dir(demo_dir())
        .env("DEMO_DB", &db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gunicorn starts");
    wait_for_socket(&socket, Duration::from_secs(30));
    DjangoSite { url: format!("unix:{}", socket.display()), child, _dir: dir }
}

fn wait_for_socket(path: &Path, patience: Duration) {
    let deadline = Instant::now() + patience;
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "gunicorn did not listen on {} within {patience:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
