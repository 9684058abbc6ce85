//! A directory where `crostini-host serve` keeps what it received, so that one-shot commands run
//! later (by a person or a script) can show the app list and follow progress reports.
//!
//! Layout: `events.jsonl` (every call, one JSON line each, appended), `apps/<container>.json`
//! (the latest UpdateApplicationList), `mime/<container>.json` (the latest UpdateMimeTypes),
//! `status.json` (every VM and container with its state, address and username, rewritten when
//! one changes), `tokens/` and `tremplin_address` (recorded by a one-shot `tremplin start`).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::events::{Event, Payload, WaitTimeout};

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot use state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateDirError + '_ {
    move |source| StateDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Container names become file names; anything that could escape the directory is replaced.
fn file_name(container: &str) -> String {
    let safe: String = container
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.json", safe.trim_start_matches('.'))
}

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<StateDir, StateDirError> {
        let root = root.into();
        for sub in ["apps", "mime", "tokens"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(StateDir { root })
    }

    pub fn events_path(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    pub fn app_list_path(&self, container: &str) -> PathBuf {
        self.root.join("apps").join(file_name(container))
    }

    pub fn mime_types_path(&self, container: &str) -> PathBuf {
        self.root.join("mime").join(file_name(container))
    }

    /// Records that `token` was handed to `container` (by a one-shot `tremplin start`), so that
    /// the `serve` process accepts that container's ContainerReady.
    pub fn add_token(&self, token: &str, container: &str) -> Result<(), StateDirError> {
        let path = self.root.join("tokens").join(file_name(token));
        std::fs::write(&path, container).map_err(io_err(&path))
    }

    /// The container a token was handed to, if a one-shot command recorded it.
    pub fn container_for_token(&self, token: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join("tokens").join(file_name(token))).ok()
    }

    /// Records where tremplin serves (by a one-shot `tremplin start`), so that `serve` can ask it
    /// whether a container runs when its garcon reports.
    pub fn set_tremplin_address(
        &self,
        address: &crostini_common::Address,
    ) -> Result<(), StateDirError> {
        let path = self.root.join("tremplin_address");
        std::fs::write(&path, address.to_string()).map_err(io_err(&path))
    }

    pub fn tremplin_address(&self) -> Option<crostini_common::Address> {
        std::fs::read_to_string(self.root.join("tremplin_address"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// Replaces `status.json` with `vms`.
    pub fn write_status(&self, vms: &[crate::registry::VmStatus]) -> Result<(), StateDirError> {
        self.write_json(&self.status_path(), &vms)
    }

    /// When the latest app list of `container` was recorded, in seconds since the epoch.
    pub fn app_list_time(&self, container: &str) -> Option<u64> {
        let modified = std::fs::metadata(self.app_list_path(container))
            .ok()?
            .modified()
            .ok()?;
        Some(
            modified
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs(),
        )
    }

    /// Appends the event and refreshes the per-container snapshots it updates.
    pub fn record(&self, event: &Event) -> Result<(), StateDirError> {
        let path = self.events_path();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // One write per line so that a follower never sees half a line followed by another line.
        let mut line = event.to_json_line();
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io_err(&path))?;
        let (Some(container), true) = (&event.container, event.is_ok()) else {
            return Ok(());
        };
        match &event.payload {
            Payload::UpdateApplicationList(list) => {
                self.write_json(&self.app_list_path(container), list)
            }
            Payload::UpdateMimeTypes(mime) => {
                self.write_json(&self.mime_types_path(container), mime)
            }
            _ => Ok(()),
        }
    }

    fn write_json<T: serde::Serialize>(&self, path: &Path, value: &T) -> Result<(), StateDirError> {
        let tmp = path.with_extension("json.partial");
        let text = serde_json::to_vec_pretty(value).map_err(|source| StateDirError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }

    /// The latest snapshot at `path`, if any was recorded.
    pub fn read_json(&self, path: &Path) -> Result<Option<Value>, StateDirError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StateDirError::Json {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Follows `events.jsonl` from its current end.
    pub fn follow(&self) -> EventFollower {
        let path = self.events_path();
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        EventFollower {
            path,
            offset,
            pending: String::new(),
        }
    }
}

/// Reads events appended to `events.jsonl` after a point.
pub struct EventFollower {
    path: PathBuf,
    offset: u64,
    pending: String,
}

impl EventFollower {
    fn read_new_lines(&mut self) -> Vec<Value> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut text = String::new();
        let Ok(n) = file.read_to_string(&mut text) else {
            return Vec::new();
        };
        self.offset += n as u64;
        self.pending.push_str(&text);
        let mut values = Vec::new();
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            if let Ok(v) = serde_json::from_str(line.trim_end()) {
                values.push(v);
            }
        }
        values
    }

    /// The next appended event that matches, polling the file until `timeout`.
    pub async fn next_matching(
        &mut self,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut queued: std::collections::VecDeque<Value> = Default::default();
        loop {
            while let Some(v) = queued.pop_front() {
                if matches(&v) {
                    // Unread events go back to the head of the file position: re-reading is
                    // avoided by keeping them for the next call.
                    self.pending =
                        queued.iter().map(|q| format!("{q}\n")).collect::<String>() + &self.pending;
                    return Ok(v);
                }
            }
            queued.extend(self.read_new_lines());
            if queued.is_empty() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(WaitTimeout(timeout));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_cannot_escape_the_directory() {
        assert_eq!(file_name("penguin"), "penguin.json");
        assert_eq!(file_name("../../etc/x"), "_.._etc_x.json");
    }

    #[tokio::test]
    async fn follower_sees_only_lines_appended_after_it_started_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        std::fs::write(state.events_path(), "{\"seq\":0}\n").expect("write");
        let mut follower = state.follow();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(state.events_path())
            .expect("open");
        f.write_all(b"{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3")
            .expect("append");
        let first = follower
            .next_matching(|_| true, Duration::from_secs(2))
            .await
            .expect("one");
        assert_eq!(first["seq"], 1);
        let third = follower
            .next_matching(|v| v["seq"] == 2, Duration::from_secs(2))
            .await
            .expect("two");
        assert_eq!(third["seq"], 2);
        // The half-written line only counts once finished.
        assert!(follower
            .next_matching(|_| true, Duration::from_millis(300))
            .await
            .is_err());
        f.write_all(b"}\n").expect("finish line");
        let last = follower
            .next_matching(|_| true, Duration::from_secs(2))
            .await
            .expect("three");
        assert_eq!(last["seq"], 3);
    }
}
