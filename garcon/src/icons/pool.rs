//! A counting semaphore bounding how many icon decodes/renders run at once.
//!
//! Decoding is the memory-hungry step (a 2048x2048 source is 16 MiB of RGBA before it is
//! scaled down), and GetIcon calls arrive in parallel: without a bound, 30 parallel requests
//! for one large PNG decoded it 30 times at once (1.6 GB RSS). With [`RENDER_PERMITS`] permits
//! the peak is `permits x` the per-decode budget ([`super::render::MAX_DECODED_BYTES`]),
//! whatever the load. The semaphore's mutex only guards a counter: it is never held while a
//! permit holder does its I/O or decoding.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Decodes/renders allowed at once: one per core of the usual 2-core VM.
pub const RENDER_PERMITS: usize = 2;
/// How long a render waits for a permit before giving up (the icon is then omitted). Every
/// render is bounded (raster decode by its size limits, SVG by its 1 s budget), so the wait
/// is bounded by the queue ahead; 30 s leaves room for a burst of GetIcon calls for large
/// sources on a slow (or debug) build, and an omitted icon is asked for again by the host.
pub const RENDER_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// A blocking counting semaphore (callers are `spawn_blocking` threads).
#[derive(Debug)]
pub struct RenderPool {
    available: Mutex<usize>,
    freed: Condvar,
}

/// A held permit; dropping it releases the permit.
#[derive(Debug)]
pub struct Permit<'a> {
    pool: &'a RenderPool,
}

impl RenderPool {
    /// A pool of `permits` (at least 1).
    pub fn new(permits: usize) -> Self {
        Self {
            available: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits up to `timeout` for a permit; `None` when none was freed in time.
    pub fn acquire(&self, timeout: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + timeout;
        let mut available = self.counter();
        while *available == 0 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return None;
            }
            available = match self.freed.wait_timeout(available, remaining) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *available -= 1;
        Some(Permit { pool: self })
    }

    fn counter(&self) -> MutexGuard<'_, usize> {
        // A plain counter: still consistent after a panic elsewhere.
        self.available.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.pool.counter() += 1;
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn at_most_the_permits_run_at_once_and_all_finish() {
        let pool = Arc::new(RenderPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _permit = pool.acquire(Duration::from_secs(10)).expect("permit");
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn acquire_times_out_while_all_permits_are_held() {
        let pool = RenderPool::new(1);
        let held = pool.acquire(Duration::ZERO).expect("first permit");
        let started = Instant::now();
        assert!(pool.acquire(Duration::from_millis(50)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(held);
        assert!(pool.acquire(Duration::ZERO).is_some());
    }
}
