//! The rpcs owned by the core: LaunchVshd, GetDebugInformation, ConnectChunnel,
//! ApplyAnsiblePlaybook, ConfigureForArcSideload, AddFileWatch, RemoveFileWatch,
//! GetGarconSessionInfo. Translation only; the work is in the domain modules.

use std::sync::Arc;

use crostini_proto::vm_tools::container::{
    add_file_watch_response, apply_ansible_playbook_response, configure_for_arc_sideload_response,
    get_garcon_session_info_response, remove_file_watch_response, AddFileWatchRequest,
    AddFileWatchResponse, ApplyAnsiblePlaybookRequest, ApplyAnsiblePlaybookResponse,
    ConfigureForArcSideloadRequest, ConfigureForArcSideloadResponse, ConnectChunnelRequest,
    ConnectChunnelResponse, GetDebugInformationRequest, GetDebugInformationResponse,
    GetGarconSessionInfoRequest, GetGarconSessionInfoResponse, LaunchVshdRequest,
    LaunchVshdResponse, RemoveFileWatchRequest, RemoveFileWatchResponse,
};
use tonic::Status;

use crate::ansible::{AnsibleConfig, AnsibleError, AnsibleRunner, ANSIBLE_TIMEOUT};
use crate::arc_sideload::{ArcSideload, SystemArcEnvironment};
use crate::debug_info::{self, SystemRunner};
use crate::state::GarconState;
use crate::tools::{self, ToolError};

/// Text of GetGarconSessionInfo before startup published the sftp port.
pub const SESSION_NOT_READY: &str =
    "sftp_vsock_port not set, container probably hasn't finished booting so unable to get info";

fn blocking_failed(error: tokio::task::JoinError) -> Status {
    Status::internal(format!("worker task failed: {error}"))
}

pub async fn launch_vshd(
    state: &Arc<GarconState>,
    request: LaunchVshdRequest,
) -> Result<LaunchVshdResponse, Status> {
    let vshd = state.paths.vshd.clone();
    let env: crate::launch::Environment = std::env::vars_os().collect();
    let result = tokio::task::spawn_blocking(move || {
        tools::launch_vshd(&vshd, request.port, &request.container_features, &env)
    })
    .await
    .map_err(blocking_failed)?;
    match result {
        Ok(_pid) => Ok(LaunchVshdResponse {
            success: true,
            failure_reason: String::new(),
        }),
        Err(ToolError::InvalidArgument(text)) => Err(Status::invalid_argument(text)),
        Err(ToolError::SpawnFailed(text)) => Ok(LaunchVshdResponse {
            success: false,
            failure_reason: text.to_string(),
        }),
    }
}

pub async fn get_debug_information(
    state: &Arc<GarconState>,
    _request: GetDebugInformationRequest,
) -> Result<GetDebugInformationResponse, Status> {
    let debug_information = debug_info::build(&SystemRunner, state.paths.user.as_deref()).await;
    Ok(GetDebugInformationResponse { debug_information })
}

pub async fn connect_chunnel(
    state: &Arc<GarconState>,
    request: ConnectChunnelRequest,
) -> Result<ConnectChunnelResponse, Status> {
    let chunnel = state.paths.chunnel.clone();
    let result = tokio::task::spawn_blocking(move || {
        tools::connect_chunnel(&chunnel, request.chunneld_port, request.target_tcp4_port)
    })
    .await
    .map_err(blocking_failed)?;
    match result {
        Ok(_pid) => Ok(ConnectChunnelResponse {
            success: true,
            failure_reason: String::new(),
        }),
        Err(ToolError::InvalidArgument(text)) => Err(Status::invalid_argument(text)),
        Err(ToolError::SpawnFailed(text)) => Ok(ConnectChunnelResponse {
            success: false,
            failure_reason: text.to_string(),
        }),
    }
}

pub async fn apply_ansible_playbook(
    state: &Arc<GarconState>,
    request: ApplyAnsiblePlaybookRequest,
) -> Result<ApplyAnsiblePlaybookResponse, Status> {
    use apply_ansible_playbook_response::Status as S;
    let config = AnsibleConfig {
        program: state.paths.ansible_playbook.clone(),
        temp_dir: state.paths.temp_dir.clone(),
        timeout: ANSIBLE_TIMEOUT,
    };
    let runner = state.extension::<AnsibleRunner>();
    match runner
        .start(&request.playbook, &config, Arc::new(state.host.clone()))
        .await
    {
        Ok(()) => Ok(ApplyAnsiblePlaybookResponse {
            status: S::Started as i32,
            failure_reason: String::new(),
        }),
        Err(AnsibleError::EmptyPlaybook) => Err(Status::invalid_argument(
            AnsibleError::EmptyPlaybook.to_string(),
        )),
        Err(error) => Ok(ApplyAnsiblePlaybookResponse {
            status: S::Failed as i32,
            failure_reason: error.to_string(),
        }),
    }
}

pub async fn configure_for_arc_sideload(
    state: &Arc<GarconState>,
    _request: ConfigureForArcSideloadRequest,
) -> Result<ConfigureForArcSideloadResponse, Status> {
    use configure_for_arc_sideload_response::Status as S;
    let arc = state.extension::<ArcSideload>();
    Ok(match arc.configure(&SystemArcEnvironment).await {
        Ok(()) => ConfigureForArcSideloadResponse {
            status: S::Succeeded as i32,
            failure_reason: String::new(),
        },
        Err(reason) => ConfigureForArcSideloadResponse {
            status: S::Failed as i32,
            failure_reason: reason,
        },
    })
}

pub async fn add_file_watch(
    state: &Arc<GarconState>,
    request: AddFileWatchRequest,
) -> Result<AddFileWatchResponse, Status> {
    use add_file_watch_response::Status as S;
    Ok(match state.file_watches.add(&request.path) {
        Ok(()) => AddFileWatchResponse {
            status: S::Succeeded as i32,
            failure_reason: String::new(),
        },
        Err(error) => AddFileWatchResponse {
            status: S::Failed as i32,
            failure_reason: error.to_string(),
        },
    })
}

pub async fn remove_file_watch(
    state: &Arc<GarconState>,
    request: RemoveFileWatchRequest,
) -> Result<RemoveFileWatchResponse, Status> {
    use remove_file_watch_response::Status as S;
    Ok(match state.file_watches.remove(&request.path) {
        Ok(()) => RemoveFileWatchResponse {
            status: S::Succeeded as i32,
            failure_reason: String::new(),
        },
        Err(error) => RemoveFileWatchResponse {
            status: S::Failed as i32,
            failure_reason: error.to_string(),
        },
    })
}

pub async fn get_garcon_session_info(
    state: &Arc<GarconState>,
    _request: GetGarconSessionInfoRequest,
) -> Result<GetGarconSessionInfoResponse, Status> {
    use get_garcon_session_info_response::Status as S;
    let Some(sftp_vsock_port) = state.sftp_vsock_port() else {
        return Ok(GetGarconSessionInfoResponse {
            status: S::Failed as i32,
            failure_reason: SESSION_NOT_READY.to_string(),
            ..Default::default()
        });
    };
    let container_username = state.paths.user.clone().unwrap_or_else(|| {
        tracing::warn!("USER is not set; GetGarconSessionInfo reports an empty user name");
        String::new()
    });
    let container_homedir = match state.home() {
        Some(home) => home.to_string_lossy().into_owned(),
        None => {
            tracing::warn!("HOME is not set; GetGarconSessionInfo reports an empty home");
            String::new()
        }
    };
    Ok(GetGarconSessionInfoResponse {
        status: S::Succeeded as i32,
        failure_reason: String::new(),
        container_username,
        container_homedir,
        sftp_vsock_port,
    })
}
