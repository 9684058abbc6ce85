//! Fixed-window rate limiting as cicerone does it, with an injectable clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of "now"; tests inject a manual clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// At most `limit` calls per fixed window of `window`; the window starts at the first call.
pub struct FixedWindow {
    limit: u32,
    window: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<Option<(Instant, u32)>>,
}

impl FixedWindow {
    pub fn new(limit: u32, window: Duration, clock: Arc<dyn Clock>) -> Self {
        FixedWindow {
            limit,
            window,
            clock,
            state: Mutex::new(None),
        }
    }

    /// Counts one call; false when this call exceeds the window's budget.
    pub fn allow(&self) -> bool {
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            Some((start, count)) if now.duration_since(*start) < self.window => {
                *count += 1;
                *count <= self.limit
            }
            _ => {
                *state = Some((now, 1));
                self.limit >= 1
            }
        }
    }
}

/// One [`FixedWindow`] per key (per VM for ReportMetrics, as cicerone keeps one per VM), created
/// at a key's first call.
pub struct PerKey {
    limit: u32,
    window: Duration,
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<u32, Arc<FixedWindow>>>,
}

impl PerKey {
    pub fn new(limit: u32, window: Duration, clock: Arc<dyn Clock>) -> Self {
        PerKey {
            limit,
            window,
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one call of `key`; false when it exceeds that key's budget.
    pub fn allow(&self, key: u32) -> bool {
        let window = self
            .windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| {
                Arc::new(FixedWindow::new(
                    self.limit,
                    self.window,
                    self.clock.clone(),
                ))
            })
            .clone();
        window.allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ManualClock(Mutex<Instant>);
    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().expect("lock")
        }
    }

    #[test]
    fn eleventh_call_in_window_is_refused_and_next_window_resets() {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let limiter = FixedWindow::new(10, Duration::from_secs(15), clock.clone());
        for _ in 0..10 {
            assert!(limiter.allow());
        }
        assert!(!limiter.allow());
        *clock.0.lock().expect("lock") += Duration::from_secs(15);
        assert!(limiter.allow());
    }

    #[test]
    fn each_key_has_its_own_budget() {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let limiter = PerKey::new(40, Duration::from_secs(60), clock.clone());
        for _ in 0..40 {
            assert!(limiter.allow(3));
        }
        assert!(!limiter.allow(3), "41st call of VM 3");
        assert!(limiter.allow(4), "VM 4 is not limited by VM 3's calls");
        *clock.0.lock().expect("lock") += Duration::from_secs(60);
        assert!(limiter.allow(3), "next window");
    }
}
