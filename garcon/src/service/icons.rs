//! GetIcon rpc translation (garcon-service §5.2): request -> [`IconService::get_icons`] ->
//! reply. Always gRPC OK; IDs without an icon are simply absent. The work runs on a blocking
//! thread; [`IconService`] bounds the decodes/renders among those threads (render pool) and
//! never holds its cache lock across I/O, so a hostile icon cannot stall other calls.

use std::sync::Arc;

use crostini_proto::vm_tools::container::{desktop_icon, DesktopIcon, IconRequest, IconResponse};
use tokio::sync::Semaphore;
use tonic::Status;

use crate::icons::IconService;
use crate::state::GarconState;

/// GetIcon calls on blocking threads at once (decodes inside are bounded separately, to
/// [`crate::icons::pool::RENDER_PERMITS`]; cache hits need no permit, so more calls than permits
/// keeps warm answers flowing while renders run).
pub const MAX_GET_ICON_CALLS: usize = 8;
static GET_ICON_CALLS: Semaphore = Semaphore::const_new(MAX_GET_ICON_CALLS);

pub async fn get_icon(
    state: &Arc<GarconState>,
    request: IconRequest,
) -> Result<IconResponse, Status> {
    // One IconService (and its caches) per garcon process, built from the process environment.
    get_icon_with(state.extension::<IconService>(), request).await
}

/// [`get_icon`] against an explicit icon service.
pub async fn get_icon_with(
    icons: Arc<IconService>,
    request: IconRequest,
) -> Result<IconResponse, Status> {
    let IconRequest {
        desktop_file_ids,
        icon_size,
        scale,
    } = request;
    // Waiting here is async: a burst of calls queues on the executor instead of parking
    // hundreds of blocking threads (the pool other blocking work shares) on render permits.
    let Ok(_slot) = GET_ICON_CALLS.acquire().await else {
        unreachable!("GET_ICON_CALLS is never closed")
    };
    let found =
        tokio::task::spawn_blocking(move || icons.get_icons(&desktop_file_ids, icon_size, scale))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "GetIcon worker failed; answering with no icons");
                Vec::new()
            });
    let desktop_icons = found
        .into_iter()
        .map(|icon| DesktopIcon {
            desktop_file_id: icon.desktop_file_id,
            icon: Arc::try_unwrap(icon.png).unwrap_or_else(|shared| (*shared).clone()),
            format: desktop_icon::Format::Png as i32,
        })
        .collect();
    Ok(IconResponse { desktop_icons })
}
