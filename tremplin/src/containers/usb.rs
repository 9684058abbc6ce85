//! AttachUsbToContainer / DetachUsbFromContainer (§8.15), uevents applied to attached
//! containers (§9.2) and the `instance-deleted` bookkeeping (§9.1).
//!
//! The USB manager is created when LXD starts (after `StartLxd`), from `--sysfs-root`; on a
//! machine without an xHCI controller there is none and both RPCs answer `FAILED`
//! "USB manager not ready". Uevents come from the kernel netlink socket, or from the unix
//! datagram socket `--uevent-socket PATH` (tests: send raw kernel-format messages to it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crostini_lxd::{Client, LxdError};
use crostini_proto::vm_tools::tremplin as pb;

use super::{check_container_name, wait_op};
use crate::daemon::Daemon;
use crate::usb::{
    parse_uevent, record, release_container, remove_entries, uevent::MAX_UEVENT_SIZE, DeviceAction,
    KnownDevice, UeventSource, UeventSourceKind, UsbManager,
};

/// §8.15 step 1.
pub const USB_NOT_READY: &str = "USB manager not ready";

fn attach_reply(ok: bool, reason: impl Into<String>) -> pb::AttachUsbToContainerResponse {
    use pb::attach_usb_to_container_response::Status;
    pb::AttachUsbToContainerResponse {
        status: if ok { Status::Ok } else { Status::Failed } as i32,
        failure_reason: reason.into(),
    }
}

fn detach_reply(ok: bool, reason: impl Into<String>) -> pb::DetachUsbFromContainerResponse {
    use pb::detach_usb_from_container_response::Status;
    pb::DetachUsbFromContainerResponse {
        status: if ok { Status::Ok } else { Status::Failed } as i32,
        failure_reason: reason.into(),
    }
}

/// Removes the device entries of `names` from `name`; a container that no longer exists has
/// nothing left to remove (its `instance-deleted` event may not have been handled yet).
async fn remove_devices(client: &Client, name: &str, names: &[String]) -> Result<(), LxdError> {
    match edit_devices(client, name, |d| remove_entries(d, names.iter())).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// GETs `name`, edits its devices with `edit`, PUTs with the ETag and waits.
async fn edit_devices(
    client: &Client,
    name: &str,
    edit: impl FnOnce(&mut crostini_lxd::types::Devices),
) -> Result<(), LxdError> {
    let (instance, etag) = client.instance(name).await?;
    let mut put = instance.writable();
    edit(&mut put.devices);
    let op = client.update_instance(name, &put, etag.as_deref()).await?;
    wait_op(client, &op).await?;
    Ok(())
}

impl Daemon {
    /// The USB manager, once LXD started on a machine with an xHCI controller.
    pub fn usb_manager(&self) -> Option<Arc<UsbManager>> {
        self.usb.get().cloned()
    }

    /// Manager and LXD client, or "not ready".
    fn usb_ready(&self) -> Option<(Arc<UsbManager>, Client)> {
        Some((self.usb_manager()?, self.lxd()?))
    }

    pub async fn attach_usb_to_container(
        &self,
        request: pb::AttachUsbToContainerRequest,
    ) -> pb::AttachUsbToContainerResponse {
        let Some((usb, client)) = self.usb_ready() else {
            return attach_reply(false, USB_NOT_READY);
        };
        let idx = match usb.check_port(request.port_num) {
            Ok(i) => i,
            Err(e) => return attach_reply(false, e.to_string()),
        };
        let name = request.container_name;
        if let Err(e) = check_container_name(&name) {
            return attach_reply(false, format!("Failed to get container {name:?}: {e}"));
        }
        if let Err(e) = client.instance(&name).await {
            return attach_reply(false, format!("Failed to get container {name}: {e}"));
        }
        let mut ports = usb.lock().await;
        let port = &mut ports[idx];
        if port.attached {
            let old = port.container_name.clone();
            let names: Vec<String> = port.devices.keys().cloned().collect();
            if let Err(e) = remove_devices(&client, &old, &names).await {
                return attach_reply(
                    false,
                    format!(
                        "Failed to detach port {} from container {old}: {e}",
                        request.port_num
                    ),
                );
            }
        }
        port.attached = true;
        port.container_name = name.clone();
        let devices: BTreeMap<String, KnownDevice> = port.devices.clone();
        if let Err(e) = edit_devices(&client, &name, |d| {
            usb.add_entries(d, &devices);
        })
        .await
        {
            return attach_reply(
                false,
                format!("Failed to add USB devices to container {name}: {e}"),
            );
        }
        tracing::info!(
            "USB port {} attached to {name} ({} devices)",
            request.port_num,
            devices.len()
        );
        attach_reply(true, "")
    }

    pub async fn detach_usb_from_container(
        &self,
        request: pb::DetachUsbFromContainerRequest,
    ) -> pb::DetachUsbFromContainerResponse {
        let Some((usb, client)) = self.usb_ready() else {
            return detach_reply(false, USB_NOT_READY);
        };
        let idx = match usb.check_port(request.port_num) {
            Ok(i) => i,
            Err(e) => return detach_reply(false, e.to_string()),
        };
        let mut ports = usb.lock().await;
        let port = &mut ports[idx];
        if port.attached {
            let name = port.container_name.clone();
            let names: Vec<String> = port.devices.keys().cloned().collect();
            if let Err(e) = remove_devices(&client, &name, &names).await {
                return detach_reply(
                    false,
                    format!("Failed to remove USB devices from container {name}: {e}"),
                );
            }
            tracing::info!("USB port {} detached from {name}", request.port_num);
        }
        port.attached = false;
        port.container_name.clear();
        detach_reply(true, "")
    }

    /// §9.1 `instance-deleted`: ports attached to `name` become unattached.
    pub async fn usb_container_deleted(&self, name: &str) {
        if let Some(usb) = self.usb_manager() {
            let released = release_container(&mut usb.lock().await, name);
            if !released.is_empty() {
                tracing::info!("container {name} deleted; USB ports {released:?} unattached");
            }
        }
    }

    /// Applies one raw uevent (§9.2): updates an attached container, then the port table.
    pub async fn handle_uevent(&self, raw: &[u8]) {
        let Some(usb) = self.usb_manager() else {
            return; // [deviation] no manager: ignore.
        };
        let Some(event) = usb.classify(&parse_uevent(raw)) else {
            return;
        };
        let mut ports = usb.lock().await;
        let idx = (event.port - 1) as usize;
        if ports[idx].attached {
            let name = ports[idx].container_name.clone();
            match self.lxd() {
                Some(client) => {
                    let one = BTreeMap::from([(event.devname.clone(), event.device.clone())]);
                    let result = edit_devices(&client, &name, |d| match event.action {
                        DeviceAction::Add => {
                            usb.add_entries(d, &one);
                        }
                        DeviceAction::Remove => remove_entries(d, one.keys()),
                    })
                    .await;
                    if let Err(e) = result {
                        tracing::warn!(
                            "USB device {} ({:?}) on port {}: cannot update container {name}: {e}",
                            event.devname,
                            event.action,
                            event.port
                        );
                    }
                }
                None => tracing::warn!(
                    "USB device {} on port {}: LXD is not running, container {name} not updated",
                    event.devname,
                    event.port
                ),
            }
        }
        record(&mut ports, &event);
        tracing::debug!(
            "USB {:?} {} on port {}",
            event.action,
            event.devname,
            event.port
        );
    }

    /// Creates the USB manager (once) and starts the uevent reader; called when LXD starts.
    pub(crate) fn start_usb(self: &Arc<Self>) {
        if self.usb.get().is_none() {
            match UsbManager::init(&self.config.sysfs_root, &self.config.paths.dev_dir) {
                Ok(Some(m)) => {
                    tracing::info!(
                        "USB manager: xHCI controller {} with {} USB2 + {} USB3 ports",
                        m.controller.path,
                        m.controller.usb2.ports,
                        m.controller.usb3.ports
                    );
                    let _ = self.usb.set(Arc::new(m));
                }
                Ok(None) => {
                    tracing::info!(
                        "no xHCI controller under {}; USB attach is unavailable",
                        self.config.sysfs_root.display()
                    );
                    return;
                }
                Err(e) => {
                    tracing::error!("USB manager initialization failed: {e}");
                    return;
                }
            }
        }
        let kind = match &self.config.uevent_socket {
            Some(path) => UeventSourceKind::UnixDatagram(path.clone()),
            None => UeventSourceKind::Netlink,
        };
        let daemon = self.clone();
        self.keep_task(tokio::spawn(async move { daemon.uevent_loop(kind).await }));
    }

    /// Reads uevents forever; a failing socket is logged and reopened (§9.2 [deviation]).
    async fn uevent_loop(self: Arc<Self>, kind: UeventSourceKind) {
        let mut buf = vec![0u8; MAX_UEVENT_SIZE];
        loop {
            let mut source = match UeventSource::open(&kind) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot open the uevent socket ({kind:?}): {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                match source.recv(&mut buf).await {
                    Ok(n) => self.handle_uevent(&buf[..n]).await,
                    Err(e) => {
                        tracing::error!("uevent socket receive failed: {e}; reopening");
                        break;
                    }
                }
            }
            drop(source);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::listener::HostListener;
    use crate::usb::sysfs::{write_fixture, XHCI_CLASS};
    use crate::usb::uevent::encode_uevent;

    fn daemon(sysfs: &std::path::Path) -> Arc<Daemon> {
        let config = Config::from_args([
            "tremplin",
            "-lxd_subnet",
            "10.0.0.1/24",
            "--listen",
            "tcp://127.0.0.1:0",
            "--host-address",
            "tcp://127.0.0.1:1",
            "--crash-address",
            "none",
            &format!("--sysfs-root={}", sysfs.display()),
        ])
        .expect("config");
        let listener = HostListener::new(&config.host_address, None).expect("listener");
        Daemon::new(config, None, listener)
    }

    fn add_event(devname: &str) -> Vec<u8> {
        let path = "/devices/pci0000:00/0000:00:14.0/usb2/2-1";
        encode_uevent(
            &format!("add@{path}"),
            &[
                ("ACTION", "add"),
                ("DEVPATH", path),
                ("SUBSYSTEM", "usb"),
                ("DEVNAME", devname),
            ],
        )
    }

    #[tokio::test]
    async fn without_manager_or_lxd_rpcs_answer_not_ready_and_uevents_are_ignored() {
        let empty = tempfile::tempdir().expect("tempdir");
        let d = daemon(empty.path());
        d.start_usb();
        assert!(d.usb_manager().is_none(), "no xHCI controller → no manager");
        d.handle_uevent(&add_event("bus/usb/002/002")).await; // must not panic
        let a = d
            .attach_usb_to_container(pb::AttachUsbToContainerRequest {
                container_name: "penguin".into(),
                port_num: 1,
            })
            .await;
        assert_eq!(
            (a.status, a.failure_reason.as_str()),
            (
                pb::attach_usb_to_container_response::Status::Failed as i32,
                USB_NOT_READY
            )
        );

        // A manager but no LXD: still not ready (§8.15 step 1).
        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), XHCI_CLASS, &[(1, "0002", 2), (2, "0003", 2)]).expect("fixture");
        let d = daemon(dir.path());
        d.start_usb();
        d.stop_background();
        assert_eq!(d.usb_manager().expect("manager").port_count(), 4);
        let r = d
            .detach_usb_from_container(pb::DetachUsbFromContainerRequest { port_num: 9 })
            .await;
        assert_eq!(r.failure_reason, USB_NOT_READY);
    }

    #[tokio::test]
    async fn uevents_are_recorded_and_deletion_releases_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), XHCI_CLASS, &[(1, "0002", 2), (2, "0003", 2)]).expect("fixture");
        let d = daemon(dir.path());
        d.start_usb();
        d.stop_background();
        let usb = d.usb_manager().expect("manager");
        d.handle_uevent(&add_event("bus/usb/002/002")).await;
        let port = usb.port(3).await.expect("port 3 = USB3 port 1");
        assert!(port.devices.contains_key("bus/usb/002/002"), "{port:?}");
        {
            let mut ports = usb.lock().await;
            ports[2].attached = true;
            ports[2].container_name = "penguin".into();
        }
        d.usb_container_deleted("other").await;
        assert!(usb.port(3).await.expect("port").attached);
        d.usb_container_deleted("penguin").await;
        assert!(!usb.port(3).await.expect("port").attached);
    }
}
