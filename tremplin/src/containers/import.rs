//! ImportContainer / CancelImportContainer (§8.10): checks, image upload with
//! `IMPORTING_UPLOAD` reports, `rootfs-import` creation with `IMPORTING_UNPACK` reports, swap
//! into place, image deletion; one final report.

use std::path::Path;
use std::sync::Arc;

use crostini_lxd::progress::parse_progress_object;
use crostini_lxd::types::{InstanceSource, InstancesPost};
use crostini_lxd::{Client, ImageUpload, OperationState};
use crostini_proto::vm_tools::tremplin as pb;
use pb::container_import_progress::Status as Progress;
use pb::import_container_response::Status;

use super::{subscribe_operations, wait_op, CREATE_TIMEOUT, OP_TIMEOUT};
use crate::archive;
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::transactions::{release_then_report, Transaction};

/// Temporary instance of an import (§1.1).
pub const IMPORT_NAME: &str = "rootfs-import";

fn reply(status: Status, reason: impl Into<String>) -> pb::ImportContainerResponse {
    pb::ImportContainerResponse {
        status: status as i32,
        failure_reason: reason.into(),
    }
}

/// Free bytes for unprivileged use on the file system holding `path`.
pub fn free_space(path: &Path) -> Result<u64, String> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statfs {}: {e}", path.display()))?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

impl Daemon {
    pub async fn import_container(
        self: &Arc<Self>,
        request: pb::ImportContainerRequest,
    ) -> pb::ImportContainerResponse {
        let Some(client) = self.lxd() else {
            return reply(Status::Failed, LXD_NOT_RUNNING);
        };
        let name = request.container_name;
        if let Err(e) = super::check_container_name(&name) {
            return reply(Status::Failed, e);
        }
        let Some(tx) = self.transactions.begin(&name) else {
            return reply(
                Status::Failed,
                format!("an export or import of {name:?} is already in progress"),
            );
        };
        let daemon = self.clone();
        tokio::spawn(async move {
            let last = daemon
                .run_import(&client, &name, &request.import_path, &tx)
                .await;
            // Free the slot first: the host may start the next operation on the final status.
            let report = daemon.listener.update_import_status(last);
            let _ = release_then_report(|| tx.finish(), report).await;
        });
        reply(Status::Importing, "")
    }

    pub async fn cancel_import_container(
        &self,
        request: pb::CancelImportContainerRequest,
    ) -> pb::CancelImportContainerResponse {
        use pb::cancel_import_container_response::Status as S;
        let status = if self
            .transactions
            .cancel(&request.in_progress_container_name)
        {
            S::CancelQueued
        } else {
            S::OperationNotFound
        };
        pb::CancelImportContainerResponse {
            status: status as i32,
        }
    }

    async fn run_import(
        self: &Arc<Self>,
        client: &Client,
        name: &str,
        import_path: &str,
        tx: &Transaction,
    ) -> pb::ContainerImportProgress {
        let progress = |status: Progress| pb::ContainerImportProgress {
            container_name: name.to_string(),
            status: status as i32,
            ..Default::default()
        };
        let failed = |reason: String| {
            tracing::warn!("import of {name} failed: {reason}");
            pb::ContainerImportProgress {
                failure_reason: reason,
                ..progress(Progress::Failed)
            }
        };
        let path = match archive::shared_path(&self.config.paths.shared_dir, import_path) {
            Ok(p) => p,
            Err(e) => return failed(format!("invalid import path: {e}")),
        };
        if let Err(e) = std::fs::File::open(&path) {
            return failed(format!("failed to open {}: {e}", path.display()));
        }
        // Architecture (§8.10 step 2).
        let arch_path = path.clone();
        let image_arch =
            tokio::task::spawn_blocking(move || archive::image_architecture(&arch_path))
                .await
                .ok()
                .flatten();
        let local = std::env::consts::ARCH;
        match &image_arch {
            Some(arch) if !archive::accepted_architectures(local).contains(&arch.as_str()) => {
                return pb::ContainerImportProgress {
                    architecture_device: local.to_string(),
                    architecture_container: arch.clone(),
                    failure_reason: format!("image architecture {arch} cannot run on {local}"),
                    ..progress(Progress::FailedArchitecture)
                };
            }
            Some(_) => {}
            None => tracing::info!(
                "{}: no metadata.yaml first; skipping the architecture check",
                path.display()
            ),
        }
        // Space (§8.10 step 3).
        let (compressed, isize) = match archive::gzip_isize(&path) {
            Ok(v) => v,
            Err(e) => return failed(format!("failed to read {}: {e}", path.display())),
        };
        match free_space(&self.config.paths.stateful_dir) {
            Ok(available) => {
                let required = archive::required_space(compressed, isize);
                if required > available {
                    return pb::ContainerImportProgress {
                        disk_space_available_bytes: available,
                        disk_space_required_bytes: required,
                        failure_reason: format!(
                            "not enough space: {required} bytes required, {available} available"
                        ),
                        ..progress(Progress::FailedSpace)
                    };
                }
            }
            Err(e) => tracing::warn!("skipping the free space check: {e}"),
        }
        // Upload (§8.10 step 4) with IMPORTING_UPLOAD reports whenever the percentage changes.
        let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let forwarder = {
            let daemon = self.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                while let Some(percent) = prx.recv().await {
                    let _ = daemon
                        .listener
                        .update_import_status(pb::ContainerImportProgress {
                            container_name: name.clone(),
                            status: Progress::ImportingUpload as i32,
                            progress_percent: percent,
                            progress_speed: 0,
                            ..Default::default()
                        })
                        .await;
                }
            })
        };
        let mut last_percent: Option<u32> = None;
        let upload = client
            .upload_image(
                &path,
                &ImageUpload::default(),
                move |t| {
                    if let Some(p) = t.percent() {
                        if last_percent != Some(p) {
                            last_percent = Some(p);
                            let _ = ptx.send(p);
                        }
                    }
                },
                &tx.cancel,
            )
            .await;
        let _ = forwarder.await;
        let op = match upload {
            Ok(op) => op,
            Err(e) if e.is_cancelled() => return progress(Progress::Cancelled),
            Err(e) => return failed(format!("failed to upload image: {e}")),
        };
        // Step 5: fingerprint; the image is deleted when the import ends.
        let done = client.wait_final(&op.id, OP_TIMEOUT).await;
        let fingerprint = match &done {
            Ok(op) => op
                .metadata_str("fingerprint")
                .filter(|f| !f.is_empty())
                .map(str::to_string),
            Err(_) => None,
        };
        let Some(fingerprint) = fingerprint else {
            let why = match done {
                Ok(op) => op.err,
                Err(e) => e.to_string(),
            };
            return failed(format!("error waiting to create image: {why}"));
        };
        let mut result = self.import_from_image(client, name, &fingerprint, tx).await;
        let deleted = async {
            let op = client.delete_image(&fingerprint).await?;
            wait_op(client, &op).await
        }
        .await;
        if let Err(e) = deleted {
            if result.status == Progress::Done as i32 {
                result = failed(format!("failed to delete image {fingerprint}: {e}"));
            } else {
                tracing::warn!("failed to delete image {fingerprint}: {e}");
            }
        }
        result
    }

    /// Steps 6–12.
    async fn import_from_image(
        self: &Arc<Self>,
        client: &Client,
        name: &str,
        fingerprint: &str,
        tx: &Transaction,
    ) -> pb::ContainerImportProgress {
        let progress = |status: Progress| pb::ContainerImportProgress {
            container_name: name.to_string(),
            status: status as i32,
            ..Default::default()
        };
        let failed = |reason: String| {
            tracing::warn!("import of {name} failed: {reason}");
            pb::ContainerImportProgress {
                failure_reason: reason,
                ..progress(Progress::Failed)
            }
        };
        if tx.cancel_pending() {
            return progress(Progress::Cancelled);
        }
        if let Err(e) = self.delete_helper(client, IMPORT_NAME).await {
            return failed(format!("failed to delete old {IMPORT_NAME}: {e}"));
        }
        let mut post =
            InstancesPost::new(IMPORT_NAME, InstanceSource::local_fingerprint(fingerprint));
        if self.config.lxd_profile != "default" {
            post.put.profiles = Some(vec![self.config.lxd_profile.clone()]);
        }
        let events = subscribe_operations(client).await;
        let op = match client.create_instance(&post).await {
            Ok(op) => op,
            Err(e) => return failed(format!("failed to create container from image: {e}")),
        };
        let mut updates = client.follow_operation(events, op, CREATE_TIMEOUT);
        let last = loop {
            match updates.next().await {
                None => return failed("LXD operation ended without a final state".to_string()),
                Some(Err(e)) => {
                    return failed(format!("failed to create container from image: {e}"))
                }
                Some(Ok(op)) if op.is_final() => break op,
                Some(Ok(op)) => {
                    if let Some(p) = parse_progress_object(&op.metadata).filter(|p| p.is_unpack()) {
                        let _ = self
                            .listener
                            .update_import_status(pb::ContainerImportProgress {
                                progress_percent: p.percent,
                                progress_speed: p.speed,
                                ..progress(Progress::ImportingUnpack)
                            })
                            .await;
                    }
                }
            }
        };
        if last.state() != OperationState::Success {
            return failed(format!(
                "failed to create container from image: {}",
                last.err
            ));
        }
        if tx.cancel_pending() {
            return progress(Progress::Cancelled);
        }
        if let Err(e) = self.delete_helper(client, name).await {
            return failed(format!("failed to delete existing container {name}: {e}"));
        }
        let renamed = async {
            let op = client.rename_instance(IMPORT_NAME, name).await?;
            client.wait(&op, OP_TIMEOUT).await
        }
        .await;
        if let Err(e) = renamed {
            return failed(format!("failed to rename {IMPORT_NAME} to {name}: {e}"));
        }
        tracing::info!("imported container {name}");
        progress(Progress::Done)
    }
}
