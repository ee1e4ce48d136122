//! Unique names for the snapshots, containers and mount points a worker creates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `<prefix>-<time><pid><counter>`: unique within this host for the life of the machine, without
/// a random number generator (the time separates processes with a reused pid).
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{nanos:x}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_do_not_repeat() {
        let a = super::unique("x");
        let b = super::unique("x");
        assert_ne!(a, b);
        assert!(a.starts_with("x-"));
    }
}
