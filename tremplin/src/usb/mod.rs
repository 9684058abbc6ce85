//! USB manager (§9.2): the xHCI controller's ports, which container each port is attached to
//! and the device nodes known on each port, fed by kernel uevents.
//!
//! This module is pure bookkeeping plus device-entry construction; the LXD side (attach,
//! detach, applying uevents to containers) lives in `containers::usb`.

pub mod sysfs;
pub mod uevent;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crostini_lxd::types::Devices;

pub use sysfs::{Controller, RootHub, SysfsError};
pub use uevent::{parse_uevent, Uevent, UeventSource, UeventSourceKind};

/// Port number outside `1..=N` (§8.15 step 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid port number {0}")]
pub struct InvalidPort(pub i64);

/// Uevent subsystems that carry USB device nodes.
const SUBSYSTEMS: [&str; 3] = ["block", "tty", "usb"];

/// What a device node uevent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    Add,
    Remove,
}

/// A device node seen on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDevice {
    /// `block`, `tty` or `usb`.
    pub subsystem: String,
    /// `MAJOR`/`MINOR` of the uevent, used when the node cannot be stat'ed.
    pub numbers: Option<(u64, u64)>,
}

/// A uevent that concerns a port of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEvent {
    /// Logical port (1-based).
    pub port: u32,
    pub action: DeviceAction,
    /// `DEVNAME`, relative to /dev (e.g. `bus/usb/001/002`).
    pub devname: String,
    pub device: KnownDevice,
}

/// One logical port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Port {
    pub attached: bool,
    pub container_name: String,
    /// Device names (relative to /dev) → what is known about them.
    pub devices: BTreeMap<String, KnownDevice>,
}

/// The controller and its port table.
#[derive(Debug)]
pub struct UsbManager {
    pub controller: Controller,
    dev_dir: PathBuf,
    /// The USB lock (§12): held across the LXD calls of attach/detach/uevents.
    ports: tokio::sync::Mutex<Vec<Port>>,
}

impl UsbManager {
    /// §9.2 init from `<sysfs_root>`. `Ok(None)`: no xHCI controller.
    pub fn init(sysfs_root: &Path, dev_dir: &Path) -> Result<Option<UsbManager>, SysfsError> {
        Ok(sysfs::find_controller(sysfs_root)?.map(|c| UsbManager::new(c, dev_dir)))
    }

    pub fn new(controller: Controller, dev_dir: &Path) -> UsbManager {
        let n = (controller.usb2.ports + controller.usb3.ports) as usize;
        UsbManager {
            controller,
            dev_dir: dev_dir.to_path_buf(),
            ports: tokio::sync::Mutex::new(vec![Port::default(); n]),
        }
    }

    /// N = USB2 ports + USB3 ports.
    pub fn port_count(&self) -> u32 {
        self.controller.usb2.ports + self.controller.usb3.ports
    }

    /// `Ok(index)` for a port in `1..=N`.
    pub fn check_port(&self, port: impl Into<i64>) -> Result<usize, InvalidPort> {
        let port: i64 = port.into();
        if port >= 1 && port <= i64::from(self.port_count()) {
            Ok((port - 1) as usize)
        } else {
            Err(InvalidPort(port))
        }
    }

    /// Takes the USB lock.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, Vec<Port>> {
        self.ports.lock().await
    }

    /// Snapshot of one port (tests, debugging).
    pub async fn port(&self, port: u32) -> Option<Port> {
        let idx = self.check_port(port).ok()?;
        Some(self.ports.lock().await[idx].clone())
    }

    /// Logical port of a `DEVPATH`: `^/<controller>/usb\d/(\d)-(\d)` with the bus one of the
    /// two root hubs and the port within that hub's range.
    pub fn port_for_devpath(&self, devpath: &str) -> Option<u32> {
        let rest = devpath
            .strip_prefix('/')?
            .strip_prefix(self.controller.path.as_str())?
            .strip_prefix("/usb")?
            .as_bytes();
        // \d/(\d)-(\d)
        if rest.len() < 5
            || !rest[0].is_ascii_digit()
            || rest[1] != b'/'
            || !rest[2].is_ascii_digit()
            || rest[3] != b'-'
            || !rest[4].is_ascii_digit()
        {
            return None;
        }
        let bus = u32::from(rest[2] - b'0');
        let port = u32::from(rest[4] - b'0');
        let (hub, offset) = if bus == self.controller.usb2.bus {
            (self.controller.usb2, 0)
        } else if bus == self.controller.usb3.bus {
            (self.controller.usb3, self.controller.usb2.ports)
        } else {
            return None;
        };
        (port >= 1 && port <= hub.ports).then_some(offset + port)
    }

    /// The port event a uevent means, if any (§9.2 filter).
    pub fn classify(&self, event: &Uevent) -> Option<PortEvent> {
        let subsystem = event.get("SUBSYSTEM")?;
        if !SUBSYSTEMS.contains(&subsystem) {
            return None;
        }
        let action = match event.get("ACTION")? {
            "add" => DeviceAction::Add,
            "remove" => DeviceAction::Remove,
            _ => return None,
        };
        let devname = event.get("DEVNAME")?;
        if devname.is_empty() {
            return None;
        }
        let devpath = event.get("DEVPATH")?;
        if !devpath.starts_with(&format!("/{}/usb", self.controller.path)) {
            return None;
        }
        let port = self.port_for_devpath(devpath)?;
        let numbers = match (event.get("MAJOR"), event.get("MINOR")) {
            (Some(a), Some(b)) => a.parse().ok().zip(b.parse().ok()),
            _ => None,
        };
        Some(PortEvent {
            port,
            action,
            devname: devname.trim_start_matches('/').to_string(),
            device: KnownDevice {
                subsystem: subsystem.to_string(),
                numbers,
            },
        })
    }

    /// The LXD device entry of a node: key and `path` `/dev/<devname>`, `major`/`minor` of the
    /// node under the device directory (else the uevent's), `mode` `0666`, type `unix-block`
    /// for block devices else `unix-char`. `None` when the numbers are unknown.
    pub fn device_entry(
        &self,
        devname: &str,
        known: &KnownDevice,
    ) -> Option<(String, BTreeMap<String, String>)> {
        let node = self.dev_dir.join(devname);
        let stat = std::fs::metadata(&node).ok().and_then(|m| {
            let ft = m.file_type();
            if ft.is_char_device() || ft.is_block_device() {
                let rdev = m.rdev();
                Some((
                    (
                        u64::from(nix::sys::stat::major(rdev) as u32),
                        u64::from(nix::sys::stat::minor(rdev) as u32),
                    ),
                    ft.is_block_device(),
                ))
            } else {
                None
            }
        });
        let ((major, minor), block) = match stat {
            Some(found) => found,
            None => (known.numbers?, known.subsystem == "block"),
        };
        let path = format!("/dev/{devname}");
        let kind = if block { "unix-block" } else { "unix-char" };
        let entry = BTreeMap::from([
            ("path".to_string(), path.clone()),
            ("major".to_string(), major.to_string()),
            ("minor".to_string(), minor.to_string()),
            ("mode".to_string(), "0666".to_string()),
            ("type".to_string(), kind.to_string()),
        ]);
        Some((path, entry))
    }

    /// Adds the entries of `devices` to an instance's device map; returns how many were added
    /// (devices with unknown numbers are skipped with a warning).
    pub fn add_entries(&self, map: &mut Devices, devices: &BTreeMap<String, KnownDevice>) -> usize {
        let mut added = 0;
        for (name, known) in devices {
            match self.device_entry(name, known) {
                Some((key, entry)) => {
                    map.insert(key, entry);
                    added += 1;
                }
                None => tracing::warn!(
                    "USB device {name}: no device node under {} and no numbers in its uevent; \
                     not passed to the container",
                    self.dev_dir.display()
                ),
            }
        }
        added
    }
}

/// Removes the keys `/dev/<name>` of `names` from an instance's device map.
pub fn remove_entries<'a>(map: &mut Devices, names: impl IntoIterator<Item = &'a String>) {
    for name in names {
        map.remove(&format!("/dev/{name}"));
    }
}

/// Records a port event in the table (§9.2): `add` → known; `remove` → forgotten, and a port
/// with no known device left becomes unattached.
pub fn record(ports: &mut [Port], event: &PortEvent) {
    let Some(port) = ports.get_mut((event.port as usize).wrapping_sub(1)) else {
        return;
    };
    match event.action {
        DeviceAction::Add => {
            port.devices
                .insert(event.devname.clone(), event.device.clone());
        }
        DeviceAction::Remove => {
            port.devices.remove(&event.devname);
            if port.devices.is_empty() {
                port.attached = false;
                port.container_name.clear();
            }
        }
    }
}

/// §9.1 `instance-deleted`: every port attached to `name` becomes unattached. Returns the
/// logical ports released.
pub fn release_container(ports: &mut [Port], name: &str) -> Vec<u32> {
    let mut released = Vec::new();
    for (i, port) in ports.iter_mut().enumerate() {
        if port.attached && port.container_name == name {
            port.attached = false;
            port.container_name.clear();
            released.push(i as u32 + 1);
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usb::uevent::encode_uevent;

    const CTRL: &str = "devices/pci0000:00/0000:00:14.0";

    fn manager(dev_dir: &Path) -> UsbManager {
        UsbManager::new(
            Controller {
                path: CTRL.into(),
                usb2: RootHub { bus: 1, ports: 2 },
                usb3: RootHub { bus: 2, ports: 2 },
            },
            dev_dir,
        )
    }

    fn uevent(action: &str, subsystem: &str, devpath: &str, devname: &str) -> Uevent {
        parse_uevent(&encode_uevent(
            &format!("{action}@{devpath}"),
            &[
                ("ACTION", action),
                ("DEVPATH", devpath),
                ("SUBSYSTEM", subsystem),
                ("DEVNAME", devname),
                ("MAJOR", "189"),
                ("MINOR", "1"),
            ],
        ))
    }

    #[test]
    fn init_from_fixture_gives_four_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        sysfs::write_fixture(
            dir.path(),
            sysfs::XHCI_CLASS,
            &[(1, "0002", 2), (2, "0003", 2)],
        )
        .expect("fixture");
        let m = UsbManager::init(dir.path(), Path::new("/dev"))
            .expect("init")
            .expect("manager");
        assert_eq!(m.port_count(), 4);
        assert_eq!(m.controller.path, CTRL);
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(UsbManager::init(empty.path(), Path::new("/dev"))
            .expect("no controller is not an error")
            .is_none());
    }

    #[test]
    fn port_range_errors() {
        let m = manager(Path::new("/dev"));
        assert_eq!(m.check_port(1), Ok(0));
        assert_eq!(m.check_port(4i32), Ok(3));
        for bad in [0i64, 5, 9, -1, i64::from(u32::MAX)] {
            let e = m.check_port(bad).expect_err("out of range");
            assert_eq!(e.to_string(), format!("Invalid port number {bad}"));
        }
    }

    #[test]
    fn devpath_maps_to_logical_ports() {
        let m = manager(Path::new("/dev"));
        let p = |s: &str| m.port_for_devpath(s);
        assert_eq!(p(&format!("/{CTRL}/usb1/1-1")), Some(1));
        assert_eq!(p(&format!("/{CTRL}/usb1/1-2/1-2:1.0/tty/ttyUSB0")), Some(2));
        assert_eq!(p(&format!("/{CTRL}/usb2/2-1")), Some(3));
        assert_eq!(p(&format!("/{CTRL}/usb2/2-2/2-2:1.0/host0")), Some(4));
        assert_eq!(
            p(&format!("/{CTRL}/usb2/2-3")),
            None,
            "port beyond maxchild"
        );
        assert_eq!(p(&format!("/{CTRL}/usb3/3-1")), None, "unknown bus");
        assert_eq!(p(&format!("/{CTRL}/usb1/1-0")), None, "port 0");
        assert_eq!(p(&format!("/{CTRL}/usb1")), None, "the root hub itself");
        assert_eq!(p("/devices/pci0000:00/0000:00:15.0/usb1/1-1"), None);
        assert_eq!(p(&format!("{CTRL}/usb1/1-1")), None, "needs leading /");
    }

    #[test]
    fn uevents_are_filtered_and_classified() {
        let m = manager(Path::new("/dev"));
        let path = format!("/{CTRL}/usb1/1-2");
        let e = m
            .classify(&uevent("add", "usb", &path, "bus/usb/001/002"))
            .expect("relevant");
        assert_eq!(e.port, 2);
        assert_eq!(e.action, DeviceAction::Add);
        assert_eq!(e.devname, "bus/usb/001/002");
        assert_eq!(e.device.numbers, Some((189, 1)));
        let blk = m
            .classify(&uevent(
                "remove",
                "block",
                &format!("/{CTRL}/usb2/2-1/x/block/sda"),
                "sda",
            ))
            .expect("block");
        assert_eq!((blk.port, blk.action), (3, DeviceAction::Remove));
        assert!(m
            .classify(&uevent("add", "input", &path, "input/event3"))
            .is_none());
        assert!(m.classify(&uevent("bind", "usb", &path, "x")).is_none());
        assert!(m.classify(&uevent("add", "usb", &path, "")).is_none());
        assert!(m
            .classify(&uevent("add", "usb", "/devices/virtual/tty/tty1", "tty1"))
            .is_none());
        let mut missing = uevent("add", "usb", &path, "x");
        missing.vars.remove("DEVPATH");
        assert!(m.classify(&missing).is_none());
    }

    #[test]
    fn recording_and_release() {
        let m = manager(Path::new("/dev"));
        let mut ports = vec![Port::default(); 4];
        let add = m
            .classify(&uevent(
                "add",
                "usb",
                &format!("/{CTRL}/usb1/1-1"),
                "bus/usb/001/002",
            ))
            .expect("add");
        record(&mut ports, &add);
        ports[0].attached = true;
        ports[0].container_name = "penguin".into();
        ports[2].attached = true;
        ports[2].container_name = "other".into();
        assert!(ports[0].devices.contains_key("bus/usb/001/002"));
        assert_eq!(release_container(&mut ports, "penguin"), vec![1]);
        assert!(!ports[0].attached);
        assert!(ports[2].attached, "other containers keep their ports");
        assert!(
            ports[0].devices.contains_key("bus/usb/001/002"),
            "devices stay known"
        );
        ports[0].attached = true;
        ports[0].container_name = "penguin".into();
        let remove = PortEvent {
            action: DeviceAction::Remove,
            ..add
        };
        record(&mut ports, &remove);
        assert!(ports[0].devices.is_empty());
        assert!(!ports[0].attached, "last device gone → unattached");
    }

    #[test]
    fn device_entries_use_the_node_numbers() {
        // /dev/null is 1,3 everywhere.
        let m = manager(Path::new("/dev"));
        let known = KnownDevice {
            subsystem: "usb".into(),
            numbers: Some((189, 1)),
        };
        let (key, entry) = m.device_entry("null", &known).expect("entry");
        assert_eq!(key, "/dev/null");
        assert_eq!(entry["path"], "/dev/null");
        assert_eq!(
            (entry["major"].as_str(), entry["minor"].as_str()),
            ("1", "3")
        );
        assert_eq!(entry["mode"], "0666");
        assert_eq!(entry["type"], "unix-char");
        // No node: the uevent's numbers, block type for the block subsystem.
        let blk = KnownDevice {
            subsystem: "block".into(),
            numbers: Some((8, 0)),
        };
        let (key, entry) = m.device_entry("no-such-node-sdz", &blk).expect("entry");
        assert_eq!(key, "/dev/no-such-node-sdz");
        assert_eq!(entry["type"], "unix-block");
        assert_eq!(entry["major"], "8");
        let unknown = KnownDevice {
            subsystem: "tty".into(),
            numbers: None,
        };
        assert!(m.device_entry("no-such-node", &unknown).is_none());

        let mut map = Devices::new();
        let devices = BTreeMap::from([
            ("null".to_string(), known),
            ("no-such-node".to_string(), unknown),
        ]);
        assert_eq!(m.add_entries(&mut map, &devices), 1);
        assert!(map.contains_key("/dev/null"));
        remove_entries(&mut map, devices.keys());
        assert!(map.is_empty());
    }
}
