//! ExportContainer / CancelExportContainer (§8.9): snapshot `rootfs-backup`, stream it as a
//! unified image tarball (tar → gzip) into the shared directory with `EXPORTING_STREAMING`
//! reports, then `DONE`, `CANCELLED` (file truncated to 0) or `FAILED`.
//!
//! Difference from upstream: instead of a writable btrfs copy of the snapshot that is unshifted
//! on disk, ids are unshifted in the tar headers while reading the snapshot directly
//! (`$LXD_DIR/snapshots/<name>/rootfs-backup`). This works with any storage driver and leaves
//! nothing to clean up.

use std::path::{Path, PathBuf};
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
use crate::transactions::Transaction;

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
            let _ = daemon.listener.update_export_status(last).await;
            tx.finish();
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
        match result {
            Ok(report) => report,
            Err(reason) => {
                truncate(&out_path);
                failed(reason)
            }
        }
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
            let file = std::fs::File::create(&out_path).map_err(|e| {
                format!(
                    "failed to create export file as {}: {e}",
                    out_path.display()
                )
            })?;
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
                    tracing::info!(
                        "exported {name_owned} to {} ({} bytes)",
                        out_path.display(),
                        s.exported
                    );
                    Ok(report(Progress::Done, &s))
                }
                Outcome::Stopped(mut s) => {
                    debug_assert!(cancelled);
                    truncate(&out_path);
                    s.exported = 0;
                    Ok(report(Progress::Cancelled, &s))
                }
            }
        })
        .await
        .map_err(|e| format!("export task failed: {e}"))?
    }
}

/// Empties the output (it cannot be deleted from inside the VM; the host deletes it).
fn truncate(path: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
