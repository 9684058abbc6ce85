//! DeleteContainer (§8.2): stop first when running, then delete; reports `DELETED`,
//! `CANCELLED` or `FAILED`.

use std::sync::Arc;

use crostini_lxd::{Client, Operation, OperationState};
use crostini_proto::vm_tools::tremplin as pb;
use pb::container_deletion_progress::Status as Progress;
use pb::delete_container_response::Status;

use super::{check_container_name, OP_TIMEOUT};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};

fn reply(status: Status, reason: impl Into<String>) -> pb::DeleteContainerResponse {
    pb::DeleteContainerResponse {
        status: status as i32,
        failure_reason: reason.into(),
    }
}

fn progress(
    name: &str,
    status: Progress,
    reason: impl Into<String>,
) -> pb::ContainerDeletionProgress {
    pb::ContainerDeletionProgress {
        status: status as i32,
        container_name: name.to_string(),
        failure_reason: reason.into(),
    }
}

/// Maps a final (or failed-to-follow) operation to the report.
fn report_for(
    name: &str,
    op: Result<Operation, crostini_lxd::LxdError>,
) -> Result<(), pb::ContainerDeletionProgress> {
    match op {
        Ok(op) => match op.state() {
            OperationState::Success => Ok(()),
            OperationState::Cancelled => Err(progress(name, Progress::Cancelled, op.err)),
            OperationState::Failure => Err(progress(name, Progress::Failed, op.err)),
            other => Err(progress(
                name,
                Progress::Unknown,
                format!("unexpected operation state {other:?}"),
            )),
        },
        Err(e) => Err(progress(name, Progress::Failed, e.to_string())),
    }
}

impl Daemon {
    pub async fn delete_container(
        self: &Arc<Self>,
        request: pb::DeleteContainerRequest,
    ) -> pb::DeleteContainerResponse {
        let name = request.container_name;
        if let Err(e) = check_container_name(&name) {
            return reply(Status::DoesNotExist, e);
        }
        let Some(client) = self.lxd() else {
            return reply(Status::Failed, LXD_NOT_RUNNING);
        };
        let instance = match client.instance(&name).await {
            Ok((i, _)) => i,
            Err(e) if e.is_not_found() => return reply(Status::DoesNotExist, ""),
            Err(e) => return reply(Status::Failed, format!("failed to find container: {e}")),
        };
        let daemon = self.clone();
        if instance.is_running() {
            let stop = match client.stop_instance(&name, true).await {
                Ok(op) => op,
                Err(e) => return reply(Status::Failed, format!("failed to stop container: {e}")),
            };
            tokio::spawn(async move {
                let stopped = client.wait_final(&stop.id, OP_TIMEOUT).await;
                let report = match report_for(&name, stopped) {
                    Err(report) => report,
                    Ok(()) => match client.delete_instance(&name).await {
                        Ok(op) => daemon.finish_delete(&client, &name, op).await,
                        Err(e) => progress(
                            &name,
                            Progress::Failed,
                            format!("failed to delete container: {e}"),
                        ),
                    },
                };
                let _ = daemon.listener.update_deletion_status(report).await;
            });
        } else {
            let op = match client.delete_instance(&name).await {
                Ok(op) => op,
                Err(e) => return reply(Status::Failed, format!("failed to delete container: {e}")),
            };
            tokio::spawn(async move {
                let report = daemon.finish_delete(&client, &name, op).await;
                let _ = daemon.listener.update_deletion_status(report).await;
            });
        }
        reply(Status::Deleting, "")
    }

    async fn finish_delete(
        &self,
        client: &Client,
        name: &str,
        op: Operation,
    ) -> pb::ContainerDeletionProgress {
        let done = client.wait_final(&op.id, OP_TIMEOUT).await;
        match report_for(name, done) {
            Ok(()) => {
                self.usb_container_deleted(name).await;
                tracing::info!("deleted container {name}");
                progress(name, Progress::Deleted, "")
            }
            Err(report) => report,
        }
    }
}
