//! ExportContainer / CancelExportContainer (§8.9): snapshot `rootfs-backup`, stream it as a
//! unified image tarball (tar → gzip) into the shared directory with `EXPORTING_STREAMING`
//! reports, then `DONE`, `CANCELLED` or `FAILED`.
//!
//! Differences from upstream:
//! - The tarball is written under a temporary name in the target's directory and renamed onto
//!   `export_path` only on `DONE`. After `CANCELLED` or `FAILED` the temporary file is removed,
//!   so no file (empty or partial) is left at `export_path`, and a file that was already there
//!   is left untouched (upstream truncates the output to 0 bytes and leaves it for the host).
//! - Instead of a writable btrfs copy of the snapshot that is unshifted on disk, ids are
//!   unshifted in the tar headers while reading the snapshot directly
//!   (`$LXD_DIR/snapshots/<name>/rootfs-backup`). This works with any storage driver and
//!   leaves nothing to clean up.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crostini_lxd::Client;
use crostini_proto::vm_tools::tremplin as pb;
use pb::container_export_progress::Status as Progress;
use pb::export_container_response::Status;

use super::start::IdmapEntry;
use super::wait_op;
use crate::archive::{self, Flow, Outcome, Unshift};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::transactions::{release_then_report, Transaction};

/// Snapshot used by the export (§1.1).
pub const EXPORT_SNAPSHOT: &str = "rootfs-backup";
const REPORT_EVERY: Duration = Duration::from_secs(1);

fn reply(status: Status, reason: impl Into<String>) -> pb::ExportContainerResponse {
    pb::ExportContainerResponse {
        status: status as i32,
        failure_reason: reason.into(),
    }
}

/// Builds the unshift map from `volatile.last_state.idmap` text.
pub fn unshift_from_idmap(text: &str) -> Result<Unshift, String> {
    let entries: Vec<IdmapEntry> = serde_json::from_str::<Option<Vec<IdmapEntry>>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("bad volatile.last_state.idmap: {e}"))?;
    let mut u = Unshift::default();
    for e in entries {
        let (Ok(host), Ok(ns), Ok(range)) = (
            u64::try_from(e.hostid),
            u64::try_from(e.nsid),
            u64::try_from(e.maprange),
        ) else {
            continue;
        };
        if e.isuid {
            u.uids.push((host, ns, range));
        }
        if e.isgid {
            u.gids.push((host, ns, range));
        }
    }
    Ok(u)
}

impl Daemon {
    pub async fn export_container(
        self: &Arc<Self>,
        request: pb::ExportContainerRequest,
    ) -> pb::ExportContainerResponse {
        let Some(client) = self.lxd() else {
            return reply(Status::Failed, LXD_NOT_RUNNING);
        };
        let name = request.container_name;
        let Some(tx) = self.transactions.begin(&name) else {
            return reply(
                Status::Failed,
                format!("an export or import of {name:?} is already in progress"),
            );
        };
        let daemon = self.clone();
        tokio::spawn(async move {
            let last = daemon
                .run_export(&client, &name, &request.export_path, &tx)
                .await;
            // Free the slot first: the host may start the next operation on the final status.
            let report = daemon.listener.update_export_status(last);
            let _ = release_then_report(|| tx.finish(), report).await;
        });
        reply(Status::Exporting, "")
    }

    pub async fn cancel_export_container(
        &self,
        request: pb::CancelExportContainerRequest,
    ) -> pb::CancelExportContainerResponse {
        use pb::cancel_export_container_response::Status as S;
        let status = if self
            .transactions
            .cancel(&request.in_progress_container_name)
        {
            S::CancelQueued
        } else {
            S::OperationNotFound
        };
        pb::CancelExportContainerResponse {
            status: status as i32,
        }
    }

    /// Background export; returns the final report.
    async fn run_export(
        self: &Arc<Self>,
        client: &Client,
        name: &str,
        export_path: &str,
        tx: &Transaction,
    ) -> pb::ContainerExportProgress {
        let failed = |reason: String| {
            tracing::warn!("export of {name} failed: {reason}");
            pb::ContainerExportProgress {
                container_name: name.to_string(),
                status: Progress::Failed as i32,
                failure_reason: reason,
                ..Default::default()
            }
        };
        let out_path = match archive::shared_path(&self.config.paths.shared_dir, export_path) {
            Ok(p) => p,
            Err(e) => return failed(format!("invalid export path: {e}")),
        };
        if let Err(e) = self.make_export_snapshot(client, name).await {
            return failed(e);
        }
        let result = self.export_snapshot(client, name, &out_path, tx).await;
        match client.delete_snapshot(name, EXPORT_SNAPSHOT).await {
            Ok(op) => {
                if let Err(e) = wait_op(client, &op).await {
                    tracing::warn!("deleting snapshot {name}/{EXPORT_SNAPSHOT}: {e}");
                }
            }
            Err(e) => tracing::warn!("deleting snapshot {name}/{EXPORT_SNAPSHOT}: {e}"),
        }
        // The temporary output was already removed by `ExportFile`'s drop on every path but DONE.
        result.unwrap_or_else(failed)
    }

    async fn make_export_snapshot(&self, client: &Client, name: &str) -> Result<(), String> {
        let existing = client
            .snapshot_names(name)
            .await
            .map_err(|e| format!("failed to list snapshots: {e}"))?;
        if existing.iter().any(|s| s == EXPORT_SNAPSHOT) {
            let op = client
                .delete_snapshot(name, EXPORT_SNAPSHOT)
                .await
                .map_err(|e| format!("failed to delete old snapshot: {e}"))?;
            wait_op(client, &op)
                .await
                .map_err(|e| format!("failed to delete old snapshot: {e}"))?;
        }
        let op = client
            .create_snapshot(name, EXPORT_SNAPSHOT)
            .await
            .map_err(|e| format!("failed to create snapshot: {e}"))?;
        wait_op(client, &op)
            .await
            .map_err(|e| format!("failed to create snapshot: {e}"))?;
        Ok(())
    }

    /// Streams the snapshot into `out_path`; `Ok` is the final `DONE`/`CANCELLED` report.
    async fn export_snapshot(
        self: &Arc<Self>,
        client: &Client,
        name: &str,
        out_path: &Path,
        tx: &Transaction,
    ) -> Result<pb::ContainerExportProgress, String> {
        let snapshot = client
            .snapshot(name, EXPORT_SNAPSHOT)
            .await
            .map_err(|e| format!("failed to read snapshot: {e}"))?;
        let last_idmap = snapshot
            .expanded_config
            .get("volatile.last_state.idmap")
            .ok_or("snapshot has no volatile.last_state.idmap")?;
        if !snapshot.expanded_config.contains_key("volatile.idmap.next") {
            return Err("snapshot has no volatile.idmap.next".to_string());
        }
        let idmap = unshift_from_idmap(last_idmap)?;
        let root: PathBuf = self
            .config
            .paths
            .lxd_dir
            .join("snapshots")
            .join(name)
            .join(EXPORT_SNAPSHOT);
        let owner = std::fs::metadata(root.join("rootfs"))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .map_err(|e| format!("cannot read snapshot at {}: {e}", root.display()))?;
        let unshift = if owner == 0 {
            Unshift::default()
        } else if crate::container_fs::IDENTITY_IDS.contains(&owner) {
            return Err(format!(
                "incorrect owner of container {name} root directory: {owner}"
            ));
        } else {
            idmap
        };
        let daemon = self.clone();
        let name_owned = name.to_string();
        let out_path = out_path.to_path_buf();
        let cancel = tx.cancel.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let (paths, totals) = archive::totals(&root)
                .map_err(|e| format!("failed to scan {}: {e}", root.display()))?;
            let (output, file) = ExportFile::create(&out_path).map_err(|e| {
                format!(
                    "failed to create export file as {}: {e}",
                    out_path.display()
                )
            })?;
            let written = file
                .try_clone()
                .map_err(|e| format!("failed to export {}: {e}", out_path.display()))?;
            let mut last_report: Option<Instant> = None;
            let mut cancelled = false;
            let report = |status: Progress, s: &archive::Streamed| pb::ContainerExportProgress {
                container_name: name_owned.clone(),
                status: status as i32,
                total_input_files: totals.files,
                total_input_bytes: totals.bytes,
                input_files_streamed: s.files,
                input_bytes_streamed: s.bytes,
                bytes_exported: s.exported,
                ..Default::default()
            };
            let outcome = archive::write_image(&root, &paths, &unshift, file, |s| {
                if last_report.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
                    return Ok(Flow::Continue);
                }
                last_report = Some(Instant::now());
                if cancel.is_cancelled() {
                    cancelled = true;
                    return Ok(Flow::Stop);
                }
                handle
                    .block_on(
                        daemon
                            .listener
                            .update_export_status(report(Progress::ExportingStreaming, s)),
                    )
                    .map_err(|e| std::io::Error::other(format!("progress report failed: {e}")))?;
                Ok(Flow::Continue)
            })
            .map_err(|e| format!("failed to export {}: {e}", out_path.display()))?;
            match outcome {
                Outcome::Done(s) => {
                    written
                        .sync_all()
                        .and_then(|()| output.commit())
                        .map_err(|e| format!("failed to export {}: {e}", out_path.display()))?;
                    tracing::info!(
                        "exported {name_owned} to {} ({} bytes)",
                        out_path.display(),
                        s.exported
                    );
                    Ok(report(Progress::Done, &s))
                }
                Outcome::Stopped(mut s) => {
                    debug_assert!(cancelled);
                    drop(output);
                    s.exported = 0;
                    Ok(report(Progress::Cancelled, &s))
                }
            }
        })
        .await
        .map_err(|e| format!("export task failed: {e}"))?
    }
}

/// The export output file: data goes to a temporary file next to `target` (same directory, so
/// the final rename is atomic) that becomes `target` only through [`ExportFile::commit`].
/// Dropping an uncommitted `ExportFile` removes the temporary file, leaving the directory as it
/// was before the export — no partial file, and an existing file at `target` is never touched.
#[derive(Debug)]
struct ExportFile {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

/// Distinguishes temporary names of concurrent exports within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ExportFile {
    /// Creates the temporary file for `target`. Fails when `target` is a directory or its
    /// parent directory does not exist. When `target` already exists, the temporary file gets
    /// its permissions and (best effort) its owner, so a successful export replaces it alike.
    fn create(target: &Path) -> std::io::Result<(ExportFile, File)> {
        use std::io::{Error, ErrorKind};
        let existing = match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                return Err(Error::new(ErrorKind::IsADirectory, "it is a directory"));
            }
            Ok(m) if m.is_file() => Some(m),
            Ok(_) => None,
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(Error::new(ErrorKind::InvalidInput, "not a file path"));
        };
        let name = name.to_string_lossy();
        let mut attempt = 0;
        let (temp, file) = loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!(
                ".{name}.{}-{n}.tremplin-export",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
            {
                Ok(f) => break (temp, f),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let output = ExportFile {
            target: target.to_path_buf(),
            temp,
            committed: false,
        };
        if let Some(m) = existing {
            file.set_permissions(m.permissions())?;
            let (uid, gid) = (
                std::os::unix::fs::MetadataExt::uid(&m),
                std::os::unix::fs::MetadataExt::gid(&m),
            );
            if let Err(e) = std::os::unix::fs::fchown(&file, Some(uid), Some(gid)) {
                tracing::debug!(
                    "cannot give {} owner {uid}:{gid}: {e}",
                    output.temp.display()
                );
            }
        }
        Ok((output, file))
    }

    /// Moves the finished file onto the target (replacing an existing file).
    fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for ExportFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        match std::fs::remove_file(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove the unfinished export {}: {e}",
                self.temp.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn export_file_appears_only_on_commit() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.tar.gz");
        let (output, mut file) = ExportFile::create(&target).expect("create");
        file.write_all(b"data").expect("write");
        assert!(!target.exists(), "nothing at the target while writing");
        assert_eq!(names(dir.path()).len(), 1, "one temporary file");
        output.commit().expect("commit");
        assert_eq!(std::fs::read(&target).expect("read"), b"data");
        assert_eq!(names(dir.path()), vec!["out.tar.gz"], "temporary file gone");
    }

    #[test]
    fn discarded_export_leaves_no_file() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out.tar.gz");
        let (output, mut file) = ExportFile::create(&target).expect("create");
        file.write_all(b"partial").expect("write");
        drop(output);
        assert!(!target.exists());
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    #[test]
    fn existing_file_is_kept_on_discard_and_replaced_on_commit() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("mine.tar.gz");
        std::fs::write(&target, b"user data").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let (output, mut file) = ExportFile::create(&target).expect("create");
        file.write_all(b"partial").expect("write");
        drop(output);
        assert_eq!(std::fs::read(&target).expect("read"), b"user data");
        assert_eq!(names(dir.path()), vec!["mine.tar.gz"]);

        let (output, mut file) = ExportFile::create(&target).expect("create");
        file.write_all(b"new export").expect("write");
        output.commit().expect("commit");
        assert_eq!(std::fs::read(&target).expect("read"), b"new export");
        let mode = std::fs::metadata(&target)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "permissions of the replaced file kept");
        assert_eq!(names(dir.path()), vec!["mine.tar.gz"]);
    }

    #[test]
    fn export_file_rejects_directories_and_missing_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let err = ExportFile::create(&dir.path().join("sub")).expect_err("directory");
        assert_eq!(err.kind(), std::io::ErrorKind::IsADirectory);
        let err = ExportFile::create(&dir.path().join("missing/out.tar.gz")).expect_err("parent");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(names(dir.path()), vec!["sub"]);
        assert!(names(&dir.path().join("sub")).is_empty());
    }

    #[test]
    fn unshift_map_from_lxd_idmap() {
        let text = r#"[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":1000},{"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":1000,"Maprange":1},{"Isuid":false,"Isgid":true,"Hostid":1000000,"Nsid":0,"Maprange":1000}]"#;
        let u = unshift_from_idmap(text).expect("parses");
        assert_eq!(u.uid(1_000_007), 7);
        assert_eq!(u.gid(1_000_007), 7);
        assert_eq!(u.uid(1000), 1000);
        assert_eq!(unshift_from_idmap("[]").expect("empty"), Unshift::default());
        assert!(unshift_from_idmap("nope").is_err());
    }
}
