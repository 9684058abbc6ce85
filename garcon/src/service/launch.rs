//! LaunchApplication rpc translation (garcon-service §5.1): request -> [`Launcher::launch`] ->
//! reply. Only an empty `desktop_file_id` is a gRPC error (INVALID_ARGUMENT); every other
//! failure is in-band with the reference's `failure_reason`.

use std::sync::Arc;

use crostini_proto::vm_tools::container::{LaunchApplicationRequest, LaunchApplicationResponse};
use tonic::Status;

use crate::launch::{ContainerFeature, DisplayScaling, LaunchRequest, Launcher};
use crate::state::GarconState;

/// In-band reason when the launch worker itself fails (a panic in the blocking task).
const INTERNAL_FAILURE: &str = "Failure in execution of application";

pub async fn launch_application(
    state: &Arc<GarconState>,
    request: LaunchApplicationRequest,
) -> Result<LaunchApplicationResponse, Status> {
    // garcon's own environment is fixed after startup; reading it per call is cheap.
    let launcher = Launcher::from_process(!state.no_startup_notify);
    launch_application_with(launcher, request).await
}

/// [`launch_application`] with an explicit launcher (directories, environment, startup notify).
pub async fn launch_application_with(
    launcher: Launcher,
    request: LaunchApplicationRequest,
) -> Result<LaunchApplicationResponse, Status> {
    let request = LaunchRequest {
        desktop_file_id: request.desktop_file_id,
        files: request.files,
        display_scaling: DisplayScaling::from_wire(request.display_scaling),
        features: request
            .container_features
            .into_iter()
            .map(ContainerFeature::from_wire)
            .collect(),
    };
    let id = request.desktop_file_id.clone();
    let result = tokio::task::spawn_blocking(move || launcher.launch(&request)).await;
    let failure = |reason: &str| LaunchApplicationResponse {
        success: false,
        failure_reason: reason.to_owned(),
    };
    match result {
        Ok(Ok(_)) => Ok(LaunchApplicationResponse {
            success: true,
            failure_reason: String::new(),
        }),
        Ok(Err(e)) if e.is_invalid_argument() => Err(Status::invalid_argument(e.to_string())),
        Ok(Err(e)) => {
            tracing::warn!(id = %id, error = %e, "LaunchApplication failed");
            Ok(failure(e.failure_reason()))
        }
        Err(e) => {
            tracing::error!(id = %id, error = %e, "LaunchApplication worker failed");
            Ok(failure(INTERNAL_FAILURE))
        }
    }
}
