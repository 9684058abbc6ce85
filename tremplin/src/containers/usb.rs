//! AttachUsbToContainer / DetachUsbFromContainer (§8.15).
//!
//! The USB manager (xHCI discovery and uevent handling, §9.2) is not implemented: both RPCs
//! answer `FAILED` "USB manager not ready", which is the documented answer on a machine
//! without an xHCI controller (and before LXD runs).

use crostini_proto::vm_tools::tremplin as pb;

use crate::daemon::Daemon;

/// §8.15 step 1.
pub const USB_NOT_READY: &str = "USB manager not ready";

impl Daemon {
    pub async fn attach_usb_to_container(
        &self,
        _request: pb::AttachUsbToContainerRequest,
    ) -> pb::AttachUsbToContainerResponse {
        pb::AttachUsbToContainerResponse {
            status: pb::attach_usb_to_container_response::Status::Failed as i32,
            failure_reason: USB_NOT_READY.to_string(),
        }
    }

    pub async fn detach_usb_from_container(
        &self,
        _request: pb::DetachUsbFromContainerRequest,
    ) -> pb::DetachUsbFromContainerResponse {
        pb::DetachUsbFromContainerResponse {
            status: pb::detach_usb_from_container_response::Status::Failed as i32,
            failure_reason: USB_NOT_READY.to_string(),
        }
    }
}
