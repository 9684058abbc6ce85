//! A tremplin that answers GetContainerInfo and GetContainerUsername as scripted (the other rpcs
//! are UNIMPLEMENTED), served on a unix socket, for ContainerReady's check.

use std::sync::{Arc, Mutex};

use crostini_common::transport::{server_builder, Listener};
use crostini_common::Address;
use crostini_proto::vm_tools::tremplin::{self as tp, tremplin_server::TremplinServer};
use tonic::{Request, Response, Status};

/// What GetContainerInfo answers: status and the address (`a.b.c.d`, 0 for none).
#[derive(Clone, Copy)]
pub struct Info(pub tp::get_container_info_response::Status, pub [u8; 4]);

#[derive(Clone)]
pub struct FakeTremplin {
    pub info: Arc<Mutex<Info>>,
    pub asked: Arc<Mutex<Vec<String>>>,
}

macro_rules! tremplin_impl {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl tp::tremplin_server::Tremplin for FakeTremplin {
            async fn get_container_info(
                &self,
                req: Request<tp::GetContainerInfoRequest>,
            ) -> Result<Response<tp::GetContainerInfoResponse>, Status> {
                self.asked.lock().expect("lock").push(req.into_inner().container_name);
                let Info(status, ip) = *self.info.lock().expect("lock");
                Ok(Response::new(tp::GetContainerInfoResponse {
                    status: status as i32,
                    failure_reason: String::new(),
                    ipv4_address: u32::from_le_bytes(ip),
                }))
            }

            async fn get_container_username(
                &self,
                _req: Request<tp::GetContainerUsernameRequest>,
            ) -> Result<Response<tp::GetContainerUsernameResponse>, Status> {
                Ok(Response::new(tp::GetContainerUsernameResponse {
                    status: tp::get_container_username_response::Status::Success as i32,
                    username: "penguin-user".into(),
                    homedir: "/home/penguin-user".into(),
                    failure_reason: String::new(),
                }))
            }

            $(async fn $method(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                Err(Status::unimplemented("fake tremplin"))
            })*
        }
    };
}

tremplin_impl! {
    start_lxd(tp::StartLxdRequest) -> tp::StartLxdResponse;
    create_container(tp::CreateContainerRequest) -> tp::CreateContainerResponse;
    delete_container(tp::DeleteContainerRequest) -> tp::DeleteContainerResponse;
    start_container(tp::StartContainerRequest) -> tp::StartContainerResponse;
    stop_container(tp::StopContainerRequest) -> tp::StopContainerResponse;
    set_up_user(tp::SetUpUserRequest) -> tp::SetUpUserResponse;
    set_timezone(tp::SetTimezoneRequest) -> tp::SetTimezoneResponse;
    export_container(tp::ExportContainerRequest) -> tp::ExportContainerResponse;
    cancel_export_container(tp::CancelExportContainerRequest) -> tp::CancelExportContainerResponse;
    import_container(tp::ImportContainerRequest) -> tp::ImportContainerResponse;
    cancel_import_container(tp::CancelImportContainerRequest) -> tp::CancelImportContainerResponse;
    host_network_changed(tp::HostNetworkChangedRequest) -> tp::HostNetworkChangedResponse;
    get_debug_info(tp::GetDebugInfoRequest) -> tp::GetDebugInfoResponse;
    attach_usb_to_container(tp::AttachUsbToContainerRequest) -> tp::AttachUsbToContainerResponse;
    detach_usb_from_container(tp::DetachUsbFromContainerRequest) -> tp::DetachUsbFromContainerResponse;
    update_container_devices(tp::UpdateContainerDevicesRequest) -> tp::UpdateContainerDevicesResponse;
}

/// Serves the fake on `address` until the test ends; returns its handle.
pub async fn serve(address: &Address, info: Info) -> FakeTremplin {
    let fake = FakeTremplin {
        info: Arc::new(Mutex::new(info)),
        asked: Arc::new(Mutex::new(Vec::new())),
    };
    let listener = Listener::bind(address).await.expect("fake tremplin binds");
    let service = TremplinServer::new(fake.clone());
    tokio::spawn(
        server_builder()
            .add_service(service)
            .serve_with_incoming(listener.into_incoming()),
    );
    fake
}
