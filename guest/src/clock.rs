//! The wall clock, read as microseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in microseconds since 1970-01-01T00:00:00Z, saturating at the `i64` range.
pub fn now_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(|us| -us)
            .unwrap_or(i64::MIN),
    }
}
