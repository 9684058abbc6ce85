//! `vm_tools.tremplin.TremplinListener` as cicerone serves it (tremplin §13.2, §13.3).

use std::sync::Arc;

use crostini_common::Peer;
use crostini_proto::vm_tools::tremplin::{
    self as tp, tremplin_listener_server::TremplinListener, EmptyMessage,
};
use tonic::{Request, Response, Status};

use crate::state::{handle, HostState};

pub struct TremplinListenerService {
    state: Arc<HostState>,
}

impl TremplinListenerService {
    pub fn new(state: Arc<HostState>) -> Self {
        TremplinListenerService { state }
    }

    fn vm(&self, peer: &Peer) -> Result<u32, Status> {
        self.state
            .registry
            .vm_cid(peer)
            .ok_or_else(|| Status::failed_precondition("Cannot find VM for TremplinListener"))
    }

    fn named(&self, peer: &Peer, name: &str) -> Result<EmptyMessage, Status> {
        self.vm(peer)?;
        if name.is_empty() {
            return Err(Status::failed_precondition(
                "`container_name` cannot be empty",
            ));
        }
        Ok(EmptyMessage {})
    }

    /// Records a container's new state from a report (empty: nothing to record).
    fn note(&self, peer: &Peer, name: &str, state: &str) {
        let registry = &self.state.registry;
        if let (false, Some(cid)) = (state.is_empty(), registry.vm_cid(peer)) {
            registry.update_facts(cid, name, |f| f.state = state.to_string());
        }
    }
}

/// Cicerone casts these statuses into its D-Bus enums and refuses values outside them.
fn status_in<E: TryFrom<i32>>(status: i32) -> Result<EmptyMessage, Status> {
    E::try_from(status)
        .map(|_| EmptyMessage {})
        .map_err(|_| Status::failed_precondition(format!("Invalid status {status}")))
}

#[tonic::async_trait]
impl TremplinListener for TremplinListenerService {
    async fn tremplin_ready(
        &self,
        req: Request<tp::TremplinStartupInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, TremplinReady, |peer, _msg| self
            .vm(&peer)
            .map(|_| EmptyMessage {}))
    }

    async fn update_start_lxd_status(
        &self,
        req: Request<tp::StartLxdProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateStartLxdStatus, |peer, msg| self
            .vm(&peer)
            .and_then(|_| status_in::<tp::start_lxd_progress::Status>(
                msg.status
            )))
    }

    async fn update_create_status(
        &self,
        req: Request<tp::ContainerCreationProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateCreateStatus, |peer, msg| self
            .named(&peer, &msg.container_name))
    }

    async fn update_deletion_status(
        &self,
        req: Request<tp::ContainerDeletionProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateDeletionStatus, |peer, msg| self
            .named(&peer, &msg.container_name))
    }

    async fn update_start_status(
        &self,
        req: Request<tp::ContainerStartProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateStartStatus, |peer, msg| {
            use tp::container_start_progress::Status as S;
            let state = match S::try_from(msg.status) {
                Ok(S::Started) => "started",
                Ok(S::Starting) => "starting",
                Ok(S::Failed) => "failed",
                _ => "",
            };
            self.named(&peer, &msg.container_name)
                .inspect(|_| self.note(&peer, &msg.container_name, state))
        })
    }

    async fn update_stop_status(
        &self,
        req: Request<tp::ContainerStopProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateStopStatus, |peer, msg| {
            use tp::container_stop_progress::Status as S;
            let state = match S::try_from(msg.status) {
                Ok(S::Stopped) => "stopped",
                Ok(S::Stopping) => "stopping",
                _ => "",
            };
            self.named(&peer, &msg.container_name)
                .inspect(|_| self.note(&peer, &msg.container_name, state))
        })
    }

    async fn update_export_status(
        &self,
        req: Request<tp::ContainerExportProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateExportStatus, |peer, msg| self
            .vm(&peer)
            .and_then(
                |_| status_in::<tp::container_export_progress::Status>(msg.status)
            ))
    }

    async fn update_import_status(
        &self,
        req: Request<tp::ContainerImportProgress>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateImportStatus, |peer, msg| self
            .vm(&peer)
            .and_then(
                |_| status_in::<tp::container_import_progress::Status>(msg.status)
            ))
    }

    async fn container_shutdown(
        &self,
        req: Request<tp::ContainerShutdownInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, TremplinContainerShutdown, |peer, msg| (|| {
            let cid = self.vm(&peer)?;
            if msg.container_name.is_empty() {
                return Err(Status::invalid_argument("`container_name` cannot be empty"));
            }
            self.note(&peer, &msg.container_name, "stopped");
            // Unknown containers are logged and still answered OK.
            if self
                .state
                .registry
                .deactivate_by_name(cid, &msg.container_name)
                .is_none()
            {
                tracing::info!(container = %msg.container_name, "shutdown of a container not registered");
            }
            Ok(EmptyMessage {})
        })(
        ))
    }

    async fn update_listening_ports(
        &self,
        req: Request<tp::ListeningPortInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        handle!(self, req, UpdateListeningPorts, |peer, _msg| self
            .vm(&peer)
            .map(|_| EmptyMessage {}))
    }
}
