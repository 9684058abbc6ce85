//! The `vm_tools.tremplin.Tremplin` gRPC service: translation only. Every RPC unwraps the
//! request, calls the matching [`Daemon`] method and wraps its answer.

use std::sync::Arc;

use crostini_proto::vm_tools::tremplin as pb;
use crostini_proto::vm_tools::tremplin::tremplin_server::{Tremplin, TremplinServer};
use tonic::{Request, Response, Status};

use crate::daemon::Daemon;

/// gRPC adapter around the daemon.
#[derive(Clone)]
pub struct TremplinService {
    daemon: Arc<Daemon>,
}

impl TremplinService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        TremplinService { daemon }
    }

    /// The tonic server wrapping this service.
    pub fn into_server(self) -> TremplinServer<Self> {
        TremplinServer::new(self)
    }
}

/// Generates the trait impl (one macro for the whole impl so `async_trait` sees every method).
macro_rules! tremplin_impl {
    ($($name:ident: $req:ty => $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Tremplin for TremplinService {
            $(
                async fn $name(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    let request = request.into_inner();
                    tracing::debug!(rpc = stringify!($name), ?request, "request");
                    let response = self.daemon.$name(request).await;
                    tracing::debug!(rpc = stringify!($name), ?response, "response");
                    Ok(Response::new(response))
                }
            )*

            async fn host_network_changed(
                &self,
                request: Request<pb::HostNetworkChangedRequest>,
            ) -> Result<Response<pb::HostNetworkChangedResponse>, Status> {
                self.daemon
                    .host_network_changed(request.into_inner())
                    .await
                    .map(Response::new)
                    .map_err(Status::internal)
            }
        }
    };
}

tremplin_impl! {
    start_lxd: pb::StartLxdRequest => pb::StartLxdResponse;
    create_container: pb::CreateContainerRequest => pb::CreateContainerResponse;
    delete_container: pb::DeleteContainerRequest => pb::DeleteContainerResponse;
    start_container: pb::StartContainerRequest => pb::StartContainerResponse;
    stop_container: pb::StopContainerRequest => pb::StopContainerResponse;
    get_container_username: pb::GetContainerUsernameRequest => pb::GetContainerUsernameResponse;
    set_up_user: pb::SetUpUserRequest => pb::SetUpUserResponse;
    get_container_info: pb::GetContainerInfoRequest => pb::GetContainerInfoResponse;
    set_timezone: pb::SetTimezoneRequest => pb::SetTimezoneResponse;
    export_container: pb::ExportContainerRequest => pb::ExportContainerResponse;
    cancel_export_container: pb::CancelExportContainerRequest => pb::CancelExportContainerResponse;
    import_container: pb::ImportContainerRequest => pb::ImportContainerResponse;
    cancel_import_container: pb::CancelImportContainerRequest => pb::CancelImportContainerResponse;
    get_debug_info: pb::GetDebugInfoRequest => pb::GetDebugInfoResponse;
    attach_usb_to_container: pb::AttachUsbToContainerRequest => pb::AttachUsbToContainerResponse;
    detach_usb_from_container: pb::DetachUsbFromContainerRequest => pb::DetachUsbFromContainerResponse;
    update_container_devices: pb::UpdateContainerDevicesRequest => pb::UpdateContainerDevicesResponse;
}
