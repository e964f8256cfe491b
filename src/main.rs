//! The `switchyard` command: load config, start, wait for a signal, drain, exit.

use std::path::PathBuf;
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
    /// Serve: plain HTTP to Django, WebSockets here.
    Run {
        /// The config file.
        #[arg(long, short, default_value = "switchyard.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
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
    /// Write a local CA and a localhost certificate for development.
    DevCert {
        /// Where to write localhost-ca.pem, localhost.pem and localhost-key.pem.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => report(run(config)),
        Command::Check { config } => check(config),
        Command::Whois { config, value } => whois(config, &value),
        Command::DevCert { dir } => report(dev_cert(dir)),
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

fn run(path: PathBuf) -> anyhow::Result<()> {
    use switchyard::server::{notify, Inherited};
    let config = Arc::new(load(&path)?);
    init_logging(&config.log);
    // Before any thread starts: taking the sockets systemd passed edits the environment.
    let inherited = Inherited::from_env()?;
    let running = switchyard::server::start_workers(config.clone(), config.server.workers, inherited)?;
    // The workers have runtimes of their own; this one waits for signals and beats the watchdog.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = Signals::new().context("cannot wait for signals")?;
        notify::ready("serving");
        let mut watchdog = notify::Watchdog::from_env();
        loop {
            tokio::select! {
                signal = signals.next() => match signal {
                    Signal::Stop => break,
                    Signal::Reload => {
                        notify::reloading();
                        tracing::warn!("SIGHUP: reloading is not supported yet; restart to apply a new config");
                        notify::ready("serving");
                    }
                },
                () = watchdog.beat(&running) => {}
            }
        }
        notify::stopping();
        tracing::info!(grace = ?config.server.shutdown_grace, "shutting down");
        running.shutdown(config.server.shutdown_grace).await;
        Ok(())
    })
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

fn init_logging(log: &config::LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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

fn dev_cert(dir: PathBuf) -> anyhow::Result<()> {
    let written = switchyard::devcert::write(&dir)?;
    println!("CA (trust this): {}", written.ca.display());
    println!("certificate:     {}", written.cert.display());
    println!("key:             {}", written.key.display());
    Ok(())
}
