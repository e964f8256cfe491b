//! Where Switchyard reads the wall-clock time: the session bridge for every expiry check (a
//! session row's `expire_date`, a signed cookie's age, how long a cached answer may live)
//! and the backend client for the time each call is signed at (`X-Switchyard-Signature`'s
//! `t=`). The system clock in production; a clock the caller sets in tests, so a verdict
//! Django gave at a known instant can be checked at that same instant however long ago it
//! was, and a signature's time can be compared with an exact expected value. Timers and
//! timeouts use tokio's monotonic time, not this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The system clock ([`Clock::default`]), or a set one that moves only when told.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Microseconds since the epoch while set; `None` reads the system clock.
    set: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that says `at` until [`Clock::set`] moves it.
    pub fn fixed(at: SystemTime) -> Self {
        Clock { set: Some(Arc::new(AtomicU64::new(micros(at)))) }
    }

    /// A fixed clock at `secs` Unix seconds (fractions kept to the microsecond).
    pub fn at_unix_secs(secs: f64) -> Self {
        Clock::fixed(UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0)))
    }

    /// Moves a fixed clock to `at` (every clone sees it); the system clock ignores this.
    pub fn set(&self, at: SystemTime) {
        if let Some(set) = &self.set {
            set.store(micros(at), Ordering::Relaxed);
        }
    }

    /// Now, by this clock.
    pub fn now(&self) -> SystemTime {
        match &self.set {
            None => SystemTime::now(),
            Some(set) => UNIX_EPOCH + Duration::from_micros(set.load(Ordering::Relaxed)),
        }
    }

    /// Now in whole seconds since the epoch (0 before it).
    pub fn unix_secs(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_clock_moves_only_when_set_and_every_clone_follows() {
        let clock = Clock::at_unix_secs(1_700_000_000.5);
        let clone = clock.clone();
        assert_eq!(clone.now(), UNIX_EPOCH + Duration::from_millis(1_700_000_000_500));
        clock.set(UNIX_EPOCH + Duration::from_secs(42));
        assert_eq!(clone.now(), UNIX_EPOCH + Duration::from_secs(42));
    }

    #[test]
    fn the_system_clock_is_now_and_ignores_set() {
        let clock = Clock::system();
        clock.set(UNIX_EPOCH);
        let now = clock.now();
        assert!(now.duration_since(SystemTime::now() - Duration::from_secs(60)).is_ok(), "{now:?}");
    }
}
