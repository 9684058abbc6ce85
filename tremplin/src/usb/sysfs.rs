//! xHCI controller discovery in sysfs (§9.2 init).

use std::path::{Path, PathBuf};

/// PCI class of an xHCI controller, as the `class` file spells it.
pub const XHCI_CLASS: &str = "0x0c0330\n";

/// A root hub (`usbN` under the controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootHub {
    /// N of `usbN`.
    pub bus: u32,
    /// `maxchild`.
    pub ports: u32,
}

/// The controller and its two root hubs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// Sysfs path relative to the sysfs root, without leading `/`, e.g.
    /// `devices/pci0000:00/0000:00:14.0`.
    pub path: String,
    pub usb2: RootHub,
    pub usb3: RootHub,
}

/// Why a found controller cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysfsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("controller path {path} is not under the sysfs root {root}")]
    OutsideRoot { path: PathBuf, root: PathBuf },
    #[error("unexpected root hub idProduct {value:?} in {path} (want 0002 or 0003)")]
    IdProduct { path: PathBuf, value: String },
    #[error("bad maxchild {value:?} in {path}")]
    MaxChild { path: PathBuf, value: String },
    #[error("xHCI controller {controller} lacks a {which} root hub")]
    MissingHub {
        controller: String,
        which: &'static str,
    },
}

fn read(path: &Path) -> Result<String, SysfsError> {
    std::fs::read_to_string(path).map_err(|e| SysfsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Scans `<root>/bus/pci/devices/*` (sorted) for the first xHCI controller. `Ok(None)`: no
/// controller (no USB manager).
pub fn find_controller(root: &Path) -> Result<Option<Controller>, SysfsError> {
    let devices = root.join("bus/pci/devices");
    let Ok(entries) = std::fs::read_dir(&devices) else {
        return Ok(None);
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let Some(found) = paths
        .into_iter()
        .find(|p| std::fs::read_to_string(p.join("class")).is_ok_and(|c| c == XHCI_CLASS))
    else {
        return Ok(None);
    };
    let canonical = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| SysfsError::Read {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let target = canonical(&found)?;
    let root_canonical = canonical(root)?;
    let relative = target
        .strip_prefix(&root_canonical)
        .map_err(|_| SysfsError::OutsideRoot {
            path: target.clone(),
            root: root_canonical.clone(),
        })?
        .to_string_lossy()
        .into_owned();
    let (mut usb2, mut usb3) = (None, None);
    let mut hubs: Vec<(u32, PathBuf)> = std::fs::read_dir(&target)
        .map_err(|e| SysfsError::Read {
            path: target.clone(),
            reason: e.to_string(),
        })?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bus = name.strip_prefix("usb")?.parse::<u32>().ok()?;
            Some((bus, e.path()))
        })
        .collect();
    hubs.sort();
    for (bus, dir) in hubs {
        let id_path = dir.join("idProduct");
        let id = read(&id_path)?;
        let max_path = dir.join("maxchild");
        let max = read(&max_path)?;
        let ports = max
            .trim()
            .parse::<u32>()
            .map_err(|_| SysfsError::MaxChild {
                path: max_path,
                value: max.clone(),
            })?;
        let hub = RootHub { bus, ports };
        match id.as_str() {
            "0002\n" => {
                usb2.get_or_insert(hub);
            }
            "0003\n" => {
                usb3.get_or_insert(hub);
            }
            _ => {
                return Err(SysfsError::IdProduct {
                    path: id_path,
                    value: id,
                })
            }
        }
    }
    let usb2 = usb2.ok_or_else(|| SysfsError::MissingHub {
        controller: relative.clone(),
        which: "USB2",
    })?;
    let usb3 = usb3.ok_or_else(|| SysfsError::MissingHub {
        controller: relative.clone(),
        which: "USB3",
    })?;
    Ok(Some(Controller {
        path: relative,
        usb2,
        usb3,
    }))
}

/// Test fixture: a sysfs tree with one PCI device of class `class` at
/// `devices/pci0000:00/0000:00:14.0`, linked from `bus/pci/devices/0000:00:14.0` (as in the
/// real layout), with root hubs `(bus, idProduct, maxchild)`. Also adds an unrelated PCI
/// device first in sort order.
pub fn write_fixture(root: &Path, class: &str, hubs: &[(u32, &str, u32)]) -> std::io::Result<()> {
    let bus_dir = root.join("bus/pci/devices");
    std::fs::create_dir_all(&bus_dir)?;
    let other = root.join("devices/pci0000:00/0000:00:02.0");
    std::fs::create_dir_all(&other)?;
    std::fs::write(other.join("class"), "0x030000\n")?;
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:00/0000:00:02.0",
        bus_dir.join("0000:00:02.0"),
    )?;
    let dev = root.join("devices/pci0000:00/0000:00:14.0");
    std::fs::create_dir_all(&dev)?;
    std::fs::write(dev.join("class"), class)?;
    std::os::unix::fs::symlink(
        "../../../devices/pci0000:00/0000:00:14.0",
        bus_dir.join("0000:00:14.0"),
    )?;
    for (bus, id, max) in hubs {
        let hub = dev.join(format!("usb{bus}"));
        std::fs::create_dir_all(&hub)?;
        std::fs::write(hub.join("idProduct"), format!("{id}\n"))?;
        std::fs::write(hub.join("maxchild"), format!("{max}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_controller_and_root_hubs() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), XHCI_CLASS, &[(1, "0002", 2), (2, "0003", 2)]).expect("fixture");
        let c = find_controller(dir.path()).expect("ok").expect("found");
        assert_eq!(c.path, "devices/pci0000:00/0000:00:14.0");
        assert_eq!(c.usb2, RootHub { bus: 1, ports: 2 });
        assert_eq!(c.usb3, RootHub { bus: 2, ports: 2 });
    }

    #[test]
    fn no_controller_means_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(find_controller(dir.path()), Ok(None), "no bus/pci at all");
        write_fixture(dir.path(), "0x0c0320\n", &[(1, "0002", 2), (2, "0003", 2)])
            .expect("fixture");
        assert_eq!(find_controller(dir.path()), Ok(None), "EHCI is not xHCI");
    }

    #[test]
    fn wrong_id_product_or_missing_hub_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), XHCI_CLASS, &[(1, "0002", 2), (2, "0001", 2)]).expect("fixture");
        let e = find_controller(dir.path()).expect_err("bad idProduct");
        assert!(
            matches!(e, SysfsError::IdProduct { ref value, .. } if value == "0001\n"),
            "{e}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), XHCI_CLASS, &[(1, "0002", 2)]).expect("fixture");
        let e = find_controller(dir.path()).expect_err("no USB3 hub");
        assert!(e.to_string().contains("USB3"), "{e}");

        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), XHCI_CLASS, &[(1, "0002", 2), (2, "0003", 0)]).expect("fixture");
        std::fs::write(
            dir.path()
                .join("devices/pci0000:00/0000:00:14.0/usb2/maxchild"),
            "two\n",
        )
        .expect("write");
        assert!(matches!(
            find_controller(dir.path()),
            Err(SysfsError::MaxChild { .. })
        ));
    }
}
