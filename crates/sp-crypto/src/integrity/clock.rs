//! The two clocks the layer reads, behind a trait so tests (and
//! simulations) can step them.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the integrity layer gets the time.
///
/// * [`Clock::wall_ms`] dates what is signed and judges freshness: that
///   compares the sender's clock with the receiver's, so it has to be the
///   wall clock, and it may step (NTP, an operator, a bad RTC at boot).
/// * [`Clock::monotonic`] measures local silences and ages (when a replay
///   window may be forgotten, how long a cached reply is kept): it never
///   steps, so a wall clock step cannot make live state look old.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> u64;
    /// Time since a fixed, arbitrary point; never goes back.
    fn monotonic(&self) -> Duration;
}

/// The system's clocks: `SystemTime` and `Instant`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
            .unwrap_or(0)
    }
    fn monotonic(&self) -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}
