//! Accepting when the process runs out of file descriptors (or the kernel out of memory
//! for sockets): accept fails at once, over and over, while every connection already
//! open is still served. We back off (10 ms, doubling to 1 s) instead of spinning, and log
//! once per burst: one warning when it starts, one line when accepting works again.
//! Errors that concern one connection only (it was reset before we took it) just move on.

use std::io;
use std::time::Duration;

/// The first pause after a resource error.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: a freed descriptor is used within a second.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// One accept loop's state across errors.
#[derive(Debug, Default)]
pub struct Backoff {
    /// Resource errors in the current burst.
    errors: u64,
    pause: Duration,
}

impl Backoff {
    /// After a failed accept: how long to wait before the next (zero for a per-connection
    /// error). Logs the first resource error of a burst.
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        if !is_resource_error(error) {
            tracing::debug!(%error, "accept failed for one connection");
            return Duration::ZERO;
        }
        if self.errors == 0 {
            tracing::warn!(%error, "cannot accept connections (out of file descriptors?): backing off");
        }
        self.errors += 1;
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        self.pause
    }

    /// After a successful accept: ends a burst (and says so).
    pub fn accepted(&mut self) {
        if self.errors > 0 {
            tracing::info!(failed = self.errors, "accepting connections again");
            *self = Self::default();
        }
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the machine is out of something.
fn is_resource_error(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    ) || error.kind() == io::ErrorKind::OutOfMemory
}

/// The errno values (Linux) we tell apart; spelled out to need no libc dependency.
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    pub const ENOBUFS: i32 = 105;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_back_off_doubling_to_a_second() {
        let mut backoff = Backoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..9).map(|_| backoff.failed(&emfile).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.accepted();
        assert_eq!(backoff.failed(&emfile), FIRST_PAUSE);
    }

    #[test]
    fn a_reset_connection_does_not_pause_accepting() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.failed(&io::Error::from(io::ErrorKind::ConnectionAborted)), Duration::ZERO);
    }
}
