//! Events per second over a short sliding window, for `Health`: one counter per whole second,
//! rotated lazily when an event arrives or the rate is read (no timer task).

use std::sync::Mutex;
use std::time::Instant;

/// Seconds the rate is averaged over.
pub const WINDOW: u64 = 10;

/// A sliding count of events per second.
#[derive(Debug)]
pub struct EventRate {
    start: Instant,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    /// The second (since `start`) the newest bucket counts.
    now: u64,
    counts: [u64; WINDOW as usize + 1],
}

impl Default for EventRate {
    fn default() -> Self {
        Self { start: Instant::now(), buckets: Mutex::default() }
    }
}

impl EventRate {
    /// Counts `n` events now.
    pub fn record(&self, n: u64) {
        let second = self.second();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.advance(second);
        buckets.counts[(second % (WINDOW + 1)) as usize] += n;
    }

    /// Events per second over the last [`WINDOW`] complete seconds.
    pub fn per_second(&self) -> f64 {
        let second = self.second();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.advance(second);
        let current = (second % (WINDOW + 1)) as usize;
        let total: u64 = buckets.counts.iter().enumerate().filter(|(i, _)| *i != current).map(|(_, c)| c).sum();
        total as f64 / WINDOW as f64
    }

    fn second(&self) -> u64 {
        self.start.elapsed().as_secs()
    }
}

impl Buckets {
    /// Zeroes the buckets of the seconds that passed since the newest.
    fn advance(&mut self, second: u64) {
        if second <= self.now {
            return;
        }
        let passed = (second - self.now).min(WINDOW + 1);
        for s in 1..=passed {
            self.counts[((self.now + s) % (WINDOW + 1)) as usize] = 0;
        }
        self.now = second;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_seconds_leave_the_window() {
        let mut b = Buckets::default();
        b.counts[0] = 5;
        b.advance(3);
        assert_eq!(b.counts[0], 5, "second 0 is still inside the window");
        b.advance(WINDOW + 1);
        assert_eq!(b.counts.iter().sum::<u64>(), 0);
    }

    #[test]
    fn the_current_second_is_not_counted_yet() {
        let rate = EventRate::default();
        rate.record(100);
        assert_eq!(rate.per_second(), 0.0);
    }
}
