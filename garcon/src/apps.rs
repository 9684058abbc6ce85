//! The application list (garcon-host §4.2-§4.6): scan the application directories, parse,
//! de-duplicate by desktop-file ID (before filtering), filter, look up `package_id`, and map to
//! the proto `Application`.
//!
//! Hostile trees and files (issue 9 #1, #5): directories are scanned at most
//! [`crate::watch::MAX_DEPTH`] levels below each application directory (the watcher's cap; a
//! warning once per root and build when hit), and the list is held to the host's size limit by
//! the caps of [`limits`]. The scan, the caps and the mapping run on blocking threads; only the
//! package-id lookups run on the async executor.

pub mod limits;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crostini_proto::container::application::{
    locale_strings::StringsWithLocale, localized_string::StringWithLocale, LocaleStrings,
    LocalizedString,
};
use crostini_proto::container::Application;
use futures::future::BoxFuture;
use futures::StreamExt;

use crate::desktop::{desktop_file_id, has_desktop_extension, DesktopEntry};

/// The desktop environment garcon pretends to be for `OnlyShowIn` / `NotShowIn`.
pub const DESKTOP_NAME: &str = "GNOME";

/// Environment the filter depends on (passed explicitly so tests need no global state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterContext {
    /// garcon's `PATH`, used for relative `TryExec`; `None` = unset (such entries are dropped).
    pub path_env: Option<OsString>,
}

impl FilterContext {
    /// Uses the process's `PATH`.
    pub fn from_env() -> Self {
        Self {
            path_env: std::env::var_os("PATH"),
        }
    }
}

/// One parsed desktop file that won its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEntry {
    /// The file as found while scanning (absolute if the application dir is).
    pub path: PathBuf,
    /// Derived from `path` (garcon-service §4.6).
    pub desktop_file_id: String,
    /// The parsed entry.
    pub entry: DesktopEntry,
}

/// Result of one scan (§4.2 steps 1-5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Entries that pass the filter, in scan order.
    pub apps: Vec<AppEntry>,
    /// Every non-zero `X-Steam-AppID` of any parsed file (before de-duplication, §4.8).
    pub steam_app_ids: BTreeSet<u64>,
}

/// Scans `application_dirs` in order (each `<data dir>/applications`), see garcon-host §4.2.
///
/// Missing or unreadable directories are skipped; files that fail to parse are skipped with a
/// warning and do not claim their ID; the first parsed file for an ID wins even when it is then
/// filtered out.
pub fn scan(application_dirs: &[PathBuf], filter: &FilterContext) -> ScanResult {
    let mut result = ScanResult::default();
    let mut claimed: HashSet<String> = HashSet::new();
    let mut buffer = Vec::new();
    for root in application_dirs {
        for path in desktop_files_under(root) {
            let entry = match DesktopEntry::from_file_with_buffer(&path, &mut buffer) {
                Ok(entry) => entry,
                Err(err) => {
                    tracing::warn!("skipping desktop file: {err}");
                    continue;
                }
            };
            if entry.steam_app_id != 0 {
                result.steam_app_ids.insert(entry.steam_app_id);
            }
            let id = desktop_file_id(&path);
            if !claimed.insert(id.clone()) {
                continue;
            }
            if should_pass_to_host(&entry, filter) {
                result.apps.push(AppEntry {
                    path,
                    desktop_file_id: id,
                    entry,
                });
            }
        }
    }
    result
}

/// All regular files (after following symlinks) under `root` whose name ends in `.desktop`,
/// recursively down to [`crate::watch::MAX_DEPTH`] levels below `root`, including dot-files. A
/// directory's files come before its subdirectories' (Chromium `FileEnumerator` order); each
/// directory (by device and inode) is entered once, which guards against symlink loops.
pub fn desktop_files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {
            visited.insert((meta.dev(), meta.ino()));
        }
        _ => return files,
    }
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    let mut capped = false;
    while let Some((dir, depth)) = pending.pop() {
        let reader = match std::fs::read_dir(&dir) {
            Ok(reader) => reader,
            Err(err) => {
                tracing::warn!(dir = %dir.display(), "cannot list application directory: {err}");
                continue;
            }
        };
        for item in reader.flatten() {
            let path = item.path();
            let Ok(file_type) = item.file_type() else {
                continue;
            };
            if file_type.is_file() {
                if has_desktop_extension(&path) {
                    files.push(path);
                }
                continue;
            }
            if !file_type.is_dir() && !file_type.is_symlink() {
                continue;
            }
            // Directories and symlinks: follow; dangling links are skipped.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth >= crate::watch::MAX_DEPTH {
                    capped = true;
                } else if visited.insert((meta.dev(), meta.ino())) {
                    pending.push((path, depth + 1));
                }
            } else if meta.is_file() && has_desktop_extension(&path) {
                files.push(path);
            }
        }
    }
    if capped {
        tracing::warn!(
            dir = %root.display(),
            "directory tree deeper than {} levels: deeper directories are not scanned",
            crate::watch::MAX_DEPTH
        );
    }
    files
}

/// The filter of garcon-host §4.5 ("should pass to host").
pub fn should_pass_to_host(entry: &DesktopEntry, filter: &FilterContext) -> bool {
    if entry.entry_type != "Application" || entry.hidden || entry.exec.is_empty() {
        return false;
    }
    if entry.no_display && entry.mime_types.is_empty() {
        return false;
    }
    if entry.categories.iter().any(|c| c == "Settings") {
        return false;
    }
    if !entry.only_show_in.is_empty() && !entry.only_show_in.iter().any(|d| d == DESKTOP_NAME) {
        return false;
    }
    if entry.not_show_in.iter().any(|d| d == DESKTOP_NAME) {
        return false;
    }
    entry.try_exec.is_empty() || try_exec_found(&entry.try_exec, filter.path_env.as_deref())
}

/// `TryExec`: an absolute path must exist with the owner-execute bit; a relative name must be
/// found that way in some `PATH` entry; no `PATH` means not found.
fn try_exec_found(try_exec: &str, path_env: Option<&std::ffi::OsStr>) -> bool {
    let owner_executable =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o100 != 0);
    let candidate = Path::new(try_exec);
    if candidate.is_absolute() {
        return owner_executable(candidate);
    }
    path_env.is_some_and(|paths| {
        std::env::split_paths(paths).any(|dir| owner_executable(&dir.join(candidate)))
    })
}

/// Base name of `argv[0]` of `Exec` expanded with no files (garcon-host §4.3), or `""` when the
/// expansion is empty or the name is not ASCII.
pub fn executable_file_name(entry: &DesktopEntry, desktop_file: &Path) -> String {
    let Some(argv0) = exec_argv0(entry, desktop_file) else {
        return String::new();
    };
    let name = base_name(&argv0);
    if name.is_ascii() {
        name.to_owned()
    } else {
        String::new()
    }
}

/// Chromium `FilePath::BaseName`: trailing separators are ignored (`my/path/` -> `path`); a
/// path of only separators is `/`.
fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "" } else { "/" };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// The first argument of the Exec expansion (garcon-service §5.1.3) with no files.
fn exec_argv0(entry: &DesktopEntry, desktop_file: &Path) -> Option<String> {
    crate::exec::expand_entry_exec(entry, desktop_file, &[])
        .into_iter()
        .next()
}

/// Maps a scanned entry to the proto `Application` (garcon-host §4.3). Localized values are
/// in locale order with `""` first; empty localized groups are left unset, as upstream.
/// Consumes the entry: a list holds hundreds of thousands of strings, so moving beats cloning.
pub fn into_application(app: AppEntry, package_id: String) -> Application {
    let executable_file_name = executable_file_name(&app.entry, &app.path);
    let e = app.entry;
    let localized = |map: std::collections::BTreeMap<String, String>| {
        (!map.is_empty()).then(|| LocalizedString {
            values: map
                .into_iter()
                .map(|(locale, value)| StringWithLocale { locale, value })
                .collect(),
        })
    };
    let keywords = (!e.keywords.is_empty()).then(|| LocaleStrings {
        values: e
            .keywords
            .into_iter()
            .map(|(locale, value)| StringsWithLocale { locale, value })
            .collect(),
    });
    Application {
        desktop_file_id: app.desktop_file_id,
        name: localized(e.name),
        comment: localized(e.comment),
        mime_types: e.mime_types,
        no_display: e.no_display,
        startup_wm_class: e.startup_wm_class,
        startup_notify: e.startup_notify,
        package_id,
        keywords,
        executable_file_name,
        extensions: Vec::new(),
        exec: e.exec,
        terminal: e.terminal,
    }
}

/// Looks up the PackageKit package id owning a desktop file (garcon-host §4.6).
///
/// Implemented by the PackageKit module; any `Fn(&Path) -> Option<String>` works for tests.
/// `None` (not owned, error, timeout) becomes an empty `package_id`.
pub trait PackageIdLookup: Send + Sync {
    /// The package id (`name;version;arch;data`) owning `desktop_file`, if any.
    fn package_id<'a>(&'a self, desktop_file: &'a Path) -> BoxFuture<'a, Option<String>>;
}

impl<F> PackageIdLookup for F
where
    F: Fn(&Path) -> Option<String> + Send + Sync,
{
    fn package_id<'a>(&'a self, desktop_file: &'a Path) -> BoxFuture<'a, Option<String>> {
        let id = self(desktop_file);
        Box::pin(async move { id })
    }
}

/// A lookup that never finds a package (PackageKit unavailable).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPackageLookup;

impl PackageIdLookup for NoPackageLookup {
    fn package_id<'a>(&'a self, _desktop_file: &'a Path) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// How one full build looks up package ids.
#[derive(Clone)]
pub struct PackageLookupConfig {
    /// The lookup.
    pub lookup: Arc<dyn PackageIdLookup>,
    /// Lookups in flight at once (upstream: 1; garcon-host §4.6 allows bounded parallelism).
    pub concurrency: usize,
    /// Per-lookup cap; a lookup that takes longer yields an empty package_id.
    pub timeout: Duration,
}

impl Default for PackageLookupConfig {
    fn default() -> Self {
        Self {
            lookup: Arc::new(NoPackageLookup),
            concurrency: 4,
            timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for PackageLookupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageLookupConfig")
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Maps scanned entries to `Application`s with package ids, preserving scan order (no size
/// caps: [`build_application_list`] applies those).
pub async fn with_package_ids(
    apps: Vec<AppEntry>,
    config: &PackageLookupConfig,
) -> Vec<Application> {
    let ids = package_ids(&apps, config).await;
    apps.into_iter()
        .zip(ids)
        .map(|(app, id)| into_application(app, id))
        .collect()
}

/// The package id of each entry, in order (bounded parallel lookups).
async fn package_ids(apps: &[AppEntry], config: &PackageLookupConfig) -> Vec<String> {
    // Boxed first: a lazy `map` here trips the Send check of the spawned build.
    let lookups: Vec<BoxFuture<'_, String>> = apps
        .iter()
        .map(|app| Box::pin(lookup_one(&app.path, config)) as BoxFuture<'_, String>)
        .collect();
    futures::stream::iter(lookups)
        .buffered(config.concurrency.max(1))
        .collect()
        .await
}

async fn lookup_one(path: &Path, config: &PackageLookupConfig) -> String {
    let lookup = config.lookup.package_id(path);
    match tokio::time::timeout(config.timeout, lookup).await {
        Ok(found) => found.unwrap_or_default(),
        Err(_) => {
            tracing::warn!(path = %path.display(), "package id lookup timed out");
            String::new()
        }
    }
}

/// A build that could not produce a list (the previous list should stay in effect).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The blocking scan task panicked or was cancelled.
    #[error("application directory scan task failed: {0}")]
    ScanTask(#[from] tokio::task::JoinError),
}

/// One full build: scan and cap the fields (on a blocking thread), look up package ids, then
/// map and fit the list to the host's limit (on a blocking thread), see [`limits`].
pub async fn build_application_list(
    application_dirs: Vec<PathBuf>,
    filter: FilterContext,
    packages: &PackageLookupConfig,
) -> Result<(Vec<Application>, BTreeSet<u64>), BuildError> {
    let ScanResult {
        apps,
        steam_app_ids,
    } = tokio::task::spawn_blocking(move || {
        let mut scanned = scan(&application_dirs, &filter);
        scanned.apps = limits::cap_entries(scanned.apps);
        scanned
    })
    .await?;
    let ids = package_ids(&apps, packages).await;
    let apps = tokio::task::spawn_blocking(move || {
        let mapped = apps
            .into_iter()
            .zip(ids)
            .map(|(app, id)| (app.path.clone(), into_application(app, id)))
            .collect();
        limits::fit_list(mapped)
    })
    .await?;
    Ok((apps, steam_app_ids))
}

#[cfg(test)]
mod tests;
