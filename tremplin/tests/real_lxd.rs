//! tremplin against the real LXD (tests/lxd harness) with the crostini-host stand-in as
//! listener. Run as root: `cargo test -p tremplin --test real_lxd -- --test-threads=1`
//! (the tests also serialize themselves).

mod common;

use std::time::Duration;

use common::*;
use crostini_host::events::Payload;
use crostini_proto::vm_tools::tremplin as pb;

const MIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_lxd_adopts_running_lxd_and_writes_profile_network_and_milestone() {
    let _serial = SERIAL.lock().await;
    let mut h = Harness::start(&[]).await;
    let ready: Vec<_> = h
        .host
        .events()
        .into_iter()
        .filter(|e| matches!(e.payload, Payload::TremplinReady(_)))
        .collect();
    assert_eq!(ready.len(), 1, "exactly one TremplinReady");
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .start_lxd(pb::StartLxdRequest {
            reset_lxd_db: false,
        })
        .await
        .expect("StartLxd")
        .into_inner();
    assert_eq!(r.status, pb::start_lxd_response::Status::Starting as i32);
    let e = h
        .wait_from(from, |p| matches!(p, Payload::UpdateStartLxdStatus(_)), MIN)
        .await;
    let Payload::UpdateStartLxdStatus(p) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        p.status,
        pb::start_lxd_progress::Status::Started as i32,
        "{}",
        p.failure_reason
    );
    let again = h
        .client
        .start_lxd(pb::StartLxdRequest {
            reset_lxd_db: false,
        })
        .await
        .expect("StartLxd")
        .into_inner();
    assert_eq!(
        again.status,
        pb::start_lxd_response::Status::AlreadyRunning as i32
    );
    let lxd_reports = h
        .payloads_from(from)
        .into_iter()
        .filter(|p| matches!(p, Payload::UpdateStartLxdStatus(_)))
        .count();
    assert_eq!(lxd_reports, 1, "one StartLxd report");
    // Profile (§6).
    let (profile, _) = h.lxd.profile(PROFILE).await.expect("profile written");
    // raw.idmap holds the identity ids this host can delegate (all four on Termina).
    let (ids, _) = tremplin::profile::usable_identity_ids(
        std::fs::read_to_string("/etc/subuid").ok().as_deref(),
        std::fs::read_to_string("/etc/subgid").ok().as_deref(),
    );
    assert_eq!(
        profile.config.get("raw.idmap").cloned().unwrap_or_default(),
        tremplin::profile::raw_idmap(&ids)
    );
    assert_eq!(profile.config["boot.host_shutdown_timeout"], "9");
    assert_eq!(profile.config["security.nesting"], "true");
    for dev in [
        "cros_containers",
        "cros_milestone",
        "eth0",
        "external",
        "fonts",
        "root",
        "shared",
    ] {
        assert!(
            profile.devices.contains_key(dev),
            "profile device {dev}: {:?}",
            profile.devices
        );
    }
    assert_eq!(profile.devices["shared"]["path"], "/mnt/chromeos");
    assert_eq!(profile.devices["eth0"]["parent"], "lxdbr0");
    // Network and server config (§5.4).
    let (net, _) = h.lxd.network("lxdbr0").await.expect("lxdbr0");
    assert_eq!(net.config["ipv4.address"], SUBNET);
    assert_eq!(net.config["ipv4.dhcp.expiry"], "infinite");
    let (server, _) = h.lxd.server().await.expect("server");
    assert_eq!(
        server.config["core.shutdown_timeout"],
        serde_json::json!("0")
    );
    // Milestone file.
    assert_eq!(
        std::fs::read_to_string(h.dir.path().join("cros_milestone")).expect("milestone file"),
        MILESTONE.to_string()
    );
    h.finish().await;
}

/// Create (twice: the unfinished one is silently re-created), set up the user, start with a
/// token, info, timezone, ports, stop, timezone on a stopped container, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_create_user_start_info_timezone_ports_stop_delete() {
    let _serial = SERIAL.lock().await;
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&["--start-heartbeat-seconds=1"]).await;
    h.start_lxd().await;
    let name = h.name("life");
    force_delete(&h.lxd, &name).await;

    // Create: CREATING, DOWNLOADING* (0..100), CREATED; marked createdByTremplin.
    let reports = h.create(&name, &server).await;
    for p in &reports {
        if let Payload::UpdateCreateStatus(c) = p {
            assert!((0..=100).contains(&c.download_progress), "{c:?}");
        }
    }
    let (md, _) = h.lxd.instance_metadata(&name).await.expect("metadata");
    assert_eq!(
        md.properties.get("createdByTremplin").map(String::as_str),
        Some("true")
    );
    assert!(
        h.lxd.instance("crostini-inprogress-create").await.is_err(),
        "temporary name left"
    );
    // Never started: a second create re-creates it (CREATING, not EXISTS).
    h.create(&name, &server).await;

    // SetUpUser / GetContainerUsername.
    let u = h
        .client
        .get_container_username(pb::GetContainerUsernameRequest {
            container_name: name.clone(),
        })
        .await
        .expect("GetContainerUsername")
        .into_inner();
    assert_eq!(
        u.status,
        pb::get_container_username_response::Status::UserNotFound as i32,
        "{u:?}"
    );
    for _ in 0..2 {
        let r = h
            .client
            .set_up_user(pb::SetUpUserRequest {
                container_name: name.clone(),
                container_username: "testuser".into(),
            })
            .await
            .expect("SetUpUser")
            .into_inner();
        assert_eq!(
            r.status,
            pb::set_up_user_response::Status::Success as i32,
            "{r:?}"
        );
        assert_eq!(r.username, "testuser");
    }
    let u = h
        .client
        .get_container_username(pb::GetContainerUsernameRequest {
            container_name: name.clone(),
        })
        .await
        .expect("GetContainerUsername")
        .into_inner();
    assert_eq!(
        u.status,
        pb::get_container_username_response::Status::Success as i32,
        "{u:?}"
    );
    assert_eq!(
        (u.username.as_str(), u.homedir.as_str()),
        ("testuser", "/home/testuser")
    );

    // Start with a token.
    let token = "3f6b1a7e-0c4d-4c1e-9a52-7d2f1c0b9e11";
    let from = h.host.state.events.next_seq();
    let started_at = std::time::Instant::now();
    let r = h.start_container(&name, token).await;
    let took = started_at.elapsed();
    // Heartbeats every second (flag) while starting, then exactly one final STARTED.
    let starts: Vec<i32> = h
        .payloads_from(from)
        .iter()
        .filter_map(|p| match p {
            Payload::UpdateStartStatus(s) if s.container_name == name => Some(s.status),
            _ => None,
        })
        .collect();
    let (last, beats) = starts.split_last().expect("start reports");
    assert_eq!(*last, pb::container_start_progress::Status::Started as i32);
    assert!(
        beats
            .iter()
            .all(|s| *s == pb::container_start_progress::Status::Starting as i32),
        "{starts:?}"
    );
    let expected_beats = (took.as_secs_f64() - 1.0).floor().max(0.0) as usize;
    assert!(
        beats.len() >= expected_beats,
        "{} heartbeats in {took:?}",
        beats.len()
    );
    let os = r.os_release.expect("os_release in the STARTING reply");
    assert_eq!(os.id, "debian");
    assert_eq!(os.version_id, "12");
    let (code, out) = h.exec(&name, &["cat", "/dev/.container_token"]).await;
    assert_eq!((code, out.as_str()), (0, token));
    let (_, id) = h.exec(&name, &["id", "testuser"]).await;
    assert!(
        id.starts_with("uid=1000(testuser) gid=1000(testuser)"),
        "{id}"
    );
    for g in [
        "chronos-access",
        "android-everybody",
        "sudo",
        "audio",
        "users",
    ] {
        assert!(id.contains(&format!("({g})")), "testuser not in {g}: {id}");
    }
    let (_, owner) = h
        .exec(&name, &["stat", "-c", "%u:%g %a", "/home/testuser"])
        .await;
    assert_eq!(owner.trim(), "1000:1000 755");
    let (_, cros_list) = h
        .exec(&name, &["cat", "/etc/apt/sources.list.d/cros.list"])
        .await;
    assert_eq!(
        cros_list,
        format!("deb https://storage.googleapis.com/cros-packages/{MILESTONE} bookworm main\n")
    );
    let (md, _) = h.lxd.instance_metadata(&name).await.expect("metadata");
    assert_eq!(
        md.properties
            .get("tremplinSetupFinished")
            .map(String::as_str),
        Some("true")
    );
    // Running: RUNNING, no reports; create now answers EXISTS.
    let from = h.host.state.events.next_seq();
    let again = h
        .client
        .start_container(pb::StartContainerRequest {
            container_name: name.clone(),
            token: "x".into(),
            ..Default::default()
        })
        .await
        .expect("StartContainer")
        .into_inner();
    assert_eq!(
        again.status,
        pb::start_container_response::Status::Running as i32
    );
    let exists = h
        .client
        .create_container(pb::CreateContainerRequest {
            container_name: name.clone(),
            image_server: server.url.clone(),
            image_alias: server.alias.clone(),
            ..Default::default()
        })
        .await
        .expect("CreateContainer")
        .into_inner();
    assert_eq!(
        exists.status,
        pb::create_container_response::Status::Exists as i32
    );

    // GetContainerInfo: the real eth0 address, little-endian encoded.
    let info = eventually(MIN, || async {
        let i = h
            .client
            .clone()
            .get_container_info(pb::GetContainerInfoRequest {
                container_name: name.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (i.ipv4_address != 0).then_some(i)
    })
    .await
    .expect("container got an IPv4 address");
    assert_eq!(
        info.status,
        pb::get_container_info_response::Status::Running as i32
    );
    let state = h.lxd.instance_state(&name).await.expect("state");
    let lxd_addr = state
        .network
        .as_ref()
        .and_then(|n| n.get("eth0"))
        .and_then(|e| e.addresses.iter().find(|a| a.family == "inet"))
        .map(|a| a.address.clone())
        .expect("eth0 inet");
    let octets: std::net::Ipv4Addr = lxd_addr.parse().expect("ip");
    assert_eq!(info.ipv4_address, u32::from_le_bytes(octets.octets()));
    assert_eq!(info.ipv4_address.to_le_bytes(), octets.octets());

    // SetTimezone on a running container: timedatectl (which needs the container's bus up).
    h.wait_for_boot(&name).await;
    let tz = h
        .client
        .set_timezone(pb::SetTimezoneRequest {
            timezone_name: "America/New_York".into(),
            posix_tz_string: "EST5EDT,M3.2.0,M11.1.0".into(),
            container_names: vec![name.clone()],
        })
        .await
        .expect("SetTimezone")
        .into_inner();
    assert_eq!((tz.successes, tz.failure_reasons.len()), (1, 0), "{tz:?}");
    let (_, link) = h.exec(&name, &["readlink", "/etc/localtime"]).await;
    assert!(link.trim().ends_with("America/New_York"), "{link}");
    let (inst, _) = h.lxd.instance(&name).await.expect("instance");
    assert!(!inst.config.contains_key("environment.TZ"));

    // Listening ports: a loopback listener shows up, then goes away.
    let (code, _) = h
        .exec(
            &name,
            &[
                "systemd-run",
                "--unit=tpl-listen",
                "systemd-socket-activate",
                "-l",
                "127.0.0.1:8123",
                "/bin/true",
            ],
        )
        .await;
    assert_eq!(code, 0, "systemd-run listener");
    let (code, _) = h
        .exec(
            &name,
            &[
                "systemd-run",
                "--unit=tpl-listen-eth0",
                "systemd-socket-activate",
                "-l",
                &format!("{lxd_addr}:8124"),
                "/bin/true",
            ],
        )
        .await;
    assert_eq!(code, 0, "systemd-run eth0 listener");
    let ports_of = |p: &Payload| match p {
        Payload::UpdateListeningPorts(info) => info
            .container_ports
            .get(&name)
            .map(|c| c.listening_tcp4_ports.clone()),
        _ => None,
    };
    let seen = h
        .wait_from(
            from,
            |p| ports_of(p).is_some_and(|v| v.contains(&8123)),
            MIN,
        )
        .await;
    let ports = ports_of(&seen.payload).expect("ports");
    assert!(
        !ports.contains(&8124),
        "eth0-only listener must not be reported: {ports:?}"
    );
    let from_stop = h.host.state.events.next_seq();
    h.exec(
        &name,
        &[
            "systemctl",
            "stop",
            "tpl-listen.socket",
            "tpl-listen.service",
            "tpl-listen",
        ],
    )
    .await;
    h.wait_from(
        from_stop,
        |p| ports_of(p).is_some_and(|v| !v.contains(&8123)),
        MIN,
    )
    .await;
    assert!(
        !h.payloads_from(from)
            .iter()
            .any(|p| matches!(p, Payload::UpdateStartStatus(s) if s.container_name == name)),
        "no start reports for a running container"
    );

    // Stop: STOPPING, reports ending STOPPED, ContainerShutdown.
    let from = h.host.state.events.next_seq();
    let stop = h
        .client
        .stop_container(pb::StopContainerRequest {
            container_name: name.clone(),
        })
        .await
        .expect("StopContainer")
        .into_inner();
    assert_eq!(
        stop.status,
        pb::stop_container_response::Status::Stopping as i32
    );
    h.wait_from(from, |p| matches!(p, Payload::UpdateStopStatus(s) if s.status == pb::container_stop_progress::Status::Stopped as i32), MIN).await;
    h.wait_from(
        from,
        |p| matches!(p, Payload::TremplinContainerShutdown(s) if s.container_name == name),
        MIN,
    )
    .await;
    let stops: Vec<i32> = h
        .payloads_from(from)
        .iter()
        .filter_map(|p| match p {
            Payload::UpdateStopStatus(s) => Some(s.status),
            _ => None,
        })
        .collect();
    assert_eq!(
        stops.last(),
        Some(&(pb::container_stop_progress::Status::Stopped as i32))
    );
    assert!(
        stops[..stops.len() - 1]
            .iter()
            .all(|s| *s == pb::container_stop_progress::Status::Stopping as i32),
        "{stops:?}"
    );
    let info = h
        .client
        .get_container_info(pb::GetContainerInfoRequest {
            container_name: name.clone(),
        })
        .await
        .expect("info")
        .into_inner();
    assert_eq!(
        info.status,
        pb::get_container_info_response::Status::Stopped as i32
    );
    let stop = h
        .client
        .stop_container(pb::StopContainerRequest {
            container_name: name.clone(),
        })
        .await
        .expect("StopContainer")
        .into_inner();
    assert_eq!(
        stop.status,
        pb::stop_container_response::Status::Stopped as i32
    );

    // SetTimezone on a stopped container: environment.TZ.
    let tz = h
        .client
        .set_timezone(pb::SetTimezoneRequest {
            timezone_name: "Europe/Paris".into(),
            posix_tz_string: "CET-1CEST,M3.5.0,M10.5.0/3".into(),
            container_names: vec![name.clone(), "tpl-no-such-container".into()],
        })
        .await
        .expect("SetTimezone")
        .into_inner();
    assert_eq!(tz.successes, 1, "{tz:?}");
    assert_eq!(tz.failure_reasons.len(), 1, "{tz:?}");
    assert!(
        tz.failure_reasons[0].contains("tpl-no-such-container"),
        "{tz:?}"
    );
    let (inst, _) = h.lxd.instance(&name).await.expect("instance");
    assert_eq!(
        inst.config.get("environment.TZ").map(String::as_str),
        Some("CET-1CEST,M3.5.0,M10.5.0/3")
    );

    // Delete a stopped container: DELETING then DELETED; again: DOES_NOT_EXIST.
    let from = h.host.state.events.next_seq();
    let d = h
        .client
        .delete_container(pb::DeleteContainerRequest {
            container_name: name.clone(),
        })
        .await
        .expect("DeleteContainer")
        .into_inner();
    assert_eq!(
        d.status,
        pb::delete_container_response::Status::Deleting as i32
    );
    let e = h
        .wait_from(from, |p| matches!(p, Payload::UpdateDeletionStatus(_)), MIN)
        .await;
    let Payload::UpdateDeletionStatus(s) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        s.status,
        pb::container_deletion_progress::Status::Deleted as i32,
        "{s:?}"
    );
    assert!(h.lxd.instance(&name).await.is_err_and(|e| e.is_not_found()));
    let d = h
        .client
        .delete_container(pb::DeleteContainerRequest {
            container_name: name.clone(),
        })
        .await
        .expect("DeleteContainer")
        .into_inner();
    assert_eq!(
        d.status,
        pb::delete_container_response::Status::DoesNotExist as i32
    );
    h.finish().await;
}

fn export_status(p: &Payload, name: &str) -> Option<pb::ContainerExportProgress> {
    match p {
        Payload::UpdateExportStatus(e) if e.container_name == name => Some(e.clone()),
        _ => None,
    }
}

fn import_status(p: &Payload, name: &str) -> Option<pb::ContainerImportProgress> {
    match p {
        Payload::UpdateImportStatus(e) if e.container_name == name => Some(e.clone()),
        _ => None,
    }
}

/// Sorted names in `dir`.
fn ls(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    ))
}

/// Export (streaming reports, unified image tarball, cancel, collisions) and import
/// (upload/unpack reports, identical file contents, bad inputs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips_and_cancel_or_failure_leaves_no_file() {
    let _serial = SERIAL.lock().await;
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&[]).await;
    h.start_lxd().await;
    let name = h.name("exp");
    let imported = h.name("imp");
    force_delete(&h.lxd, &name).await;
    force_delete(&h.lxd, &imported).await;
    h.create(&name, &server).await;
    let r = h
        .client
        .set_up_user(pb::SetUpUserRequest {
            container_name: name.clone(),
            container_username: "exporter".into(),
        })
        .await
        .expect("SetUpUser")
        .into_inner();
    assert_eq!(
        r.status,
        pb::set_up_user_response::Status::Success as i32,
        "{r:?}"
    );
    h.start_container(&name, "tok").await;
    let (code, _) = h
        .exec(&name, &["sh", "-c", "head -c 300000 /dev/urandom > /root/marker && chown 1000:1000 /root/marker && sync"])
        .await;
    assert_eq!(code, 0);
    let shared = h.dir.path().join("shared");
    std::fs::create_dir_all(shared.join("exports")).expect("mkdir");

    // Cancel right after the reply: the snapshot takes long enough for the cancel to be queued
    // before the first entry is streamed.
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .export_container(pb::ExportContainerRequest {
            container_name: name.clone(),
            export_path: "exports/cancelled.tar.gz".into(),
        })
        .await
        .expect("ExportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::export_container_response::Status::Exporting as i32
    );
    let collide = h
        .client
        .export_container(pb::ExportContainerRequest {
            container_name: name.clone(),
            export_path: "exports/other.tar.gz".into(),
        })
        .await
        .expect("ExportContainer")
        .into_inner();
    assert_eq!(
        collide.status,
        pb::export_container_response::Status::Failed as i32,
        "same-name collision"
    );
    let collide = h
        .client
        .import_container(pb::ImportContainerRequest {
            container_name: name.clone(),
            import_path: "exports/other.tar.gz".into(),
            ..Default::default()
        })
        .await
        .expect("ImportContainer")
        .into_inner();
    assert_eq!(
        collide.status,
        pb::import_container_response::Status::Failed as i32,
        "export/import share the map"
    );
    let c = h
        .client
        .cancel_export_container(pb::CancelExportContainerRequest {
            in_progress_container_name: name.clone(),
        })
        .await
        .expect("Cancel")
        .into_inner();
    assert_eq!(
        c.status,
        pb::cancel_export_container_response::Status::CancelQueued as i32
    );
    let e = h
        .wait_from(
            from,
            |p| {
                export_status(p, &name).is_some_and(|e| {
                    e.status != pb::container_export_progress::Status::ExportingStreaming as i32
                })
            },
            LONG,
        )
        .await;
    let last = export_status(&e.payload, &name).expect("export status");
    assert_eq!(
        last.status,
        pb::container_export_progress::Status::Cancelled as i32,
        "{last:?}"
    );
    assert_eq!(last.bytes_exported, 0);
    let cancelled = shared.join("exports/cancelled.tar.gz");
    assert!(!cancelled.exists(), "cancelled export leaves no file");
    assert_eq!(
        ls(&shared.join("exports")),
        Vec::<String>::new(),
        "no partial or temporary files"
    );
    let snaps = h.lxd.snapshot_names(&name).await.expect("snapshots");
    assert!(snaps.is_empty(), "rootfs-backup removed: {snaps:?}");
    let nf = h
        .client
        .cancel_export_container(pb::CancelExportContainerRequest {
            in_progress_container_name: name.clone(),
        })
        .await
        .expect("Cancel")
        .into_inner();
    assert_eq!(
        nf.status,
        pb::cancel_export_container_response::Status::OperationNotFound as i32
    );

    // A cancelled export over a user's existing file leaves that file untouched.
    let existing = shared.join("exports/existing.tar.gz");
    std::fs::write(&existing, b"user data").expect("write");
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .export_container(pb::ExportContainerRequest {
            container_name: name.clone(),
            export_path: "exports/existing.tar.gz".into(),
        })
        .await
        .expect("ExportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::export_container_response::Status::Exporting as i32
    );
    let c = h
        .client
        .cancel_export_container(pb::CancelExportContainerRequest {
            in_progress_container_name: name.clone(),
        })
        .await
        .expect("Cancel")
        .into_inner();
    assert_eq!(
        c.status,
        pb::cancel_export_container_response::Status::CancelQueued as i32
    );
    let e = h
        .wait_from(
            from,
            |p| {
                export_status(p, &name).is_some_and(|e| {
                    e.status != pb::container_export_progress::Status::ExportingStreaming as i32
                })
            },
            LONG,
        )
        .await;
    let last = export_status(&e.payload, &name).expect("export status");
    assert_eq!(
        last.status,
        pb::container_export_progress::Status::Cancelled as i32,
        "{last:?}"
    );
    assert_eq!(
        std::fs::read(&existing).expect("existing file kept"),
        b"user data"
    );
    assert_eq!(ls(&shared.join("exports")), vec!["existing.tar.gz"]);
    std::fs::remove_file(&existing).expect("rm");

    // A failed export leaves nothing either: the target is a directory (fails after the
    // snapshot), and an unknown container (fails at the snapshot).
    std::fs::create_dir(shared.join("exports/adir")).expect("mkdir");
    for (container, path, reason) in [
        (
            name.clone(),
            "exports/adir",
            "failed to create export file as",
        ),
        (h.name("ghost"), "exports/ghost.tar.gz", "snapshot"),
    ] {
        let from = h.host.state.events.next_seq();
        let r = h
            .client
            .export_container(pb::ExportContainerRequest {
                container_name: container.clone(),
                export_path: path.into(),
            })
            .await
            .expect("ExportContainer")
            .into_inner();
        assert_eq!(
            r.status,
            pb::export_container_response::Status::Exporting as i32
        );
        let e = h
            .wait_from(from, |p| export_status(p, &container).is_some(), LONG)
            .await;
        let last = export_status(&e.payload, &container).expect("status");
        assert_eq!(
            last.status,
            pb::container_export_progress::Status::Failed as i32,
            "{path}: {last:?}"
        );
        assert!(last.failure_reason.contains(reason), "{path}: {last:?}");
        assert_eq!(last.bytes_exported, 0);
        assert_eq!(ls(&shared.join("exports")), vec!["adir"], "{path}");
        assert!(ls(&shared.join("exports/adir")).is_empty(), "{path}");
    }
    std::fs::remove_dir(shared.join("exports/adir")).expect("rmdir");
    assert!(
        h.lxd
            .snapshot_names(&name)
            .await
            .expect("snapshots")
            .is_empty(),
        "rootfs-backup removed after the failures"
    );

    // Full export.
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .export_container(pb::ExportContainerRequest {
            container_name: name.clone(),
            export_path: "exports/penguin.tar.gz".into(),
        })
        .await
        .expect("ExportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::export_container_response::Status::Exporting as i32
    );
    h.wait_from(
        from,
        |p| {
            export_status(p, &name).is_some_and(|e| {
                e.status != pb::container_export_progress::Status::ExportingStreaming as i32
            })
        },
        LONG,
    )
    .await;
    let reports: Vec<_> = h
        .payloads_from(from)
        .iter()
        .filter_map(|p| export_status(p, &name))
        .collect();
    let (last, streaming) = reports.split_last().expect("reports");
    assert_eq!(
        last.status,
        pb::container_export_progress::Status::Done as i32,
        "{last:?}"
    );
    assert!(
        !streaming.is_empty(),
        "at least one EXPORTING_STREAMING report"
    );
    for w in reports.windows(2) {
        assert_eq!(
            (w[0].total_input_files, w[0].total_input_bytes),
            (w[1].total_input_files, w[1].total_input_bytes),
            "fixed totals"
        );
        assert!(
            w[0].input_files_streamed <= w[1].input_files_streamed
                && w[0].input_bytes_streamed <= w[1].input_bytes_streamed
                && w[0].bytes_exported <= w[1].bytes_exported,
            "monotonic counters"
        );
    }
    let file = shared.join("exports/penguin.tar.gz");
    assert_eq!(
        std::fs::metadata(&file).expect("export file").len(),
        last.bytes_exported
    );
    {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&file).expect("open"),
        ));
        let mut entries = archive.entries().expect("entries");
        let first = entries.next().expect("first").expect("entry");
        assert_eq!(
            first.path().expect("path").to_string_lossy(),
            "metadata.yaml"
        );
        let mut saw = (false, false);
        for e in entries {
            let e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            if path == "rootfs/root/marker" {
                assert_eq!(
                    (
                        e.header().uid().expect("uid"),
                        e.header().gid().expect("gid")
                    ),
                    (1000, 1000),
                    "container ids in the tarball"
                );
                saw.0 = true;
            }
            if path == "rootfs/etc/passwd" {
                assert_eq!(e.header().uid().expect("uid"), 0);
                saw.1 = true;
            }
        }
        assert_eq!(saw, (true, true), "marker and passwd exported");
    }
    assert!(
        h.lxd
            .snapshot_names(&name)
            .await
            .expect("snapshots")
            .is_empty(),
        "rootfs-backup removed"
    );

    // Import under a new name: identical contents, image deleted afterwards.
    let images_before = h.lxd.images().await.expect("images").len();
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .import_container(pb::ImportContainerRequest {
            container_name: imported.clone(),
            import_path: "exports/penguin.tar.gz".into(),
            ..Default::default()
        })
        .await
        .expect("ImportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::import_container_response::Status::Importing as i32,
        "{r:?}"
    );
    h.wait_from(
        from,
        |p| import_status(p, &imported).is_some_and(|e| ![3, 4].contains(&e.status)),
        LONG,
    )
    .await;
    let reports: Vec<_> = h
        .payloads_from(from)
        .iter()
        .filter_map(|p| import_status(p, &imported))
        .collect();
    let statuses: Vec<i32> = reports.iter().map(|r| r.status).collect();
    let (last, rest) = reports.split_last().expect("reports");
    assert_eq!(
        last.status,
        pb::container_import_progress::Status::Done as i32,
        "{last:?}"
    );
    assert!(
        statuses.contains(&(pb::container_import_progress::Status::ImportingUpload as i32)),
        "{statuses:?}"
    );
    let first_unpack = statuses.iter().position(|s| *s == 4).unwrap_or(rest.len());
    assert!(
        rest[..first_unpack].iter().all(|r| r.status == 3),
        "uploads before unpacks: {statuses:?}"
    );
    assert!(
        rest[first_unpack..].iter().all(|r| r.status == 4),
        "{statuses:?}"
    );
    assert_eq!(
        h.lxd.images().await.expect("images").len(),
        images_before,
        "imported image deleted"
    );
    let original = sha256_file(
        &test_lxd::lxd_dir()
            .join("containers")
            .join(&name)
            .join("rootfs/root/marker"),
    );
    let copy = sha256_file(
        &test_lxd::lxd_dir()
            .join("containers")
            .join(&imported)
            .join("rootfs/root/marker"),
    );
    assert_eq!(original, copy, "marker file round-trips");

    // Bad inputs: a file that is not an image, a path escaping the shared dir.
    std::fs::write(
        shared.join("exports/not-a-backup.tar.gz"),
        "this is not a backup at all",
    )
    .expect("write");
    let bogus = h.name("bogus");
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .import_container(pb::ImportContainerRequest {
            container_name: bogus.clone(),
            import_path: "exports/not-a-backup.tar.gz".into(),
            ..Default::default()
        })
        .await
        .expect("ImportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::import_container_response::Status::Importing as i32
    );
    let e = h
        .wait_from(
            from,
            |p| import_status(p, &bogus).is_some_and(|e| ![3, 4].contains(&e.status)),
            LONG,
        )
        .await;
    let last = import_status(&e.payload, &bogus).expect("status");
    assert_eq!(
        last.status,
        pb::container_import_progress::Status::Failed as i32,
        "{last:?}"
    );
    assert!(!last.failure_reason.is_empty());
    assert!(h.lxd.instance(&bogus).await.is_err());
    let from = h.host.state.events.next_seq();
    let r = h
        .client
        .export_container(pb::ExportContainerRequest {
            container_name: name.clone(),
            export_path: "../escape.tar.gz".into(),
        })
        .await
        .expect("ExportContainer")
        .into_inner();
    assert_eq!(
        r.status,
        pb::export_container_response::Status::Exporting as i32
    );
    let e = h
        .wait_from(from, |p| export_status(p, &name).is_some(), MIN)
        .await;
    let last = export_status(&e.payload, &name).expect("status");
    assert_eq!(
        last.status,
        pb::container_export_progress::Status::Failed as i32
    );
    assert!(
        last.failure_reason.contains("invalid export path"),
        "{last:?}"
    );
    assert!(!h.dir.path().join("escape.tar.gz").exists());
    h.finish().await;
}

/// A throttled download (cached image deleted first) reports DOWNLOADING with at least five
/// distinct, non-decreasing values before CREATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_download_progress_rises_monotonically() {
    let _serial = SERIAL.lock().await;
    let server = ImageServer::start(&["--throttle", "8000000"]);
    let mut h = Harness::start(&[]).await;
    h.start_lxd().await;
    if h.lxd.image(&server.fingerprint).await.is_ok() {
        let op = h
            .lxd
            .delete_image(&server.fingerprint)
            .await
            .expect("delete cached image");
        h.lxd.wait(&op, MIN).await.expect("image deleted");
    }
    let name = h.name("progress");
    force_delete(&h.lxd, &name).await;
    let reports = h.create(&name, &server).await;
    let values: Vec<i32> = reports
        .iter()
        .filter_map(|p| match p {
            Payload::UpdateCreateStatus(c)
                if c.status == pb::container_creation_progress::Status::Downloading as i32 =>
            {
                Some(c.download_progress)
            }
            _ => None,
        })
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "non-decreasing: {values:?}"
    );
    let mut distinct = values.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 5,
        "at least 5 distinct progress values: {values:?}"
    );
    assert!(values.iter().all(|v| (0..=100).contains(v)));
    h.finish().await;
}

/// §14: before StartLxd every RPC answers without touching LXD, within the host deadlines, and
/// the daemon keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_before_start_lxd_answer_lxd_not_running() {
    let _serial = SERIAL.lock().await;
    let h = Harness::start(&[]).await;
    let mut c = h.client.clone();
    let n = || "penguin".to_string();
    let r = c
        .create_container(pb::CreateContainerRequest {
            container_name: n(),
            image_server: "https://x".into(),
            image_alias: "a".into(),
            ..Default::default()
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (
            pb::create_container_response::Status::Failed as i32,
            "LXD is not running"
        )
    );
    let r = c
        .delete_container(pb::DeleteContainerRequest {
            container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::delete_container_response::Status::Failed as i32
    );
    let r = c
        .start_container(pb::StartContainerRequest {
            container_name: n(),
            ..Default::default()
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::start_container_response::Status::Failed as i32
    );
    let r = c
        .stop_container(pb::StopContainerRequest {
            container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(r.status, pb::stop_container_response::Status::Failed as i32);
    let r = c
        .get_container_username(pb::GetContainerUsernameRequest {
            container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::get_container_username_response::Status::Failed as i32
    );
    let r = c
        .update_container_devices(pb::UpdateContainerDevicesRequest {
            container_name: n(),
            updates: Default::default(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::update_container_devices_response::Status::Failed as i32
    );
    let r = c
        .export_container(pb::ExportContainerRequest {
            container_name: n(),
            export_path: "x".into(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::export_container_response::Status::Failed as i32
    );
    let r = c
        .import_container(pb::ImportContainerRequest {
            container_name: n(),
            import_path: "x".into(),
            ..Default::default()
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::import_container_response::Status::Failed as i32
    );
    let r = c
        .cancel_export_container(pb::CancelExportContainerRequest {
            in_progress_container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::cancel_export_container_response::Status::OperationNotFound as i32,
        "no transaction left behind"
    );
    let r = c
        .cancel_import_container(pb::CancelImportContainerRequest {
            in_progress_container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::cancel_import_container_response::Status::OperationNotFound as i32
    );
    let r = c
        .attach_usb_to_container(pb::AttachUsbToContainerRequest {
            port_num: 1,
            container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (
            pb::attach_usb_to_container_response::Status::Failed as i32,
            "USB manager not ready"
        )
    );
    let r = c
        .detach_usb_from_container(pb::DetachUsbFromContainerRequest { port_num: 1 })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        (r.status, r.failure_reason.as_str()),
        (
            pb::detach_usb_from_container_response::Status::Failed as i32,
            "USB manager not ready"
        )
    );
    let r = c
        .get_container_info(pb::GetContainerInfoRequest {
            container_name: n(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::get_container_info_response::Status::NotFound as i32
    );
    let r = c
        .set_up_user(pb::SetUpUserRequest {
            container_name: "tpl-does-not-exist".into(),
            container_username: "u".into(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::set_up_user_response::Status::Unknown as i32,
        "{r:?}"
    );
    let r = c
        .set_timezone(pb::SetTimezoneRequest {
            timezone_name: "UTC".into(),
            posix_tz_string: String::new(),
            container_names: vec![n()],
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(r.successes, 0);
    assert_eq!(
        r.failure_reasons,
        vec!["Ignoring SetTimezone request before LXD is running".to_string()]
    );
    c.host_network_changed(pb::HostNetworkChangedRequest {})
        .await
        .expect("HostNetworkChanged OK");
    let r = c
        .get_debug_info(pb::GetDebugInfoRequest {})
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(r.debug_information, "LXD not running");
    // Nothing was reported and the daemon still serves.
    let reports: Vec<_> = h
        .host
        .events()
        .into_iter()
        .filter(|e| !matches!(e.payload, Payload::TremplinReady(_)))
        .collect();
    assert!(reports.is_empty(), "{reports:?}");
    let r = c
        .get_debug_info(pb::GetDebugInfoRequest {})
        .await
        .expect("still serving")
        .into_inner();
    assert_eq!(r.debug_information, "LXD not running");
    h.finish().await;
}

/// §14 with LXD running: empty, invalid and unknown names; unreachable image server; unknown
/// alias; bad privilege level; devices; deleting a running container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_unknown_containers_image_failures_and_running_delete() {
    let _serial = SERIAL.lock().await;
    let server = ImageServer::start(&[]);
    let mut h = Harness::start(&[]).await;
    h.start_lxd().await;
    let mut c = h.client.clone();
    for bad in ["", "Bad_Name!", "tpl-no-such-container"] {
        let s = |x: String| x;
        let r = c
            .delete_container(pb::DeleteContainerRequest {
                container_name: s(bad.into()),
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::delete_container_response::Status::DoesNotExist as i32,
            "{bad:?}"
        );
        let r = c
            .stop_container(pb::StopContainerRequest {
                container_name: bad.into(),
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::stop_container_response::Status::DoesNotExist as i32,
            "{bad:?}"
        );
        let r = c
            .get_container_info(pb::GetContainerInfoRequest {
                container_name: bad.into(),
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::get_container_info_response::Status::NotFound as i32,
            "{bad:?}"
        );
        let r = c
            .get_container_username(pb::GetContainerUsernameRequest {
                container_name: bad.into(),
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::get_container_username_response::Status::ContainerNotFound as i32,
            "{bad:?}"
        );
        let r = c
            .update_container_devices(pb::UpdateContainerDevicesRequest {
                container_name: bad.into(),
                updates: Default::default(),
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::update_container_devices_response::Status::NoSuchContainer as i32,
            "{bad:?}"
        );
        let r = c
            .start_container(pb::StartContainerRequest {
                container_name: bad.into(),
                ..Default::default()
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::start_container_response::Status::Failed as i32,
            "{bad:?}"
        );
        assert!(!r.failure_reason.is_empty());
        let r = c
            .set_up_user(pb::SetUpUserRequest {
                container_name: bad.into(),
                container_username: "u".into(),
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::set_up_user_response::Status::Unknown as i32,
            "{bad:?}"
        );
    }
    for bad in ["", "Bad_Name!"] {
        let r = c
            .create_container(pb::CreateContainerRequest {
                container_name: bad.into(),
                image_server: server.url.clone(),
                image_alias: server.alias.clone(),
                ..Default::default()
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::create_container_response::Status::Failed as i32,
            "{bad:?}"
        );
    }
    // Unknown container export: EXPORTING, then a FAILED report.
    let from = h.host.state.events.next_seq();
    let r = c
        .export_container(pb::ExportContainerRequest {
            container_name: "tpl-no-such-container".into(),
            export_path: "x.tar.gz".into(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::export_container_response::Status::Exporting as i32
    );
    let e = h
        .wait_from(from, |p| matches!(p, Payload::UpdateExportStatus(_)), MIN)
        .await;
    let Payload::UpdateExportStatus(x) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        x.status,
        pb::container_export_progress::Status::Failed as i32
    );

    // Unreachable image server and unknown alias: CREATING, then FAILED naming the step.
    for (srv, alias, expect) in [
        (
            "https://127.0.0.1:1".to_string(),
            server.alias.clone(),
            "failed to connect to simplestreams image server",
        ),
        (
            server.url.clone(),
            "no-such-alias".to_string(),
            "failed to get alias",
        ),
    ] {
        let name = h.name("badimg");
        let from = h.host.state.events.next_seq();
        let r = c
            .create_container(pb::CreateContainerRequest {
                container_name: name.clone(),
                image_server: srv,
                image_alias: alias,
                ..Default::default()
            })
            .await
            .expect("rpc")
            .into_inner();
        assert_eq!(
            r.status,
            pb::create_container_response::Status::Creating as i32
        );
        let e = h.wait_from(from, |p| is_final_create(p, &name), MIN).await;
        let Payload::UpdateCreateStatus(x) = &e.payload else {
            unreachable!()
        };
        assert_eq!(
            x.status,
            pb::container_creation_progress::Status::Failed as i32
        );
        assert!(x.failure_reason.starts_with(expect), "{}", x.failure_reason);
        assert!(h.lxd.instance(&name).await.is_err());
        assert!(h.lxd.instance("crostini-inprogress-create").await.is_err());
    }

    // A real container: bad privilege level, devices, then delete while running.
    let name = h.name("del");
    force_delete(&h.lxd, &name).await;
    h.create(&name, &server).await;
    let from = h.host.state.events.next_seq();
    let r = c
        .start_container(pb::StartContainerRequest {
            container_name: name.clone(),
            privilege_level: 7,
            ..Default::default()
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::start_container_response::Status::Starting as i32
    );
    let e = h
        .wait_from(
            from,
            |p| matches!(p, Payload::UpdateStartStatus(s) if s.container_name == name),
            MIN,
        )
        .await;
    let Payload::UpdateStartStatus(s) = &e.payload else {
        unreachable!()
    };
    assert_eq!(
        (s.status, s.failure_reason.as_str()),
        (
            pb::container_start_progress::Status::Failed as i32,
            "bad privilege level value: 7"
        )
    );
    h.start_container(&name, "").await;
    let r = c
        .start_container(pb::StartContainerRequest {
            container_name: name.clone(),
            privilege_level: 7,
            ..Default::default()
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::start_container_response::Status::Failed as i32,
        "running + bad level"
    );
    let updates = [
        ("microphone".to_string(), pb::VmDeviceAction::Disable as i32),
        ("camera".to_string(), pb::VmDeviceAction::Enable as i32),
    ]
    .into();
    let r = c
        .update_container_devices(pb::UpdateContainerDevicesRequest {
            container_name: name.clone(),
            updates,
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::update_container_devices_response::Status::Ok as i32,
        "{r:?}"
    );
    assert_eq!(
        r.results["camera"],
        pb::update_container_devices_response::UpdateResult::NoSuchVmDevice as i32
    );
    assert_eq!(
        r.results["microphone"],
        pb::update_container_devices_response::UpdateResult::NoSuchVmDevice as i32,
        "no microphone on this machine"
    );
    let r = c
        .get_debug_info(pb::GetDebugInfoRequest {})
        .await
        .expect("rpc")
        .into_inner();
    assert!(!r.debug_information.is_empty());
    let from = h.host.state.events.next_seq();
    let r = c
        .delete_container(pb::DeleteContainerRequest {
            container_name: name.clone(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert_eq!(
        r.status,
        pb::delete_container_response::Status::Deleting as i32
    );
    h.wait_from(from, |p| matches!(p, Payload::UpdateDeletionStatus(_)), MIN)
        .await;
    let seq: Vec<&str> = h
        .payloads_from(from)
        .iter()
        .filter_map(|p| match p {
            Payload::TremplinContainerShutdown(s) if s.container_name == name => Some("shutdown"),
            Payload::UpdateDeletionStatus(d)
                if d.status == pb::container_deletion_progress::Status::Deleted as i32 =>
            {
                Some("deleted")
            }
            Payload::UpdateDeletionStatus(_) => Some("other"),
            _ => None,
        })
        .collect();
    assert_eq!(seq.first(), Some(&"shutdown"), "{seq:?}");
    assert_eq!(seq.last(), Some(&"deleted"), "{seq:?}");
    assert!(h.lxd.instance(&name).await.is_err_and(|e| e.is_not_found()));
    h.finish().await;
}
