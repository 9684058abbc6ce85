//! UpdateContainerDevices (§8.16): microphone enable/disable; any other key is
//! `NO_SUCH_VM_DEVICE`.

use std::collections::HashMap;

use crostini_proto::vm_tools::tremplin as pb;
use pb::update_container_devices_response::{Status, UpdateResult};

use super::{check_container_name, wait_op};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::devices::{is_capture_device, scan_char_devices, CharDevice};

fn reply(
    status: Status,
    reason: impl Into<String>,
    results: HashMap<String, i32>,
) -> pb::UpdateContainerDevicesResponse {
    pb::UpdateContainerDevicesResponse {
        status: status as i32,
        failure_reason: reason.into(),
        results,
    }
}

/// Applies the requested updates to an instance's device map (pure). Returns the per-key
/// results.
pub fn apply_updates(
    devices: &mut crostini_lxd::types::Devices,
    updates: &HashMap<String, i32>,
    capture_devices: &[CharDevice],
) -> HashMap<String, i32> {
    let mut results = HashMap::new();
    for (key, action) in updates {
        let result = if key == "microphone" {
            let changed = if *action == pb::VmDeviceAction::Enable as i32 {
                for d in capture_devices {
                    let (k, e) = d.lxd_entry();
                    devices.insert(k, e);
                }
                capture_devices.len()
            } else if *action == pb::VmDeviceAction::Disable as i32 {
                let before = devices.len();
                devices.retain(|k, _| !is_capture_device(k));
                before - devices.len()
            } else {
                0
            };
            if changed > 0 {
                UpdateResult::Success
            } else {
                UpdateResult::NoSuchVmDevice
            }
        } else {
            UpdateResult::NoSuchVmDevice
        };
        results.insert(key.clone(), result as i32);
    }
    results
}

impl Daemon {
    pub async fn update_container_devices(
        &self,
        request: pb::UpdateContainerDevicesRequest,
    ) -> pb::UpdateContainerDevicesResponse {
        let name = request.container_name;
        if check_container_name(&name).is_err() {
            return reply(Status::NoSuchContainer, "", HashMap::new());
        }
        let Some(client) = self.lxd() else {
            return reply(Status::Failed, LXD_NOT_RUNNING, HashMap::new());
        };
        let (instance, etag) = match client.instance(&name).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => {
                return reply(Status::NoSuchContainer, "", HashMap::new())
            }
            Err(e) => {
                return reply(
                    Status::Failed,
                    format!("failed to find container: {e}"),
                    HashMap::new(),
                )
            }
        };
        let mut put = instance.writable();
        let capture = scan_char_devices(&self.config.paths.dev_dir, is_capture_device);
        let mut results = apply_updates(&mut put.devices, &request.updates, &capture);
        let updated = async {
            let op = client.update_instance(&name, &put, etag.as_deref()).await?;
            wait_op(&client, &op).await
        }
        .await;
        match updated {
            Ok(_) => reply(Status::Ok, "", results),
            Err(e) => {
                for v in results.values_mut() {
                    if *v == UpdateResult::Success as i32 {
                        *v = UpdateResult::UpdateFailed as i32;
                    }
                }
                reply(
                    Status::Failed,
                    format!("failed to update container devices: {e}"),
                    results,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mic() -> CharDevice {
        CharDevice {
            relative: "snd/pcmC0D0c".into(),
            major: 116,
            minor: 24,
        }
    }

    #[test]
    fn microphone_enable_disable_and_unknown_keys() {
        let mut devices = crostini_lxd::types::Devices::new();
        let updates: HashMap<String, i32> = [
            ("microphone".to_string(), pb::VmDeviceAction::Enable as i32),
            ("camera".to_string(), pb::VmDeviceAction::Enable as i32),
            ("bogus".to_string(), pb::VmDeviceAction::Disable as i32),
        ]
        .into();
        let r = apply_updates(&mut devices, &updates, &[mic()]);
        assert_eq!(r["microphone"], UpdateResult::Success as i32);
        assert_eq!(r["camera"], UpdateResult::NoSuchVmDevice as i32);
        assert_eq!(r["bogus"], UpdateResult::NoSuchVmDevice as i32);
        assert!(devices.contains_key("/dev/snd/pcmC0D0c"));
        let disable: HashMap<String, i32> =
            [("microphone".to_string(), pb::VmDeviceAction::Disable as i32)].into();
        assert_eq!(
            apply_updates(&mut devices, &disable, &[])["microphone"],
            UpdateResult::Success as i32
        );
        assert!(devices.is_empty());
        assert_eq!(
            apply_updates(&mut devices, &disable, &[])["microphone"],
            UpdateResult::NoSuchVmDevice as i32,
            "nothing to remove"
        );
        let enable_none: HashMap<String, i32> = [("microphone".to_string(), 0)].into();
        assert_eq!(
            apply_updates(&mut devices, &enable_none, &[])["microphone"],
            UpdateResult::NoSuchVmDevice as i32,
            "no capture devices on this machine"
        );
    }
}
