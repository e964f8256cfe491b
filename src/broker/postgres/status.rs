//! What the postgres broker reports in `Health`: which phase the listener is in (an explicit
//! state machine), how far behind the commits it is, how many events it applies per second.
//! Written by the listener only; read by `/healthz` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::broker::rate::EventRate;
use crate::broker::Health;

/// Where the listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the first connection.
    Connecting,
    /// Connected and listening; reading what it missed from the table.
    CatchingUp,
    /// Connected, caught up, applying notifications as they come.
    Listening,
    /// The connection was lost; trying again with backoff.
    Reconnecting,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::CatchingUp => "catching up",
            Self::Listening => "listening",
            Self::Reconnecting => "reconnecting",
        }
    }

    /// Events flow in these phases.
    fn ok(self) -> bool {
        matches!(self, Self::CatchingUp | Self::Listening)
    }
}

/// The shared status.
#[derive(Debug)]
pub struct Status {
    phase: Mutex<PhaseNow>,
    applied: AtomicU64,
    reconnects: AtomicU64,
    /// Latest commit-to-apply delay, in microseconds.
    lag_micros: AtomicU64,
    /// The database clock minus ours, in microseconds (measured at each connect).
    skew_micros: std::sync::atomic::AtomicI64,
    rate: EventRate,
}

#[derive(Debug)]
struct PhaseNow {
    phase: Phase,
    since: Instant,
    error: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            phase: Mutex::new(PhaseNow { phase: Phase::Connecting, since: Instant::now(), error: None }),
            applied: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            lag_micros: AtomicU64::new(0),
            skew_micros: std::sync::atomic::AtomicI64::new(0),
            rate: EventRate::default(),
        }
    }
}

impl Status {
    fn now(&self) -> std::sync::MutexGuard<'_, PhaseNow> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The listener moved to `phase`; `error` says why when it lost the connection.
    pub fn enter(&self, phase: Phase, error: Option<String>) {
        let mut now = self.now();
        if phase == Phase::Reconnecting && now.phase != Phase::Reconnecting {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        // Reconnecting keeps the instant the connection was lost, for the lag.
        if now.phase != phase {
            now.since = Instant::now();
        }
        now.phase = phase;
        now.error = error.or_else(|| if phase.ok() { None } else { now.error.take() });
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.now().phase
    }

    /// The database's clock minus ours, from one reading of it taken `round_trip` long.
    pub fn measured_clock(&self, db_seconds: f64, round_trip: Duration, read_at: SystemTime) {
        let ours =
            read_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() - round_trip.as_secs_f64() / 2.0;
        self.skew_micros.store(((db_seconds - ours) * 1e6) as i64, Ordering::Relaxed);
    }

    /// One row applied; `at` is its commit time by the database's clock.
    pub fn applied(&self, at: Option<f64>) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.rate.record(1);
        if let Some(at) = at {
            let ours = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            let skew = self.skew_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let lag = (ours + skew - at).max(0.0);
            self.lag_micros.store((lag * 1e6) as u64, Ordering::Relaxed);
        }
    }

    /// The broker's health.
    pub fn health(&self) -> Health {
        let (phase, since, error) = {
            let now = self.now();
            (now.phase, now.since, now.error.clone())
        };
        let lag_seconds = match phase {
            Phase::Reconnecting | Phase::Connecting => since.elapsed().as_secs_f64(),
            Phase::CatchingUp | Phase::Listening => self.lag_micros.load(Ordering::Relaxed) as f64 / 1e6,
        };
        Health {
            kind: "postgres",
            state: phase.as_str().to_string(),
            ok: phase.ok(),
            lag_seconds,
            events_per_second: self.rate.per_second(),
            events: self.applied.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_counts_once_and_keeps_its_reason_until_events_flow() {
        let status = Status::default();
        assert_eq!(status.health().state, "connecting");
        status.enter(Phase::Listening, None);
        status.enter(Phase::Reconnecting, Some("connection refused".into()));
        status.enter(Phase::Reconnecting, None);
        let health = status.health();
        assert_eq!((health.state.as_str(), health.ok, health.reconnects), ("reconnecting", false, 1));
        assert_eq!(health.error.as_deref(), Some("connection refused"));
        status.enter(Phase::CatchingUp, None);
        let health = status.health();
        assert!(health.ok && health.error.is_none());
    }
}
