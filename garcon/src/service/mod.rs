//! The `vm_tools.container.Garcon` gRPC service: translation only.
//!
//! [`GarconService`] implements the generated [`Garcon`] trait and delegates every rpc to a plain
//! async function in a per-area file, so the owners of each area can work in their own file:
//!
//! | rpc | function |
//! |---|---|
//! | GetIcon | [`icons::get_icon`] |
//! | LaunchApplication | [`launch::launch_application`] |
//! | GetLinuxPackageInfo / InstallLinuxPackage / UninstallPackageOwningFile | [`packages`] |
//! | everything else | [`misc`] |
//!
//! Each function has the shape
//! `async fn(state: &Arc<GarconState>, request: Req) -> Result<Resp, tonic::Status>`.

use std::sync::Arc;

use crostini_proto::vm_tools::container::{
    garcon_server::Garcon, AddFileWatchRequest, AddFileWatchResponse, ApplyAnsiblePlaybookRequest,
    ApplyAnsiblePlaybookResponse, ConfigureForArcSideloadRequest, ConfigureForArcSideloadResponse,
    ConnectChunnelRequest, ConnectChunnelResponse, GetDebugInformationRequest,
    GetDebugInformationResponse, GetGarconSessionInfoRequest, GetGarconSessionInfoResponse,
    IconRequest, IconResponse, InstallLinuxPackageRequest, InstallLinuxPackageResponse,
    LaunchApplicationRequest, LaunchApplicationResponse, LaunchVshdRequest, LaunchVshdResponse,
    LinuxPackageInfoRequest, LinuxPackageInfoResponse, RemoveFileWatchRequest,
    RemoveFileWatchResponse, UninstallPackageOwningFileRequest, UninstallPackageOwningFileResponse,
};
use tonic::{Request, Response, Status};

use crate::state::GarconState;

pub mod icons;
pub mod launch;
pub mod misc;
pub mod packages;

/// The gRPC-facing service; cheap to clone.
#[derive(Clone)]
pub struct GarconService {
    state: Arc<GarconState>,
}

impl GarconService {
    pub fn new(state: Arc<GarconState>) -> Self {
        Self { state }
    }

    pub fn state(&self) -> &Arc<GarconState> {
        &self.state
    }
}

fn ok<T>(result: Result<T, Status>) -> Result<Response<T>, Status> {
    result.map(Response::new)
}

#[tonic::async_trait]
impl Garcon for GarconService {
    async fn launch_application(
        &self,
        request: Request<LaunchApplicationRequest>,
    ) -> Result<Response<LaunchApplicationResponse>, Status> {
        ok(launch::launch_application(&self.state, request.into_inner()).await)
    }

    async fn get_icon(
        &self,
        request: Request<IconRequest>,
    ) -> Result<Response<IconResponse>, Status> {
        ok(icons::get_icon(&self.state, request.into_inner()).await)
    }

    async fn launch_vshd(
        &self,
        request: Request<LaunchVshdRequest>,
    ) -> Result<Response<LaunchVshdResponse>, Status> {
        ok(misc::launch_vshd(&self.state, request.into_inner()).await)
    }

    async fn get_linux_package_info(
        &self,
        request: Request<LinuxPackageInfoRequest>,
    ) -> Result<Response<LinuxPackageInfoResponse>, Status> {
        ok(packages::get_linux_package_info(&self.state, request.into_inner()).await)
    }

    async fn install_linux_package(
        &self,
        request: Request<InstallLinuxPackageRequest>,
    ) -> Result<Response<InstallLinuxPackageResponse>, Status> {
        ok(packages::install_linux_package(&self.state, request.into_inner()).await)
    }

    async fn uninstall_package_owning_file(
        &self,
        request: Request<UninstallPackageOwningFileRequest>,
    ) -> Result<Response<UninstallPackageOwningFileResponse>, Status> {
        ok(packages::uninstall_package_owning_file(&self.state, request.into_inner()).await)
    }

    async fn get_debug_information(
        &self,
        request: Request<GetDebugInformationRequest>,
    ) -> Result<Response<GetDebugInformationResponse>, Status> {
        ok(misc::get_debug_information(&self.state, request.into_inner()).await)
    }

    async fn connect_chunnel(
        &self,
        request: Request<ConnectChunnelRequest>,
    ) -> Result<Response<ConnectChunnelResponse>, Status> {
        ok(misc::connect_chunnel(&self.state, request.into_inner()).await)
    }

    async fn apply_ansible_playbook(
        &self,
        request: Request<ApplyAnsiblePlaybookRequest>,
    ) -> Result<Response<ApplyAnsiblePlaybookResponse>, Status> {
        ok(misc::apply_ansible_playbook(&self.state, request.into_inner()).await)
    }

    async fn configure_for_arc_sideload(
        &self,
        request: Request<ConfigureForArcSideloadRequest>,
    ) -> Result<Response<ConfigureForArcSideloadResponse>, Status> {
        ok(misc::configure_for_arc_sideload(&self.state, request.into_inner()).await)
    }

    async fn add_file_watch(
        &self,
        request: Request<AddFileWatchRequest>,
    ) -> Result<Response<AddFileWatchResponse>, Status> {
        ok(misc::add_file_watch(&self.state, request.into_inner()).await)
    }

    async fn remove_file_watch(
        &self,
        request: Request<RemoveFileWatchRequest>,
    ) -> Result<Response<RemoveFileWatchResponse>, Status> {
        ok(misc::remove_file_watch(&self.state, request.into_inner()).await)
    }

    async fn get_garcon_session_info(
        &self,
        request: Request<GetGarconSessionInfoRequest>,
    ) -> Result<Response<GetGarconSessionInfoResponse>, Status> {
        ok(misc::get_garcon_session_info(&self.state, request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests;
