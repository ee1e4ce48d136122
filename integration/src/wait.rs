//! Polling with a deadline, for conditions that become true asynchronously (sockets, garbage collection).

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

use crate::FixtureError;

/// How long to sleep between two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` until it returns `Ok`, at most for `timeout`.
///
/// `check` returns `Err(reason)` while the condition is not yet true; the last reason goes into the
/// [`FixtureError::Timeout`] returned when time runs out, so a failing test says what it saw last.
/// `check` runs at least once, even with a zero timeout.
pub fn eventually<T>(
    what: impl Display,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, FixtureError> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                return Err(FixtureError::Timeout {
                    what: what.to_string(),
                    timeout,
                    last,
                })
            }
            Err(_) => thread::sleep(POLL_INTERVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_success() {
        let mut calls = 0;
        let value = eventually("three calls", Duration::from_secs(5), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        })
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn times_out_with_the_last_reason() {
        let err = eventually::<()>("never", Duration::ZERO, || Err("still no".into())).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("never") && message.contains("still no"),
            "{message}"
        );
    }
}
