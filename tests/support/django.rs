//! The demo Django project under real gunicorn, as the upstream for end-to-end tests.
//!
//! Needs the venv `scripts/test` builds (`.venv` at the repo root, or `SWITCHYARD_TEST_VENV`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::repo_root;

/// The demo's Django signing key in tests (Switchyard reads it from `secret_key_file`).
pub const SECRET_KEY: &str = "switchyard-tests-django-secret-key-0123456789abcdef";
/// The secret Switchyard signs command and hook calls with, in tests.
pub const BACKEND_SECRET: &str = "switchyard-tests-backend-secret";
/// A second user beside the demo's own (`demo` / `demo-password`): a superuser Django's
/// `createsuperuser` makes, for tests that need two people.
pub const OTHER_USER: (&str, &str) = ("root", "root-password");

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
    /// gunicorn's log so far (its stderr), for a failing test to show.
    pub log: Arc<Mutex<Vec<String>>>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for DjangoSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- gunicorn's log ---\n{}\n---", log.join("\n"));
        }
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
        .env("DJANGO_SUPERUSER_PASSWORD", OTHER_USER.1)
        .stdout(Stdio::null())
        .status()
        .expect("manage.py runs");
    assert!(status.success(), "manage.py {args:?} failed");
}

/// Gives the test a fresh migrated database with the demo user, starts gunicorn and
/// returns once it listens. The command-view port is gunicorn's own pick (it binds port 0),
/// read back from its "Listening at:" line, so no other test can take it in between.
pub fn start() -> DjangoSite {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    std::fs::copy(migrated_database(&venv), &db).expect("copies the migrated database");
    let socket = dir.path().join("gunicorn.sock");
    let mut child = Command::new(venv.join("bin/gunicorn"))
        // --preload: the master imports the site before it listens and forks, so its
        // "Listening at:" line means every worker can answer at once (without it, workers
        // import Django after that line, and a first request may wait seconds on a
        // loaded machine: longer than a hook's timeout).
        .args(["--workers", "2", "--preload", "--no-control-socket", "--bind"])
        .arg(format!("unix:{}", socket.display()))
        .args(["--bind", "127.0.0.1:0"])
        .arg("demo.wsgi:application")
        .current_dir(demo_dir())
        .env("DEMO_DB", &db)
        .env("DJANGO_SECRET_KEY", SECRET_KEY)
        .env("SWITCHYARD_BACKEND_SECRET", BACKEND_SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gunicorn starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let listening = read_log(child.stderr.take().unwrap(), log.clone());
    let port = match listening.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => http_port(&line).unwrap_or_else(|| panic!("no TCP address in gunicorn's {line:?}")),
        Err(_) => panic!("gunicorn did not listen within 30 s:\n{}", log.lock().unwrap().join("\n")),
    };
    std::fs::write(dir.path().join("django-secret"), SECRET_KEY).unwrap();
    std::fs::write(dir.path().join("backend-secret"), BACKEND_SECRET).unwrap();
    DjangoSite {
        url: format!("unix:{}", socket.display()),
        http: format!("http://127.0.0.1:{port}"),
        db,
        dir: dir.path().to_path_buf(),
        log,
        child,
        _dir: dir,
    }
}

/// A database Django migrated and gave the demo user, made once per version of the demo's
/// code and shared by every test as a file to copy (each test then writes its own copy).
/// Django itself writes it.
fn migrated_database(venv: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![demo_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map_while(Result::ok) {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "__pycache__") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "py") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    hash.update(venv.as_os_str().as_encoded_bytes());
    for file in &files {
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update(std::fs::read(file).unwrap());
    }
    let key: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-databases");
    std::fs::create_dir_all(&cache).unwrap();
    let ready = cache.join(format!("{key}.sqlite3"));
    if !ready.exists() {
        // Whoever comes first makes it under a name of its own and renames it into place
        // (atomic): tests starting together may each make one, none sees half a file.
        let making = cache.join(format!("{key}.{}.{:?}.making", std::process::id(), std::thread::current().id()));
        manage(venv, &making, &["migrate", "--noinput"]);
        manage(venv, &making, &["ensure_demo_user"]);
        let (user, _) = OTHER_USER;
        manage(venv, &making, &["createsuperuser", "--noinput", "--username", user, "--email", "root@example.com"]);
        std::fs::rename(&making, &ready).unwrap();
    }
    ready
}

/// Collects gunicorn's stderr into `log` on a thread; the returned channel gets the
/// "Listening at:" line (gunicorn writes it once every socket is bound and listening).
fn read_log(stderr: std::process::ChildStderr, log: Arc<Mutex<Vec<String>>>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Listening at: ") {
                let _ = tx.send(line.clone());
            }
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    rx
}

/// The port of the `http://127.0.0.1:PORT` listener in gunicorn's
/// `Listening at: unix:/…/gunicorn.sock,http://127.0.0.1:PORT (PID)`.
fn http_port(line: &str) -> Option<u16> {
    let at = line.find("http://127.0.0.1:")? + "http://127.0.0.1:".len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

impl DjangoSite {
    /// What the demo recorded of connection `id`'s hook and authorize calls, oldest first
    /// (`{"kind", "connection", "user", "seq", "at"}`), read from gunicorn directly (so it
    /// works after Switchyard stopped).
    pub async fn hook_log(&self, id: &str) -> Vec<serde_json::Value> {
        let request = http::Request::get(format!("{}/ws/hooks/log/?connection={id}", self.http))
            .header("host", "127.0.0.1")
            .body(super::bytes_body(""))
            .unwrap();
        let log = super::browser::json(super::client().request(request).await.unwrap()).await;
        log["calls"].as_array().expect("a hook log").clone()
    }

    /// `[django]` and `[backends]` sections that read this site's sessions and sign calls.
    pub fn switchyard_sections(&self) -> String {
        format!(
            "[django]\nsecret_key_file = \"{dir}/django-secret\"\nsession_engine = \"db\"\ndatabase = \"sqlite://{db}\"\n[backends]\nsecret_file = \"{dir}/backend-secret\"\n",
            dir = self.dir.display(),
            db = self.db.display(),
        )
    }
}
