//! GetLinuxPackageInfo / InstallLinuxPackage / UninstallPackageOwningFile rpc translation
//! (garcon-service §5.5-5.7), and the host-bound progress messages (garcon-host §12).
//!
//! Request -> [`crate::packages`] -> reply. Malformed requests are `INVALID_ARGUMENT`; everything
//! else is in-band. Every non-started reply sets its status explicitly (STARTED is the proto
//! default).

use std::sync::Arc;

use crostini_packagekit::PackageDetails;
use crostini_proto::vm_tools::container::{
    install_linux_package_progress_info, install_linux_package_response,
    uninstall_package_owning_file_response, uninstall_package_progress_info,
    InstallLinuxPackageProgressInfo, InstallLinuxPackageRequest, InstallLinuxPackageResponse,
    LinuxPackageInfoRequest, LinuxPackageInfoResponse, UninstallPackageOwningFileRequest,
    UninstallPackageOwningFileResponse, UninstallPackageProgressInfo,
};
use futures::future::BoxFuture;
use tonic::Status;

use crate::desktop::XdgDirs;
use crate::host::HostClient;
use crate::packages::{
    packages_for, InfoRequest, InstallProgress, InstallRequest, InstallStart, InstallStatus,
    ProgressSink, RequestError, UninstallProgress, UninstallRequest, UninstallStart,
    UninstallStatus, INSTALL_ALREADY_ACTIVE, UNINSTALL_BLOCKED,
};
use crate::state::GarconState;

fn invalid(err: RequestError) -> Status {
    Status::invalid_argument(err.to_string())
}

pub async fn get_linux_package_info(
    state: &Arc<GarconState>,
    request: LinuxPackageInfoRequest,
) -> Result<LinuxPackageInfoResponse, Status> {
    let request = match InfoRequest::validate(&request.file_path, &request.package_name).await {
        Ok(request) => request,
        // An unreadable or non-regular file: success=false with the reason.
        Err(err) if err.is_in_band() => return Ok(info_response(Err(err.to_string()))),
        Err(err) => return Err(invalid(err)),
    };
    let result = match packages_for(state).await {
        Ok(packages) => packages.info(&request).await,
        Err(reason) => Err(reason),
    };
    Ok(info_response(result))
}

/// On success every info field; on failure only `success=false` and the reason (§5.5 step 6).
pub fn info_response(result: Result<PackageDetails, String>) -> LinuxPackageInfoResponse {
    match result {
        Ok(details) => LinuxPackageInfoResponse {
            success: true,
            failure_reason: String::new(),
            package_id: details.package_id,
            license: details.license,
            description: details.description,
            project_url: details.url,
            size: details.size,
            summary: details.summary,
        },
        Err(failure_reason) => LinuxPackageInfoResponse {
            success: false,
            failure_reason,
            ..Default::default()
        },
    }
}

pub async fn install_linux_package(
    state: &Arc<GarconState>,
    request: InstallLinuxPackageRequest,
) -> Result<InstallLinuxPackageResponse, Status> {
    use install_linux_package_response::Status as Reply;
    let InstallLinuxPackageRequest {
        file_path,
        package_id,
        command_uuid,
    } = request;
    let request = match InstallRequest::validate(&file_path, &package_id).await {
        Ok(request) => request,
        // An unreadable or non-regular file: FAILED with the reason (detected synchronously,
        // §5.6 step 4), before the busy check like the other file checks.
        Err(err) if err.is_in_band() => {
            return Ok(InstallLinuxPackageResponse {
                status: Reply::Failed as i32,
                failure_reason: err.to_string(),
            })
        }
        Err(err) => return Err(invalid(err)),
    };
    let (status, failure_reason) = match packages_for(state).await {
        Ok(packages) => match packages.install(request, command_uuid) {
            InstallStart::Started => (Reply::Started, String::new()),
            InstallStart::AlreadyActive => (
                Reply::InstallAlreadyActive,
                INSTALL_ALREADY_ACTIVE.to_owned(),
            ),
        },
        // Detected synchronously, so FAILED here rather than STARTED + a FAILED progress (§5.6
        // step 4 allows it).
        Err(reason) => (Reply::Failed, reason),
    };
    Ok(InstallLinuxPackageResponse {
        status: status as i32,
        failure_reason,
    })
}

pub async fn uninstall_package_owning_file(
    state: &Arc<GarconState>,
    request: UninstallPackageOwningFileRequest,
) -> Result<UninstallPackageOwningFileResponse, Status> {
    use uninstall_package_owning_file_response::Status as Reply;
    let packages = packages_for(state).await;
    let xdg = match &packages {
        Ok(packages) => packages.xdg().clone(),
        Err(_) => XdgDirs::from_env(),
    };
    let request = UninstallRequest::validate(&request.desktop_file_id, &xdg)
        .await
        .map_err(invalid)?;
    let (status, failure_reason) = match packages {
        Ok(packages) => match packages.uninstall(request) {
            UninstallStart::Started => (Reply::Started, String::new()),
            UninstallStart::Blocked => (
                Reply::BlockingOperationInProgress,
                UNINSTALL_BLOCKED.to_owned(),
            ),
        },
        Err(reason) => (Reply::Failed, reason),
    };
    Ok(UninstallPackageOwningFileResponse {
        status: status as i32,
        failure_reason,
    })
}

/// The wire message of one install progress report (token filled by [`HostClient`]).
pub fn install_progress_info(progress: InstallProgress) -> InstallLinuxPackageProgressInfo {
    use install_linux_package_progress_info::Status as Wire;
    let status = match progress.status {
        InstallStatus::Succeeded => Wire::Succeeded,
        InstallStatus::Failed => Wire::Failed,
        InstallStatus::Downloading => Wire::Downloading,
        InstallStatus::Installing => Wire::Installing,
    };
    InstallLinuxPackageProgressInfo {
        token: String::new(),
        status: status as i32,
        progress_percent: progress.percent,
        failure_details: progress.failure_details,
        command_uuid: progress.command_uuid,
    }
}

/// The wire message of one uninstall progress report (token filled by [`HostClient`]).
pub fn uninstall_progress_info(progress: UninstallProgress) -> UninstallPackageProgressInfo {
    use uninstall_package_progress_info::Status as Wire;
    let status = match progress.status {
        UninstallStatus::Succeeded => Wire::Succeeded,
        UninstallStatus::Failed => Wire::Failed,
        UninstallStatus::Uninstalling => Wire::Uninstalling,
    };
    UninstallPackageProgressInfo {
        token: String::new(),
        status: status as i32,
        progress_percent: progress.percent,
        failure_details: progress.failure_details,
    }
}

/// Progress goes to the host's ContainerListener; delivery failures are logged and otherwise
/// ignored (garcon-service §2.4).
impl ProgressSink for HostClient {
    fn install_progress(&self, progress: InstallProgress) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(status) = self
                .install_linux_package_progress(install_progress_info(progress))
                .await
            {
                tracing::warn!(%status, "InstallLinuxPackageProgress not delivered");
            }
        })
    }

    fn uninstall_progress(&self, progress: UninstallProgress) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(status) = self
                .uninstall_package_progress(uninstall_progress_info(progress))
                .await
            {
                tracing::warn!(%status, "UninstallPackageProgress not delivered");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<GarconState> {
        let host = HostClient::new(
            &crostini_common::Address::unix("/nonexistent/host.sock"),
            "token",
        )
        .unwrap();
        Arc::new(GarconState::new(
            host,
            crate::config::Paths::from_env(),
            false,
        ))
    }

    #[tokio::test]
    async fn a_non_regular_package_file_is_refused_in_band_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let state = state();
        let reply = install_linux_package(
            &state,
            InstallLinuxPackageRequest {
                file_path: path.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            reply.status,
            install_linux_package_response::Status::Failed as i32
        );
        assert_eq!(
            reply.failure_reason,
            format!("{path} is not a regular file")
        );
        let info = get_linux_package_info(
            &state,
            LinuxPackageInfoRequest {
                file_path: path.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(!info.success);
        assert_eq!(info.failure_reason, format!("{path} is not a regular file"));
        // A missing file is still INVALID_ARGUMENT (§5.5/§5.6 step 2).
        let missing = install_linux_package(
            &state,
            InstallLinuxPackageRequest {
                file_path: format!("{path}/missing.deb"),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn info_failure_carries_only_the_reason() {
        let reply = info_response(Err("Timeout".into()));
        assert_eq!(
            reply,
            LinuxPackageInfoResponse {
                success: false,
                failure_reason: "Timeout".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn info_success_maps_url_to_project_url() {
        let reply = info_response(Ok(PackageDetails {
            package_id: "p;1;all;local".into(),
            license: "unknown".into(),
            description: "d".into(),
            url: "https://u".into(),
            size: 9,
            summary: "s".into(),
        }));
        assert!(reply.success);
        assert_eq!(reply.project_url, "https://u");
        assert_eq!((reply.size, reply.summary.as_str()), (9, "s"));
        assert!(reply.failure_reason.is_empty());
    }

    #[test]
    fn progress_statuses_have_the_wire_numbers() {
        let wire = |status| {
            install_progress_info(InstallProgress {
                status,
                percent: 0,
                failure_details: String::new(),
                command_uuid: String::new(),
            })
            .status
        };
        assert_eq!(
            [
                wire(InstallStatus::Succeeded),
                wire(InstallStatus::Failed),
                wire(InstallStatus::Downloading),
                wire(InstallStatus::Installing)
            ],
            [0, 1, 2, 3]
        );
        let wire = |status| {
            uninstall_progress_info(UninstallProgress {
                status,
                percent: 0,
                failure_details: String::new(),
            })
            .status
        };
        assert_eq!(
            [
                wire(UninstallStatus::Succeeded),
                wire(UninstallStatus::Failed),
                wire(UninstallStatus::Uninstalling)
            ],
            [0, 1, 2]
        );
    }

    #[test]
    fn progress_info_copies_percent_details_and_uuid() {
        let info = install_progress_info(InstallProgress {
            status: InstallStatus::Installing,
            percent: 80,
            failure_details: String::new(),
            command_uuid: "uuid-1".into(),
        });
        assert_eq!(
            (info.progress_percent, info.command_uuid.as_str()),
            (80, "uuid-1")
        );
        assert!(info.token.is_empty(), "HostClient fills the token");
    }
}
