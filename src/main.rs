//! The `switchyard` command: load config, start, wait for a signal, drain, exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard::config::{self, Config, LogFormat, ProcessEnv};
use tracing_subscriber::EnvFilter;

/// A WebSocket front proxy for Django.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: plain HTTP to Django, WebSockets here. SIGHUP reloads the config; SIGTERM or
    /// SIGINT drains and exits.
    Run {
        /// The config file.
        #[arg(long, short, default_value = "switchyard.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// Write the process id here once serving (removed at exit), for `switchyard reload`.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Ask a running Switchyard to reload its config: the process named by --pid-file,
    /// or else systemd's switchyard.service (`systemctl reload`). The result is in its log.
    Reload {
        /// The file `switchyard run --pid-file` wrote.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Validate the config and print the effective config (secrets masked).
    Check {
        /// The config file.
        #[arg(long, short, default_value = "switchyard.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Show who a session belongs to, resolved exactly as an upgrade would resolve it.
    /// Prints the user as JSON (exit 0), `anonymous: <reason>` (exit 1), or an error (exit 2).
    Whois {
        /// The config file (its `[django]` section is used).
        #[arg(long, short, default_value = "switchyard.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// A session key, a signed-cookie value, or a whole Cookie header.
        value: String,
    },
    /// Write a local CA and a localhost certificate for development (certs/README.md says
    /// how to trust and rotate it).
    DevCert {
        /// Where to write localhost-ca.pem, localhost.pem and localhost-key.pem: the
        /// repository's certs/ folder when run from its root.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Replace an existing certificate and CA (rotation: the new CA must be trusted again).
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, pid_file } => report(run(config, pid_file)),
        Command::Reload { pid_file } => report(reload(pid_file)),
        Command::Check { config } => check(config),
        Command::Whois { config, value } => whois(config, &value),
        Command::DevCert { dir, force } => report(dev_cert(dir, force)),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(config::load(path, &ProcessEnv)?)
}

fn check(path: PathBuf) -> ExitCode {
    match load(&path) {
        Ok(config) => {
            println!("{}", config.to_toml().trim_end());
            eprintln!("switchyard: {} is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: PathBuf, pid_file: Option<PathBuf>) -> anyhow::Result<()> {
    use switchyard::server::{notify, Inherited};
    let config = Arc::new(load(&path)?);
    let log = init_logging(&config.log);
    // Before any thread starts: taking the sockets systemd passed edits the environment.
    let inherited = Inherited::from_env()?;
    // The workers have runtimes of their own; this one waits for signals and beats the
    // watchdog. Signals are taken first: an early SIGHUP must not end the process.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut signals = runtime.block_on(async { Signals::new() }).context("cannot wait for signals")?;
    let running = switchyard::server::start_workers(config.clone(), config.server.workers, inherited)?;
    let _pid_file = pid_file.map(PidFile::write).transpose()?;
    runtime.block_on(async {
        notify::ready("serving");
        let mut watchdog = notify::Watchdog::from_env();
        loop {
            tokio::select! {
                signal = signals.next() => match signal {
                    Signal::Stop => break,
                    Signal::Reload => {
                        notify::reloading();
                        let status = reload_config(&path, &running, &log).await;
                        notify::ready(status);
                    }
                },
                () = watchdog.beat(&running) => {}
            }
        }
        notify::stopping();
        let grace = running.config().server.shutdown_grace;
        tracing::info!(?grace, "shutting down");
        running.shutdown(grace).await;
        Ok(())
    })
}

/// Reads `path` again and puts it in force; a config that does not load or apply is
/// refused with its reason, and the one in force stays. Returns the service status.
async fn reload_config(path: &Path, running: &switchyard::server::Running, log: &LogLevel) -> &'static str {
    let config = match load(path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("reload refused, the running config stays: {e:#}");
            return "serving; the last reload was refused (see the log)";
        }
    };
    let level = config.log.level.clone();
    match running.reload(config).await {
        Ok(reloaded) => {
            log.set(&level);
            if !reloaded.restart_only.is_empty() {
                let options = reloaded.restart_only.join(", ");
                tracing::warn!(%options, "these options changed but take effect only at a restart");
            }
            tracing::info!(closed = reloaded.closed, config = %path.display(), "reloaded");
            "serving"
        }
        Err(e) => {
            tracing::error!("reload refused, the running config stays: {e}");
            "serving; the last reload was refused (see the log)"
        }
    }
}

/// `switchyard reload`: SIGHUP to the process in `pid_file`, or `systemctl reload`.
fn reload(pid_file: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(pid_file) = pid_file else {
        let status = std::process::Command::new("systemctl")
            .args(["reload", "switchyard.service"])
            .status()
            .context("without --pid-file, `systemctl reload switchyard.service` is used, and it did not run")?;
        anyhow::ensure!(status.success(), "systemctl reload switchyard.service failed ({status})");
        return Ok(());
    };
    let text = std::fs::read_to_string(&pid_file).with_context(|| format!("cannot read {}", pid_file.display()))?;
    let pid: libc::pid_t = text
        .trim()
        .parse()
        .ok()
        .filter(|&pid| pid > 0)
        .with_context(|| format!("{} does not hold a process id: {:?}", pid_file.display(), text.trim()))?;
    // SAFETY: kill(2) with a positive pid signals that one process and touches no memory.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("cannot signal process {pid} (from {}): {e}", pid_file.display());
    }
    println!("asked process {pid} to reload; its log says how it went");
    Ok(())
}

/// The pid file of `run --pid-file`, removed when the process exits.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> anyhow::Result<Self> {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a signal asks for.
enum Signal {
    /// SIGTERM (systemd, docker) or SIGINT (Ctrl-C): drain and exit.
    Stop,
    /// SIGHUP (`systemctl reload`): read the config again.
    Reload,
}

/// The signals `run` answers.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// Sets the log level a reload asks for; `RUST_LOG`, when set, wins over the config
/// at start and at every reload.
struct LogLevel {
    set: Box<dyn Fn(EnvFilter) -> Result<(), tracing_subscriber::reload::Error>>,
    from_env: bool,
}

impl LogLevel {
    fn set(&self, level: &str) {
        if self.from_env {
            return;
        }
        if let Err(e) = (self.set)(EnvFilter::new(level)) {
            tracing::warn!(error = %e, "cannot change the log level");
        }
    }
}

fn init_logging(log: &config::LogConfig) -> LogLevel {
    let from_env = EnvFilter::try_from_default_env().ok();
    let from_env_set = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let set: Box<dyn Fn(EnvFilter) -> Result<(), tracing_subscriber::reload::Error>> = match log.format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter))
        }
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter))
        }
    };
    LogLevel { set, from_env: from_env_set }
}

fn whois(path: PathBuf, value: &str) -> ExitCode {
    use switchyard::django::Identity;
    let answer = load(&path).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(runtime.block_on(switchyard::django::whois::whois(&config, value))?)
    });
    match answer {
        Ok(Identity::User(user)) => {
            println!("{}", serde_json::to_string(&*user).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(Identity::Anonymous(reason)) => {
            println!("anonymous: {reason}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dev_cert(dir: PathBuf, force: bool) -> anyhow::Result<()> {
    use switchyard::devcert::Overwrite;
    let written = switchyard::devcert::write(&dir, if force { Overwrite::Replace } else { Overwrite::Refuse })?;
    println!("CA (trust this): {}", written.ca.display());
    println!("certificate:     {}", written.cert.display());
    println!("key:             {}", written.key.display());
    Ok(())
}
