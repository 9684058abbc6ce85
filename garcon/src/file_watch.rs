//! AddFileWatch / RemoveFileWatch and FileWatchTriggered (garcon-service.md §5.12,
//! garcon-host.md §11).
//!
//! * Keys are the request path strings as given (`w`, `w/` and `./w` are distinct watches).
//!   Absolute paths and paths with a `..` component are rejected (lexical check only).
//! * Each watch is non-recursive on `$HOME/<path>`: changes to the target itself or to its direct
//!   children fire (attribute change, create, delete, close-after-write, moves); grandchildren do
//!   not. The target's ancestors are watched too, so the target appearing, disappearing or being
//!   renamed fires as well, and a missing target is accepted and fires when it appears.
//! * Notifications are throttled per key, leading edge, window 3 s: the first event sends at once;
//!   an event within 3 s of the last send schedules one send at `last + 3 s`; further events until
//!   then are absorbed. The path sent is the watched path relative to `$HOME` (`""` for `$HOME`).
//! * RemoveFileWatch stops the watch, forgets the last-send time and cancels a scheduled send.
//!
//! One background task owns the inotify instance, the throttles and the timers; sends go through
//! a second task so a slow host never stalls event processing.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::FILE_WATCH_WINDOW;
use crate::host::HostClient;

/// Why a watch request was refused (the text is the rpc's `failure_reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileWatchError {
    #[error("invalid path")]
    InvalidPath,
    #[error("already watching path")]
    AlreadyWatching,
    #[error("not watching path")]
    NotWatching,
    #[error("cannot watch: HOME is not set")]
    NoHome,
}

/// Where notifications go (the host in production, a recorder in tests).
pub trait FileWatchSink: Send + Sync + 'static {
    fn triggered(&self, path: String) -> BoxFuture<'_, ()>;
}

impl FileWatchSink for HostClient {
    fn triggered(&self, path: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(status) = self.file_watch_triggered(path.clone()).await {
                tracing::warn!(
                    path,
                    code = ?status.code(),
                    "FileWatchTriggered failed: {}",
                    status.message()
                );
            }
        })
    }
}

/// Checks a request path and returns the absolute target and the path reported to the host.
pub fn resolve(home: &Path, path: &str) -> Result<(PathBuf, String), FileWatchError> {
    let relative = Path::new(path);
    if relative.is_absolute() {
        return Err(FileWatchError::InvalidPath);
    }
    let mut target = home.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => target.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(FileWatchError::InvalidPath)
            }
        }
    }
    let reported = target
        .strip_prefix(home)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((target, reported))
}

/// What the per-key throttle decides for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleAction {
    SendNow,
    ScheduleAt(Instant),
    Ignore,
}

/// Leading-edge throttle with a fixed window (garcon-host.md §11).
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    last_send: Option<Instant>,
    scheduled: Option<Instant>,
}

impl Throttle {
    /// Registers an event at `now`; on `SendNow` the send is recorded as happening at `now`.
    pub fn on_event(&mut self, now: Instant, window: Duration) -> ThrottleAction {
        if self.scheduled.is_some() {
            return ThrottleAction::Ignore;
        }
        match self.last_send {
            Some(last) if now.saturating_duration_since(last) <= window => {
                let at = last + window;
                self.scheduled = Some(at);
                ThrottleAction::ScheduleAt(at)
            }
            _ => {
                self.last_send = Some(now);
                ThrottleAction::SendNow
            }
        }
    }

    /// The scheduled send happened at `now`.
    pub fn fired(&mut self, now: Instant) {
        self.scheduled = None;
        self.last_send = Some(now);
    }

    pub fn scheduled(&self) -> Option<Instant> {
        self.scheduled
    }
}

enum Command {
    Add {
        key: String,
        target: PathBuf,
        reported: String,
    },
    Remove {
        key: String,
    },
}

/// The file watches of one garcon process.
pub struct FileWatches {
    home: Option<PathBuf>,
    window: Duration,
    sink: Arc<dyn FileWatchSink>,
    keys: Mutex<HashSet<String>>,
    commands: OnceLock<mpsc::UnboundedSender<Command>>,
}

impl FileWatches {
    pub fn new(home: Option<PathBuf>, sink: Arc<dyn FileWatchSink>) -> Self {
        Self::with_window(home, sink, FILE_WATCH_WINDOW)
    }

    pub fn with_window(
        home: Option<PathBuf>,
        sink: Arc<dyn FileWatchSink>,
        window: Duration,
    ) -> Self {
        Self {
            home,
            window,
            sink,
            keys: Mutex::new(HashSet::new()),
            commands: OnceLock::new(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is only inserted into/removed from; a panic cannot leave it half-updated.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// AddFileWatch. Must be called inside a tokio runtime (starts the watcher task lazily).
    pub fn add(&self, path: &str) -> Result<(), FileWatchError> {
        let home = self.home.as_deref().ok_or(FileWatchError::NoHome)?;
        let (target, reported) = resolve(home, path)?;
        if !self.keys().insert(path.to_string()) {
            return Err(FileWatchError::AlreadyWatching);
        }
        self.send(Command::Add {
            key: path.to_string(),
            target,
            reported,
        });
        Ok(())
    }

    /// RemoveFileWatch.
    pub fn remove(&self, path: &str) -> Result<(), FileWatchError> {
        let home = self.home.as_deref().ok_or(FileWatchError::NoHome)?;
        resolve(home, path)?;
        if !self.keys().remove(path) {
            return Err(FileWatchError::NotWatching);
        }
        self.send(Command::Remove {
            key: path.to_string(),
        });
        Ok(())
    }

    fn send(&self, command: Command) {
        let sender = self.commands.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_watcher(rx, self.sink.clone(), self.window));
            tx
        });
        if sender.send(command).is_err() {
            tracing::error!("the file watcher task is gone; watch change ignored");
        }
    }
}

/// One logical watch.
struct Watch {
    target: PathBuf,
    reported: String,
    throttle: Throttle,
    exists: bool,
}

const TARGET_MASK: WatchMask = WatchMask::ATTRIB
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);
const ANCESTOR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// The inotify side: which paths are watched under which descriptor.
struct Installed {
    watches: Watches,
    by_path: HashMap<PathBuf, (WatchDescriptor, WatchMask)>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

impl Installed {
    /// Makes the installed set equal to what `watches` need: each target and its ancestors.
    fn sync(&mut self, logical: &HashMap<String, Watch>) {
        let mut wanted: HashMap<PathBuf, WatchMask> = HashMap::new();
        for watch in logical.values() {
            *wanted
                .entry(watch.target.clone())
                .or_insert(WatchMask::empty()) |= TARGET_MASK;
            for ancestor in watch.target.ancestors().skip(1) {
                let mask = wanted
                    .entry(ancestor.to_path_buf())
                    .or_insert(WatchMask::empty());
                if !mask.contains(TARGET_MASK) {
                    *mask |= ANCESTOR_MASK;
                }
                // Above the first existing ancestor nothing can change the target's existence
                // except renames of existing directories, which that ancestor reports.
                if ancestor.is_dir() {
                    break;
                }
            }
        }
        // A directory that is both a target and an ancestor must not be limited to ONLYDIR
        // semantics of the ancestor mask alone; TARGET_MASK wins (no ONLYDIR: files allowed).
        for mask in wanted.values_mut() {
            if mask.contains(TARGET_MASK) {
                mask.remove(WatchMask::ONLYDIR);
            }
        }
        let stale: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| !wanted.contains_key(*p))
            .cloned()
            .collect();
        for path in stale {
            if let Some((wd, _)) = self.by_path.remove(&path) {
                self.by_wd.remove(&wd);
                // Fails harmlessly when the kernel already dropped it (path deleted).
                let _ = self.watches.remove(wd);
            }
        }
        for (path, mask) in wanted {
            if let Some((_, installed)) = self.by_path.get(&path) {
                if *installed == mask {
                    continue;
                }
            }
            if !path.exists() {
                if let Some((wd, _)) = self.by_path.remove(&path) {
                    self.by_wd.remove(&wd);
                }
                continue;
            }
            match self.watches.add(&path, mask) {
                Ok(wd) => {
                    self.by_wd.insert(wd.clone(), path.clone());
                    self.by_path.insert(path, (wd, mask));
                }
                // Watch limit or permissions: silently unwatched, as upstream.
                Err(error) => {
                    tracing::warn!(path = %path.display(), "inotify watch failed: {error}")
                }
            }
        }
    }
}

async fn run_watcher(
    mut commands: mpsc::UnboundedReceiver<Command>,
    sink: Arc<dyn FileWatchSink>,
    window: Duration,
) {
    // Sends happen in order on their own task so a slow host never stalls event handling.
    let (send_tx, mut send_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(path) = send_rx.recv().await {
            sink.triggered(path).await;
        }
    });

    let setup = Inotify::init().and_then(|inotify| {
        let watches = inotify.watches();
        inotify
            .into_event_stream(vec![0u8; 16 * 1024])
            .map(|stream| (watches, stream))
    });
    let (watches, mut events) = match setup {
        Ok(parts) => (Some(parts.0), Some(parts.1)),
        Err(error) => {
            // Upstream ignores inotify failures: the rpc still succeeds, nothing fires.
            tracing::error!("cannot initialize inotify, file watches will not fire: {error}");
            (None, None)
        }
    };
    let mut installed = watches.map(|watches| Installed {
        watches,
        by_path: HashMap::new(),
        by_wd: HashMap::new(),
    });
    let mut logical: HashMap<String, Watch> = HashMap::new();

    loop {
        let next_timer = logical
            .values()
            .filter_map(|w| w.throttle.scheduled())
            .min();
        let sleep = async {
            match next_timer {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let next_event = async {
            match events.as_mut() {
                Some(stream) => stream.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    Command::Add { key, target, reported } => {
                        let exists = target.exists();
                        logical.insert(key, Watch { target, reported, throttle: Throttle::default(), exists });
                    }
                    Command::Remove { key } => {
                        logical.remove(&key);
                    }
                }
                if let Some(installed) = installed.as_mut() {
                    installed.sync(&logical);
                }
            }
            event = next_event => {
                let Some(installed) = installed.as_mut() else { continue };
                match event {
                    Some(Ok(event)) => {
                        let fired = affected(installed, &mut logical, event.wd, event.mask, event.name);
                        let now = Instant::now();
                        for key in fired {
                            if let Some(watch) = logical.get_mut(&key) {
                                if watch.throttle.on_event(now, window) == ThrottleAction::SendNow {
                                    let _ = send_tx.send(watch.reported.clone());
                                }
                            }
                        }
                    }
                    Some(Err(error)) => {
                        tracing::error!("reading inotify events failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None => {
                        tracing::error!("inotify event stream ended; file watches stop firing");
                        events = None;
                    }
                }
            }
            () = sleep => {
                let now = Instant::now();
                for watch in logical.values_mut() {
                    if watch.throttle.scheduled().is_some_and(|at| at <= now) {
                        watch.throttle.fired(now);
                        let _ = send_tx.send(watch.reported.clone());
                    }
                }
            }
        }
    }
}

/// Which logical watches one inotify event concerns; re-syncs the installed watches when a path
/// component of some target changed.
fn affected(
    installed: &mut Installed,
    logical: &mut HashMap<String, Watch>,
    wd: WatchDescriptor,
    mask: EventMask,
    name: Option<OsString>,
) -> Vec<String> {
    if mask.contains(EventMask::Q_OVERFLOW) {
        // Events were lost: anything may have changed.
        installed.sync(logical);
        for watch in logical.values_mut() {
            watch.exists = watch.target.exists();
        }
        return logical.keys().cloned().collect();
    }
    let Some(dir) = installed.by_wd.get(&wd).cloned() else {
        return Vec::new();
    };
    if mask.contains(EventMask::IGNORED) {
        installed.by_wd.remove(&wd);
        installed.by_path.remove(&dir);
    }
    let changed = match &name {
        Some(name) => dir.join(name),
        None => dir.clone(),
    };
    let structural = mask.intersects(
        EventMask::CREATE
            | EventMask::DELETE
            | EventMask::MOVED_FROM
            | EventMask::MOVED_TO
            | EventMask::DELETE_SELF
            | EventMask::MOVE_SELF
            | EventMask::IGNORED,
    );
    let mut fired = Vec::new();
    let mut resync = false;
    for (key, watch) in logical.iter() {
        if dir == watch.target || changed == watch.target {
            fired.push(key.clone());
            resync |= structural;
        } else if structural && watch.target.starts_with(&changed) {
            // A component on the way to the target changed: it fires only if the target
            // appeared or disappeared because of it (checked after the re-sync below).
            resync = true;
        }
    }
    if resync {
        installed.sync(logical);
    }
    for (key, watch) in logical.iter_mut() {
        let exists = watch.target.exists();
        if exists != watch.exists && !fired.contains(key) {
            fired.push(key.clone());
        }
        watch.exists = exists;
    }
    fired
}

#[cfg(test)]
mod tests;
