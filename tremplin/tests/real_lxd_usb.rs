//! USB attach/detach (§8.15), uevents on attached containers (§9.2) and `instance-deleted`
//! (§9.1) against the real LXD. The xHCI controller is a sysfs fixture (`--sysfs-root`), the
//! USB device node a `mknod` under a temp `--dev-dir`, and uevents are sent in kernel format
//! to `--uevent-socket`. Run as root: `cargo test -p tremplin --test real_lxd_usb`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crostini_proto::vm_tools::tremplin as pb;
use tremplin::usb::sysfs::{write_fixture, XHCI_CLASS};
use tremplin::usb::uevent::encode_uevent;
use tremplin::usb::UsbManager;

const CTRL: &str = "devices/pci0000:00/0000:00:14.0";
const NODE: &str = "bus/usb/001/002";

fn send_uevent(socket: &Path, action: &str, subsystem: &str, devpath: &str, devname: &str) {
    let (major, minor) = if subsystem == "tty" {
        ("188", "0")
    } else {
        ("189", "1")
    };
    let msg = encode_uevent(
        &format!("{action}@{devpath}"),
        &[
            ("ACTION", action),
            ("DEVPATH", devpath),
            ("SUBSYSTEM", subsystem),
            ("DEVNAME", devname),
            ("MAJOR", major),
            ("MINOR", minor),
        ],
    );
    let sender = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    sender.send_to(&msg, socket).expect("send uevent");
}

async fn devices(h: &Harness, name: &str) -> crostini_lxd::types::Devices {
    h.lxd.instance(name).await.expect("instance").0.devices
}

async fn attach(h: &Harness, name: &str, port: i32) -> pb::AttachUsbToContainerResponse {
    h.client
        .clone()
        .attach_usb_to_container(pb::AttachUsbToContainerRequest {
            container_name: name.into(),
            port_num: port,
        })
        .await
        .expect("AttachUsbToContainer")
        .into_inner()
}

async fn detach(h: &Harness, port: i32) -> pb::DetachUsbFromContainerResponse {
    h.client
        .clone()
        .detach_usb_from_container(pb::DetachUsbFromContainerRequest { port_num: port })
        .await
        .expect("DetachUsbFromContainer")
        .into_inner()
}

const A_OK: i32 = pb::attach_usb_to_container_response::Status::Ok as i32;
const A_FAILED: i32 = pb::attach_usb_to_container_response::Status::Failed as i32;
const D_OK: i32 = pb::detach_usb_from_container_response::Status::Ok as i32;
const D_FAILED: i32 = pb::detach_usb_from_container_response::Status::Failed as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usb_attach_uevents_detach_and_delete_against_real_lxd() {
    let _serial = SERIAL.lock().await;
    let fixture = tempfile::tempdir().expect("tempdir");
    let sysfs = fixture.path().join("sys");
    write_fixture(&sysfs, XHCI_CLASS, &[(1, "0002", 2), (2, "0003", 2)]).expect("sysfs fixture");
    let dev = fixture.path().join("dev");
    std::fs::create_dir_all(dev.join("bus/usb/001")).expect("mkdir dev");
    // Same numbers as /dev/null (1,3), so the container gets a harmless node.
    nix::sys::stat::mknod(
        &dev.join(NODE),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod (needs root)");
    let socket = fixture.path().join("uevent.sock");
    let args = [
        format!("--sysfs-root={}", sysfs.display()),
        format!("--dev-dir={}", dev.display()),
        format!("--uevent-socket={}", socket.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&args).await;

    // Before StartLxd there is no manager.
    let r = attach(&h, "penguin", 1).await;
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (A_FAILED, "USB manager not ready")
    );

    h.start_lxd().await;
    let usb: Arc<UsbManager> = h
        .tremplin
        .as_ref()
        .expect("running")
        .daemon()
        .usb_manager()
        .expect("USB manager from the sysfs fixture");
    assert_eq!(usb.port_count(), 4);
    eventually(Duration::from_secs(10), || async {
        socket.exists().then_some(())
    })
    .await
    .expect("uevent socket bound");

    let name = h.name("usb");
    h.create(&name, &server).await;
    h.start_container(&name, "usb-token").await;

    // Range and lookup errors.
    let r = attach(&h, &name, 9).await;
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (A_FAILED, "Invalid port number 9")
    );
    let r = attach(&h, &name, 0).await;
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (A_FAILED, "Invalid port number 0")
    );
    let r = detach(&h, 5).await;
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (D_FAILED, "Invalid port number 5")
    );
    let missing = format!("tpl-{}-no-such-usb", std::process::id());
    let r = attach(&h, &missing, 1).await;
    assert_eq!(r.status, A_FAILED);
    assert!(
        r.failure_reason.starts_with("Failed to get container"),
        "{r:?}"
    );
    let r = attach(&h, "", 1).await;
    assert_eq!(r.status, A_FAILED);
    assert!(
        r.failure_reason.starts_with("Failed to get container"),
        "{r:?}"
    );

    // A device appears on port 1 (usb1, port 1) before the attach.
    send_uevent(&socket, "add", "usb", &format!("/{CTRL}/usb1/1-1"), NODE);
    // Noise: another controller, an unknown subsystem.
    send_uevent(
        &socket,
        "add",
        "usb",
        "/devices/pci0000:00/0000:00:15.0/usb1/1-1",
        "bus/usb/009/002",
    );
    send_uevent(
        &socket,
        "add",
        "input",
        &format!("/{CTRL}/usb1/1-1/x"),
        "input/event9",
    );
    eventually(Duration::from_secs(10), || async {
        usb.port(1)
            .await
            .filter(|p| p.devices.contains_key(NODE))
            .map(|_| ())
    })
    .await
    .expect("uevent recorded on port 1");
    let port1 = usb.port(1).await.expect("port 1");
    assert_eq!(port1.devices.len(), 1, "noise ignored: {port1:?}");
    assert!(!port1.attached);

    let r = attach(&h, &name, 1).await;
    assert_eq!(r.status, A_OK, "{r:?}");
    let key = format!("/dev/{NODE}");
    let d = devices(&h, &name).await;
    let entry = d.get(&key).unwrap_or_else(|| panic!("{key} not in {d:?}"));
    assert_eq!(entry.get("type").map(String::as_str), Some("unix-char"));
    assert_eq!(
        entry.get("major").map(String::as_str),
        Some("1"),
        "numbers of the node"
    );
    assert_eq!(entry.get("minor").map(String::as_str), Some("3"));
    assert_eq!(entry.get("path").map(String::as_str), Some(key.as_str()));
    assert_eq!(entry.get("mode").map(String::as_str), Some("0666"));
    let (code, _) = h.exec(&name, &["test", "-c", &key]).await;
    assert_eq!(code, 0, "{key} is a character device in the container");

    // Hotplug while attached: a tty without a node in --dev-dir uses the uevent's numbers.
    let tty_path = format!("/{CTRL}/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0");
    send_uevent(&socket, "add", "tty", &tty_path, "ttyUSB0");
    let added = eventually(Duration::from_secs(30), || async {
        devices(&h, &name).await.get("/dev/ttyUSB0").cloned()
    })
    .await
    .expect("hot-added tty reaches the container");
    assert_eq!(added.get("major").map(String::as_str), Some("188"));
    let (code, _) = h.exec(&name, &["test", "-c", "/dev/ttyUSB0"]).await;
    assert_eq!(code, 0);
    send_uevent(&socket, "remove", "tty", &tty_path, "ttyUSB0");
    eventually(Duration::from_secs(30), || async {
        (!devices(&h, &name).await.contains_key("/dev/ttyUSB0")).then_some(())
    })
    .await
    .expect("removed tty leaves the container");
    let port1 = usb.port(1).await.expect("port 1");
    assert!(port1.attached, "port still has {NODE}");
    assert_eq!(port1.devices.len(), 1);

    // Detach: device gone; a second detach is still OK.
    let r = detach(&h, 1).await;
    assert_eq!(r.status, D_OK, "{r:?}");
    assert!(!devices(&h, &name).await.contains_key(&key));
    let (code, _) = h.exec(&name, &["test", "-c", &key]).await;
    assert_ne!(code, 0, "{key} removed from the container");
    let r = detach(&h, 1).await;
    assert_eq!(r.status, D_OK, "{r:?}");
    assert!(!usb.port(1).await.expect("port").attached);

    // Re-attach, then delete the container: instance-deleted releases the port.
    let r = attach(&h, &name, 1).await;
    assert_eq!(r.status, A_OK, "{r:?}");
    assert!(usb.port(1).await.expect("port").attached);
    force_delete(&h.lxd, &name).await;
    eventually(Duration::from_secs(30), || async {
        usb.port(1).await.filter(|p| !p.attached).map(|_| ())
    })
    .await
    .expect("instance-deleted marks port 1 unattached");
    assert!(usb.port(1).await.expect("port").container_name.is_empty());

    h.finish().await;
}
