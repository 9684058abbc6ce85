//! Package ids of desktop files for the app list (garcon-host §4.6), cached so that a rebuild of
//! the list does not cost one PackageKit transaction per application.
//!
//! An entry is keyed by the path and the file's stamp (mtime, ctime, inode, device, size): dpkg
//! replaces a file it installs or upgrades by renaming a new one into place, which changes the
//! inode and ctime even when the package preserved the mtime, so an ownership change of an
//! existing path always misses the cache. Failed lookups (PackageKit error, timeout) are not
//! cached; "not owned" is.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::client::PackageKit;

/// Identity of one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
    size: u64,
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
            ino: metadata.ino(),
            dev: metadata.dev(),
            size: metadata.size(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    stamp: FileStamp,
    package_id: Option<String>,
}

/// Beyond this many entries the cache is cleared before inserting (desktop files that were
/// deleted leave stale entries behind; a system has far fewer desktop files than this).
const MAX_ENTRIES: usize = 20_000;

/// Cached `SearchFiles` lookups of desktop files.
#[derive(Debug)]
pub struct PackageIdCache {
    packagekit: PackageKit,
    lookup_timeout: Duration,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    dbus_lookups: AtomicU64,
}

impl PackageIdCache {
    /// A cache over `packagekit`; one uncached lookup may take at most `lookup_timeout`.
    pub fn new(packagekit: PackageKit, lookup_timeout: Duration) -> Self {
        Self {
            packagekit,
            lookup_timeout,
            entries: Mutex::new(HashMap::new()),
            dbus_lookups: AtomicU64::new(0),
        }
    }

    /// The id of the package owning `desktop_file`, `None` when no package owns it, the file is
    /// gone, its path is not UTF-8, or PackageKit failed or timed out (logged).
    pub async fn package_id(&self, desktop_file: &Path) -> Option<String> {
        let metadata = match tokio::fs::metadata(desktop_file).await {
            Ok(metadata) => metadata,
            Err(err) => {
                tracing::debug!(path = %desktop_file.display(), %err, "desktop file gone, no package id");
                return None;
            }
        };
        let stamp = FileStamp::of(&metadata);
        if let Some(entry) = self.lock().get(desktop_file) {
            if entry.stamp == stamp {
                return entry.package_id.clone();
            }
        }
        let Some(path) = desktop_file.to_str() else {
            tracing::warn!(path = %desktop_file.display(), "non-UTF-8 path cannot be searched over D-Bus");
            return None;
        };
        self.dbus_lookups.fetch_add(1, Ordering::Relaxed);
        let found =
            tokio::time::timeout(self.lookup_timeout, self.packagekit.owner_of_file(path)).await;
        let package_id = match found {
            Ok(Ok(package_id)) => package_id,
            Ok(Err(failure)) => {
                tracing::warn!(path, %failure, "package id lookup failed");
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    path,
                    timeout_ms = self.lookup_timeout.as_millis() as u64,
                    "package id lookup timed out"
                );
                return None;
            }
        };
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            desktop_file.to_owned(),
            Entry {
                stamp,
                package_id: package_id.clone(),
            },
        );
        package_id
    }

    /// Forgets every entry (e.g. after an install or removal).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of cached paths.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many lookups went to PackageKit so far (cache misses).
    pub fn dbus_lookups(&self) -> u64 {
        self.dbus_lookups.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // clears), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
