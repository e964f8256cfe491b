//! A real gunicorn with sync workers serving a plain WSGI app from `tests/wsgi/`, for tests
//! about what a front proxy owes gunicorn. Needs the venv `scripts/test` builds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{django, repo_root};

/// gunicorn on a unix socket in a temp folder; killed on drop.
pub struct Gunicorn {
    /// `unix:/…/gunicorn.sock`, for `[upstream] url`.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `workers` sync workers serving `tests/wsgi/{module}.py` and waits for the socket.
pub fn start(module: &str, workers: usize) -> Gunicorn {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gunicorn.sock");
    let child = Command::new(django::venv().join("bin/gunicorn"))
        .args(["--worker-class", "sync", "--workers", &workers.to_string(), "--no-control-socket", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .arg(format!("{module}:application"))
        .current_dir(wsgi_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gunicorn starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "gunicorn did not listen on {} within 30 s", socket.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Gunicorn { url: format!("unix:{}", socket.display()), child, _dir: dir }
}

fn wsgi_dir() -> PathBuf {
    repo_root().join("tests/wsgi")
}
