//! Low-disk-space notification (garcon-host.md §10): every `period` (first check one period
//! after start, not at start) measure free space on `/`; below the threshold send
//! `LowDiskSpaceTriggered{free_bytes}`. No hysteresis, no de-duplication. statvfs failure sends 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::config::{LOW_DISK_PERIOD, LOW_DISK_THRESHOLD};
use crate::host::HostClient;

#[derive(Debug, Clone)]
pub struct LowDiskConfig {
    pub period: Duration,
    /// Free space strictly below this is "low" (1 GiB: exactly 1 GiB is fine).
    pub threshold: u64,
    pub path: PathBuf,
}

impl Default for LowDiskConfig {
    fn default() -> Self {
        Self {
            period: LOW_DISK_PERIOD,
            threshold: LOW_DISK_THRESHOLD,
            path: PathBuf::from("/"),
        }
    }
}

/// Available bytes for unprivileged users (`f_bavail × f_frsize`).
pub fn free_bytes(path: &std::path::Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// What to send after one measurement: `None` when there is enough space.
pub fn low_disk_report(measured: nix::Result<u64>, threshold: u64) -> Option<u64> {
    match measured {
        Ok(free) if free >= threshold => None,
        Ok(free) => Some(free),
        Err(_) => Some(0),
    }
}

/// Where the reports go (the host in production, a recorder in tests).
pub trait LowDiskSink: Send + Sync + 'static {
    fn report(&self, free_bytes: u64) -> BoxFuture<'_, ()>;
}

impl LowDiskSink for HostClient {
    fn report(&self, free_bytes: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(status) = self.low_disk_space_triggered(free_bytes).await {
                tracing::warn!(
                    free_bytes,
                    code = ?status.code(),
                    "LowDiskSpaceTriggered failed: {}",
                    status.message()
                );
            }
        })
    }
}

/// Runs the periodic check until the handle is aborted. `measure` is injectable for tests.
pub fn spawn_monitor<S, M>(config: LowDiskConfig, sink: Arc<S>, measure: M) -> JoinHandle<()>
where
    S: LowDiskSink + ?Sized,
    M: Fn(&std::path::Path) -> nix::Result<u64> + Send + 'static,
{
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + config.period;
        let mut ticks = tokio::time::interval_at(start, config.period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let measured = measure(&config.path);
            if let Err(error) = &measured {
                tracing::warn!(path = %config.path.display(), "statvfs failed: {error}");
            }
            if let Some(free) = low_disk_report(measured, config.threshold) {
                sink.report(free).await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(
        Mutex<Vec<(Duration, u64)>>,
        Mutex<Option<tokio::time::Instant>>,
    );

    impl LowDiskSink for Recorder {
        fn report(&self, free_bytes: u64) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                let origin = self.1.lock().unwrap().expect("origin set");
                let at = tokio::time::Instant::now() - origin;
                self.0.lock().unwrap().push((at, free_bytes));
            })
        }
    }

    #[test]
    fn threshold_is_exclusive_and_errors_report_zero() {
        assert_eq!(low_disk_report(Ok(1 << 30), 1 << 30), None);
        assert_eq!(
            low_disk_report(Ok((1 << 30) - 1), 1 << 30),
            Some((1 << 30) - 1)
        );
        assert_eq!(low_disk_report(Err(nix::Error::EIO), 1 << 30), Some(0));
    }

    #[test]
    fn free_bytes_of_root_is_measurable() {
        assert!(free_bytes(std::path::Path::new("/")).is_ok());
        assert!(free_bytes(std::path::Path::new("/nonexistent/dir")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn reports_every_period_starting_one_period_after_start() {
        let recorder = Arc::new(Recorder::default());
        *recorder.1.lock().unwrap() = Some(tokio::time::Instant::now());
        let task = spawn_monitor(LowDiskConfig::default(), recorder.clone(), |_| {
            Ok((1 << 30) - 1)
        });
        tokio::time::sleep(Duration::from_secs(119)).await;
        assert!(recorder.0.lock().unwrap().is_empty(), "nothing at start");
        tokio::time::sleep(Duration::from_secs(250)).await;
        task.abort();
        let got = recorder.0.lock().unwrap().clone();
        let secs: Vec<u64> = got.iter().map(|(at, _)| at.as_secs()).collect();
        assert_eq!(secs, [120, 240, 360]);
        assert!(got.iter().all(|(_, free)| *free == (1 << 30) - 1));
    }

    #[tokio::test(start_paused = true)]
    async fn enough_space_sends_nothing() {
        let recorder = Arc::new(Recorder::default());
        *recorder.1.lock().unwrap() = Some(tokio::time::Instant::now());
        let task = spawn_monitor(LowDiskConfig::default(), recorder.clone(), |_| Ok(1 << 30));
        tokio::time::sleep(Duration::from_secs(600)).await;
        task.abort();
        assert!(recorder.0.lock().unwrap().is_empty());
    }
}
