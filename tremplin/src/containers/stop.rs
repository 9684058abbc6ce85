//! StopContainer (§8.3): forced stop with `STOPPING` reports until `STOPPED`.

use std::sync::Arc;

use crostini_lxd::OperationState;
use crostini_proto::vm_tools::tremplin as pb;
use pb::container_stop_progress::Status as Progress;
use pb::stop_container_response::Status;

use super::{check_container_name, subscribe_operations, OP_TIMEOUT};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};

fn reply(status: Status, reason: impl Into<String>) -> pb::StopContainerResponse {
    pb::StopContainerResponse {
        status: status as i32,
        failure_reason: reason.into(),
    }
}

impl Daemon {
    pub async fn stop_container(
        self: &Arc<Self>,
        request: pb::StopContainerRequest,
    ) -> pb::StopContainerResponse {
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
        if !instance.is_running() {
            return reply(Status::Stopped, "");
        }
        let events = subscribe_operations(&client).await;
        let op = match client.stop_instance(&name, true).await {
            Ok(op) => op,
            Err(e) => return reply(Status::Failed, format!("failed to stop container: {e}")),
        };
        let daemon = self.clone();
        tokio::spawn(async move {
            let mut updates = client.follow_operation(events, op, OP_TIMEOUT);
            while let Some(update) = updates.next().await {
                let (status, reason) = match update {
                    Err(e) => (Progress::Failed, e.to_string()),
                    Ok(op) => match op.state() {
                        OperationState::Pending | OperationState::Running => {
                            (Progress::Stopping, String::new())
                        }
                        OperationState::Success => (Progress::Stopped, String::new()),
                        OperationState::Cancelled => (Progress::Cancelled, op.err),
                        OperationState::Failure => (Progress::Failed, op.err),
                        OperationState::Other(code) => (
                            Progress::Unknown,
                            format!("unexpected operation status {code}"),
                        ),
                    },
                };
                let _ = daemon
                    .listener
                    .update_stop_status(pb::ContainerStopProgress {
                        status: status as i32,
                        container_name: name.clone(),
                        failure_reason: reason,
                    })
                    .await;
            }
        });
        reply(Status::Stopping, "")
    }
}
