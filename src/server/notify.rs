//! Telling the service manager what Switchyard is doing, through the sd-notify protocol
//! (`Type=notify` units; `sd_notify(3)`): `READY=1` once every listener serves,
//! `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` when draining begins, and
//! `WATCHDOG=1` while every worker answers.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing. A failed
//! notification is logged and otherwise ignored: the service manager's view of us must
//! never stop us from serving.

use std::time::Duration;

use sd_notify::NotifyState;

use super::Running;

/// Tells the service manager that Switchyard serves (start-up, or a reload finished).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager that a reload began; [`ready`] ends it. `MONOTONIC_USEC`
/// lets systemd 253+ match the two.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading")]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
    }
}

/// Tells the service manager that Switchyard drains and will exit.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The systemd watchdog (`WatchdogSec=`): a beat every half period, sent only while every
/// worker runtime runs a task within that half period, so a stuck worker gets the
/// process restarted.
#[derive(Debug)]
pub struct Watchdog {
    tick: Option<tokio::time::Interval>,
}

impl Watchdog {
    /// The watchdog the service manager asked for (`WATCHDOG_USEC`, `WATCHDOG_PID`); one
    /// that never beats when none was asked for. Needs a tokio runtime.
    pub fn from_env() -> Self {
        let tick = sd_notify::watchdog_enabled().map(|period| {
            let mut tick = tokio::time::interval((period / 2).max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        Self { tick }
    }

    /// Waits for the next beat and sends it when `running` is responsive; pends forever
    /// when the watchdog is off. Cancel-safe, for a `select!` loop.
    pub async fn beat(&mut self, running: &Running) {
        let Some(tick) = &mut self.tick else {
            return std::future::pending().await;
        };
        tick.tick().await;
        let patience = tick.period();
        if running.responsive(patience).await {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(?patience, "a worker did not answer: withholding the watchdog beat");
        }
    }
}
