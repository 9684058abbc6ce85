//! inotify watcher for the XDG application and MIME directories (garcon-host §4.7, §5).
//!
//! Each [`WatchTarget`] is a directory, watched recursively or not, tagged with a value that
//! is sent on the output channel whenever something changes in it. Directories that do not
//! exist yet are handled by watching their nearest existing ancestor: when the missing path
//! component appears the watch set is re-synchronised and the target's tag is sent, so a
//! directory created after startup (e.g. the first `~/.local/share/applications`) triggers a
//! rebuild. The same re-synchronisation follows directory creation/removal inside recursive
//! targets, a watched directory disappearing, and queue overflow (which also counts as a change
//! for every target).
//!
//! The watcher only reports *that* something changed; debouncing is the consumer's job.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures::{FutureExt, StreamExt};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::mpsc::UnboundedSender;

/// One directory to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTarget<T> {
    /// The directory (need not exist).
    pub path: PathBuf,
    /// Also watch every subdirectory (following symlinks, each inode once).
    pub recursive: bool,
    /// Sent on the channel when something changes under `path`.
    pub tag: T,
}

/// The watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `inotify_init` or registering the fd with tokio failed.
    #[error("creating inotify instance: {0}")]
    Init(#[source] std::io::Error),
}

/// Keeps the watcher task alive; dropping it stops the watcher.
#[derive(Debug)]
pub struct WatcherHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Events we want on directories holding content.
const CONTENT_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Events we want on the nearest existing ancestor of a missing target.
const ANCESTOR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);

/// Starts watching `targets`; each change sends the affected targets' tags on `changes`
/// (at most once per tag per batch of kernel events). The watch set is established before this
/// returns, so a change made after it returns is reported. Must run inside a tokio runtime.
pub fn spawn_watcher<T>(
    targets: Vec<WatchTarget<T>>,
    changes: UnboundedSender<T>,
) -> Result<WatcherHandle, WatchError>
where
    T: Clone + PartialEq + Send + 'static,
{
    let inotify = Inotify::init().map_err(WatchError::Init)?;
    let mut stream = inotify
        .into_event_stream(vec![0u8; 64 * 1024])
        .map_err(WatchError::Init)?;
    let mut state = WatchState {
        watches: stream.watches(),
        targets,
        by_wd: HashMap::new(),
        present: Vec::new(),
    };
    state.present = vec![false; state.targets.len()];
    // Initial sync: nothing is "newly present" at startup, so its result is not reported.
    state.sync();
    let task = tokio::spawn(async move {
        while let Some(first) = stream.next().await {
            let mut batch = vec![first];
            // Drain whatever else is already buffered, to report once per batch.
            while let Some(Some(more)) = stream.next().now_or_never() {
                batch.push(more);
            }
            let mut changed: Vec<T> = Vec::new();
            let mut resync = false;
            for event in batch {
                match event {
                    Ok(event) => state.handle(&event, &mut changed, &mut resync),
                    Err(err) => {
                        tracing::warn!("reading inotify events: {err}");
                        changed.extend(state.targets.iter().map(|t| t.tag.clone()));
                        resync = true;
                    }
                }
            }
            if resync {
                for i in state.sync() {
                    changed.push(state.targets[i].tag.clone());
                }
            }
            let mut sent: Vec<T> = Vec::new();
            for tag in changed {
                if sent.contains(&tag) {
                    continue;
                }
                if changes.send(tag.clone()).is_err() {
                    return;
                }
                sent.push(tag);
            }
        }
        tracing::warn!("inotify event stream ended; directory watching stopped");
    });
    Ok(WatcherHandle { task })
}

/// How a watched directory relates to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// The target itself or (recursive) one of its subdirectories.
    Content,
    /// Nearest existing ancestor of a missing target; `next` is the missing child's name.
    Ancestor { next: OsString },
}

#[derive(Debug, Clone)]
struct Watched {
    target: usize,
    role: Role,
}

struct WatchState<T> {
    watches: Watches,
    targets: Vec<WatchTarget<T>>,
    by_wd: HashMap<WatchDescriptor, Vec<Watched>>,
    /// Whether each target directory existed at the last sync.
    present: Vec<bool>,
}

impl<T: Clone> WatchState<T> {
    /// Handles one event: records changed tags and whether the watch set must be re-synced.
    fn handle(&self, event: &inotify::Event<OsString>, changed: &mut Vec<T>, resync: &mut bool) {
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            tracing::warn!("inotify queue overflow: treating every directory as changed");
            changed.extend(self.targets.iter().map(|t| t.tag.clone()));
            *resync = true;
            return;
        }
        let Some(entries) = self.by_wd.get(&event.wd) else {
            return;
        };
        let gone = event
            .mask
            .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED);
        let structural = event.mask.contains(EventMask::ISDIR)
            && event.mask.intersects(
                EventMask::CREATE | EventMask::DELETE | EventMask::MOVED_FROM | EventMask::MOVED_TO,
            );
        for watched in entries {
            let target = &self.targets[watched.target];
            match &watched.role {
                Role::Content => {
                    changed.push(target.tag.clone());
                    if gone || (structural && target.recursive) {
                        *resync = true;
                    }
                }
                Role::Ancestor { next } => {
                    if gone || event.name.as_deref() == Some(next.as_os_str()) {
                        *resync = true;
                    }
                }
            }
        }
    }

    /// Re-computes the directories to watch, adds missing watches, drops stale ones, and
    /// repeats until stable (directories may appear while we add watches). Returns the targets
    /// that now exist but did not at the previous sync.
    fn sync(&mut self) -> Vec<usize> {
        let before = self.present.clone();
        let mut wanted = self.wanted();
        for _ in 0..8 {
            self.apply(&wanted);
            let again = self.wanted();
            if again == wanted {
                break;
            }
            wanted = again;
        }
        self.present = self
            .targets
            .iter()
            .map(|t| std::fs::metadata(&t.path).is_ok_and(|m| m.is_dir()))
            .collect();
        (0..self.targets.len())
            .filter(|&i| self.present[i] && !before[i])
            .collect()
    }

    /// The desired watch set: directory -> roles.
    fn wanted(&self) -> Vec<(PathBuf, Vec<Watched>)> {
        let mut wanted: Vec<(PathBuf, Vec<Watched>)> = Vec::new();
        let mut add =
            |path: PathBuf, watched: Watched| match wanted.iter_mut().find(|(p, _)| *p == path) {
                Some((_, roles)) => roles.push(watched),
                None => wanted.push((path, vec![watched])),
            };
        for (i, target) in self.targets.iter().enumerate() {
            if std::fs::metadata(&target.path).is_ok_and(|m| m.is_dir()) {
                let dirs = if target.recursive {
                    subdirectories(&target.path)
                } else {
                    vec![target.path.clone()]
                };
                for dir in dirs {
                    add(
                        dir,
                        Watched {
                            target: i,
                            role: Role::Content,
                        },
                    );
                }
            } else if let Some((ancestor, next)) = nearest_existing_ancestor(&target.path) {
                add(
                    ancestor,
                    Watched {
                        target: i,
                        role: Role::Ancestor { next },
                    },
                );
            }
        }
        wanted
    }

    fn apply(&mut self, wanted: &[(PathBuf, Vec<Watched>)]) {
        let mut by_wd: HashMap<WatchDescriptor, Vec<Watched>> = HashMap::new();
        for (path, roles) in wanted {
            let mask = if roles.iter().any(|w| w.role == Role::Content) {
                CONTENT_MASK
            } else {
                ANCESTOR_MASK
            };
            match self.watches.add(path, mask) {
                Ok(wd) => by_wd.entry(wd).or_default().extend(roles.iter().cloned()),
                Err(err) => {
                    tracing::warn!(dir = %path.display(), "cannot watch directory: {err}");
                }
            }
        }
        for stale in self.by_wd.keys().filter(|wd| !by_wd.contains_key(wd)) {
            // The kernel may already have dropped it (directory deleted): ignore errors.
            let _ = self.watches.remove(stale.clone());
        }
        self.by_wd = by_wd;
    }
}

impl PartialEq for Watched {
    fn eq(&self, other: &Self) -> bool {
        self.target == other.target && self.role == other.role
    }
}

/// `dir` and every directory below it (following symlinks; each inode once).
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(meta) = std::fs::metadata(&d) else {
            continue;
        };
        if !meta.is_dir() || !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        if let Ok(reader) = std::fs::read_dir(&d) {
            // Only directories and symlinks (which may point at directories) are candidates.
            pending.extend(
                reader
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() || t.is_symlink()))
                    .map(|e| e.path()),
            );
        }
        out.push(d);
    }
    out
}

/// The deepest existing directory above `path`, and the name of its child on the way to `path`.
fn nearest_existing_ancestor(path: &Path) -> Option<(PathBuf, OsString)> {
    let mut child = path;
    while let Some(parent) = child.parent() {
        let parent_ok = if parent.as_os_str().is_empty() {
            None
        } else {
            Some(parent)
        };
        if let Some(parent) = parent_ok {
            if std::fs::metadata(parent).is_ok_and(|m| m.is_dir()) {
                return Some((parent.to_path_buf(), child.file_name()?.to_owned()));
            }
        }
        child = parent;
    }
    None
}

#[cfg(test)]
mod tests;
