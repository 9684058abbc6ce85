//! The bad-input table of issue 9 for tremplin: hostile rpc inputs against the real `tremplin`
//! binary on a unix socket, with the `crostini-host` stand-in as its host. For each row the test
//! asserts the precise reply (status enum and failure reason, gRPC code, raw HTTP/2 outcome)
//! and then that a normal call (GetDebugInfo) answers within 1 s and tremplin still runs.
//!
//! Almost every row needs no LXD: tremplin runs with an LXD socket path that does not exist
//! (never StartLxd: that would launch an LXD), so these rows check what is validated before
//! LXD. SetUpUser works on the container's files only, so its rows use a fake rootfs under
//! that LXD dir with hostile passwd files. The rows that need LXD (`lxd_*`) adopt the tests'
//! own LXD (`common::lxd_socket`); nextest runs every tremplin test in the serial `real-lxd`
//! group.
//!
//! Each #[test] starts one tremplin and walks its rows; a failure names the row.

mod common;
#[path = "../../tests/support/raw_grpc.rs"]
mod raw_grpc;
#[path = "hostile_input/rig.rs"]
mod rig;

use std::path::Path;

use crostini_proto::vm_tools::tremplin as pb;
use raw_grpc::pb::{len_field, varint_field};
use raw_grpc::{grpc_frame, grpc_message, noise, RawReply};
use rig::{exact, no_setup, prefix, row, run, run_then, Call, Expect, Reason, Rig, Row};
use tonic::Code;

const LXD_NOT_RUNNING: &str = "LXD is not running";
const TZ_BEFORE_LXD: &str = "Ignoring SetTimezone request before LXD is running";
const USB_NOT_READY: &str = "USB manager not ready";
/// A valid container name that no LXD knows.
const ABSENT: &str = "tpl-hostile-absent";
/// The container whose fake rootfs the SetUpUser rows edit.
const FAKE: &str = "tpl-hostile-fake";

/// The hostile container names: (label, name).
fn bad_names() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("64 KiB", "a".repeat(64 << 10)),
        ("dotdot", "../x".into()),
        ("nul", "a\0b".into()),
        ("unicode", "pénguin-容器".into()),
        ("slash", "a/b".into()),
        ("newline", "penguin\n".into()),
    ]
}

/// What the name check answers for `name`.
fn name_error(name: &str) -> String {
    if name.is_empty() {
        "empty container name".to_string()
    } else {
        format!("invalid container name {name:?}: must be 1-63 letters, digits or '-', start with a letter and not end with '-'")
    }
}

/// One row per bad name for one rpc.
fn per_name(rpc: &str, call: fn(String) -> Call, expect: fn(&str) -> Expect) -> Vec<Row> {
    bad_names()
        .into_iter()
        .map(|(label, name)| {
            row(
                format!("{rpc} with a {label} name"),
                call(name.clone()),
                expect(&name),
            )
        })
        .collect()
}

mod s {
    //! Wire values of the reply enums, shortened for the table.
    use super::pb;
    pub const CREATE_FAILED: i32 = pb::create_container_response::Status::Failed as i32;
    pub const CREATING: i32 = pb::create_container_response::Status::Creating as i32;
    pub const DELETE_GONE: i32 = pb::delete_container_response::Status::DoesNotExist as i32;
    pub const DELETE_FAILED: i32 = pb::delete_container_response::Status::Failed as i32;
    pub const START_FAILED: i32 = pb::start_container_response::Status::Failed as i32;
    pub const STOP_GONE: i32 = pb::stop_container_response::Status::DoesNotExist as i32;
    pub const STOP_FAILED: i32 = pb::stop_container_response::Status::Failed as i32;
    pub const INFO_NOT_FOUND: i32 = pb::get_container_info_response::Status::NotFound as i32;
    pub const NAME_NOT_FOUND: i32 =
        pb::get_container_username_response::Status::ContainerNotFound as i32;
    pub const NAME_FAILED: i32 = pb::get_container_username_response::Status::Failed as i32;
    pub const USER_UNKNOWN: i32 = pb::set_up_user_response::Status::Unknown as i32;
    pub const USER_SUCCESS: i32 = pb::set_up_user_response::Status::Success as i32;
    pub const USER_FAILED: i32 = pb::set_up_user_response::Status::Failed as i32;
    pub const DEVICES_NO_SUCH: i32 =
        pb::update_container_devices_response::Status::NoSuchContainer as i32;
    pub const DEVICES_FAILED: i32 = pb::update_container_devices_response::Status::Failed as i32;
    pub const EXPORT_FAILED: i32 = pb::export_container_response::Status::Failed as i32;
    pub const EXPORTING: i32 = pb::export_container_response::Status::Exporting as i32;
    pub const EXPORT_REPORT_FAILED: i32 = pb::container_export_progress::Status::Failed as i32;
    pub const IMPORT_FAILED: i32 = pb::import_container_response::Status::Failed as i32;
    pub const IMPORTING: i32 = pb::import_container_response::Status::Importing as i32;
    pub const IMPORT_REPORT_FAILED: i32 = pb::container_import_progress::Status::Failed as i32;
    pub const CREATE_REPORT_FAILED: i32 = pb::container_creation_progress::Status::Failed as i32;
    pub const CANCEL_EXPORT_NONE: i32 =
        pb::cancel_export_container_response::Status::OperationNotFound as i32;
    pub const CANCEL_IMPORT_NONE: i32 =
        pb::cancel_import_container_response::Status::OperationNotFound as i32;
    pub const ATTACH_FAILED: i32 = pb::attach_usb_to_container_response::Status::Failed as i32;
    pub const DETACH_FAILED: i32 = pb::detach_usb_from_container_response::Status::Failed as i32;
}

fn reply(status: i32, reason: Reason) -> Expect {
    Expect::Reply(status, reason)
}

fn failed_to_find(name: &str) -> Reason {
    exact(format!("failed to find container: {}", name_error(name)))
}

/// `name` is not a valid LXD name: each rpc answers from the name check, before LXD.
#[rustfmt::skip]
mod bad_names {
    use super::*;

    #[test]
    fn create_container() {
        run(|_| per_name("CreateContainer", |n| Call::Create(n, "https://images.invalid".into(), "debian/12".into()),
            |n| reply(s::CREATE_FAILED, exact(name_error(n)))), false, no_setup);
    }

    #[test]
    fn delete_container() {
        run(|_| per_name("DeleteContainer", Call::Delete, |n| reply(s::DELETE_GONE, exact(name_error(n)))), false, no_setup);
    }

    #[test]
    fn start_container() {
        run(|_| per_name("StartContainer", Call::Start, |n| reply(s::START_FAILED, failed_to_find(n))), false, no_setup);
    }

    #[test]
    fn stop_container() {
        run(|_| per_name("StopContainer", Call::Stop, |n| reply(s::STOP_GONE, exact(name_error(n)))), false, no_setup);
    }

    #[test]
    fn get_container_info() {
        run(|_| per_name("GetContainerInfo", Call::Info, |n| reply(s::INFO_NOT_FOUND, failed_to_find(n))), false, no_setup);
    }

    #[test]
    fn get_container_username() {
        run(|_| per_name("GetContainerUsername", Call::Username, |n| reply(s::NAME_NOT_FOUND, failed_to_find(n))), false, no_setup);
    }

    #[test]
    fn set_up_user() {
        run(|_| per_name("SetUpUser", |n| Call::SetUpUser(n, "tester".into()),
            |n| reply(s::USER_UNKNOWN, exact(format!("failed to get container passwd db: {}", name_error(n))))), false, no_setup);
    }

    #[test]
    fn update_container_devices() {
        run(|_| per_name("UpdateContainerDevices", |n| Call::Devices(n, 999), |_| reply(s::DEVICES_NO_SUCH, exact(""))), false, no_setup);
    }

    /// Before LXD runs, the rpcs that need it answer "not running" whatever the name.
    #[test]
    fn export_import_usb_cancel_timezone_before_lxd() {
        run(|_| {
            let mut rows = per_name("ExportContainer", |n| Call::Export(n, "x.tar.gz".into()), |_| reply(s::EXPORT_FAILED, exact(LXD_NOT_RUNNING)));
            rows.extend(per_name("ImportContainer", |n| Call::Import(n, "x.tar.gz".into()), |_| reply(s::IMPORT_FAILED, exact(LXD_NOT_RUNNING))));
            rows.extend(per_name("AttachUsbToContainer", |n| Call::Attach(1, n), |_| reply(s::ATTACH_FAILED, exact(USB_NOT_READY))));
            rows.extend(per_name("CancelExportContainer", Call::CancelExport, |_| reply(s::CANCEL_EXPORT_NONE, exact(""))));
            rows.extend(per_name("CancelImportContainer", Call::CancelImport, |_| reply(s::CANCEL_IMPORT_NONE, exact(""))));
            let all = bad_names().into_iter().map(|(_, n)| n).collect();
            rows.push(row("SetTimezone for every bad name", Call::Timezone("Europe/Paris".into(), all), reply(0, exact(TZ_BEFORE_LXD))));
            rows
        }, false, no_setup);
    }
}

/// A valid but unknown container, for every rpc, before LXD runs.
#[rustfmt::skip]
#[test]
fn unknown_container_every_rpc_before_lxd() {
    let a = || ABSENT.to_string();
    let no_rootfs = format!("failed to get container passwd db: stat / in container {ABSENT}: ");
    run(|_| vec![
        row("CreateContainer", Call::Create(a(), "https://images.invalid".into(), "x".into()), reply(s::CREATE_FAILED, exact(LXD_NOT_RUNNING))),
        row("DeleteContainer", Call::Delete(a()), reply(s::DELETE_FAILED, exact(LXD_NOT_RUNNING))),
        row("StartContainer (privilege level 999)", Call::Start(a()), reply(s::START_FAILED, exact(LXD_NOT_RUNNING))),
        row("StopContainer", Call::Stop(a()), reply(s::STOP_FAILED, exact(LXD_NOT_RUNNING))),
        row("GetContainerInfo", Call::Info(a()), reply(s::INFO_NOT_FOUND, exact(LXD_NOT_RUNNING))),
        row("GetContainerUsername", Call::Username(a()), reply(s::NAME_FAILED, exact(LXD_NOT_RUNNING))),
        row("SetUpUser", Call::SetUpUser(a(), "tester".into()), reply(s::USER_UNKNOWN, prefix(no_rootfs.clone()))),
        row("UpdateContainerDevices (action 1, -1)", Call::Devices(a(), 1), reply(s::DEVICES_FAILED, exact(LXD_NOT_RUNNING))),
        row("SetTimezone ../../etc/passwd", Call::Timezone("../../etc/passwd".into(), vec![a()]), reply(0, exact(TZ_BEFORE_LXD))),
        row("ExportContainer to ../../../etc/x", Call::Export(a(), "../../../etc/x".into()), reply(s::EXPORT_FAILED, exact(LXD_NOT_RUNNING))),
        row("ImportContainer from /etc/shadow", Call::Import(a(), "/etc/shadow".into()), reply(s::IMPORT_FAILED, exact(LXD_NOT_RUNNING))),
        row("CancelExportContainer", Call::CancelExport(a()), reply(s::CANCEL_EXPORT_NONE, exact(""))),
        row("CancelImportContainer", Call::CancelImport(a()), reply(s::CANCEL_IMPORT_NONE, exact(""))),
        row("AttachUsbToContainer port -1", Call::Attach(-1, a()), reply(s::ATTACH_FAILED, exact(USB_NOT_READY))),
        row("AttachUsbToContainer port i32::MAX", Call::Attach(i32::MAX, a()), reply(s::ATTACH_FAILED, exact(USB_NOT_READY))),
        row("DetachUsbFromContainer port i32::MIN", Call::Detach(i32::MIN), reply(s::DETACH_FAILED, exact(USB_NOT_READY))),
        row("GetDebugInfo", Call::DebugInfo, reply(0, exact("LXD not running"))),
    ], false, no_setup);
}

/// Oversized fields and messages, wrong types on the wire, garbage peers.
#[rustfmt::skip]
#[test]
fn oversized_messages_and_raw_peers() {
    const START: &str = "/vm_tools.tremplin.Tremplin/StartContainer";
    const INFO: &str = "/vm_tools.tremplin.Tremplin/GetContainerInfo";
    let no_rootfs = format!("failed to get container passwd db: stat / in container {ABSENT}: ");
    let long = "a".repeat(64);
    run(|_| vec![
        row("CreateContainer with a 64 MiB image server", Call::Create(ABSENT.into(), "x".repeat(64 << 20), "a".into()), Expect::Status(Code::OutOfRange)),
        row("SetUpUser with a 3 MiB username", Call::SetUpUser(ABSENT.into(), "u".repeat(3 << 20)), reply(s::USER_UNKNOWN, prefix(no_rootfs))),
        row("SetTimezone with 3 MiB of names", Call::Timezone("UTC".into(), vec!["n".repeat(1 << 10); 3 << 10]), reply(0, exact(TZ_BEFORE_LXD))),
        row("CreateContainer with a 3 MiB alias", Call::Create(long.clone(), "https://x".into(), "a".repeat(3 << 20)), reply(s::CREATE_FAILED, exact(name_error(&long)))),
        row("raw: valid GetContainerInfo (control)", Call::Raw(INFO, grpc_message(&len_field(1, ABSENT.as_bytes()))), Expect::Raw(RawReply::Message { bytes: 0 })),
        row("raw: privilege level out of the enum and of i32", Call::Raw(START, grpc_message(&[len_field(1, b""), varint_field(6, u64::MAX)].concat())), Expect::Raw(RawReply::Message { bytes: 0 })),
        row("raw: invalid UTF-8 container name", Call::Raw(INFO, grpc_message(&len_field(1, b"\xff\xfe"))), Expect::Raw(RawReply::TrailersOnly)),
        row("raw: wrong wire type", Call::Raw(INFO, grpc_message(&varint_field(1, 5))), Expect::Raw(RawReply::TrailersOnly)),
        row("raw: truncated protobuf", Call::Raw(INFO, grpc_message(&len_field(1, b"penguin")[..5])), Expect::Raw(RawReply::TrailersOnly)),
        row("raw: 4 GiB length prefix", Call::Raw(INFO, grpc_frame(false, u32::MAX, b"abc")), Expect::Raw(RawReply::TrailersOnly)),
        row("raw: compressed flag without an encoding", Call::Raw(INFO, grpc_frame(true, 3, b"abc")), Expect::Raw(RawReply::TrailersOnly)),
        row("raw: unknown method", Call::Raw("/vm_tools.tremplin.Tremplin/NoSuchRpc", grpc_message(b"")), Expect::Raw(RawReply::TrailersOnly)),
        row("raw: another daemon's service", Call::Raw("/vm_tools.container.Garcon/GetIcon", grpc_message(b"")), Expect::Raw(RawReply::TrailersOnly)),
        row("garbage bytes on the socket", Call::Bytes(noise(1 << 20)), Expect::Closed),
        row("an HTTP/1.1 request on the socket", Call::Bytes(b"GET /1.0 HTTP/1.1\r\nHost: lxd\r\n\r\n".to_vec()), Expect::Closed),
        row("100 half-open connections", Call::HalfOpen(100), Expect::StillAnswers),
    ], false, no_setup);
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n";

/// A fake rootfs for FAKE with the four passwd files, /etc/skel and /home.
fn fake_rootfs(rig: &Rig) {
    let root = rig.rootfs();
    for d in ["etc/skel", "home", "var/lib"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let files = [
        ("passwd", PASSWD),
        ("shadow", "root:*:19000:0:99999:7:::\n"),
        ("group", "root:x:0:\nshadow:x:42:\nsudo:x:27:\n"),
        ("gshadow", "root:*::\nshadow:*::\nsudo:*::\n"),
    ];
    for (file, text) in files {
        std::fs::write(root.join("etc").join(file), text).expect("write");
    }
}

/// The fake rootfs with /etc/passwd replaced by what `how` puts at its path.
fn hostile_passwd(rig: &Rig, how: impl FnOnce(&Path)) {
    fake_rootfs(rig);
    let passwd = rig.rootfs().join("etc/passwd");
    std::fs::remove_file(&passwd).expect("rm passwd");
    how(&passwd);
}

fn set_up_fake(label: &str, user: &str, expect: Expect) -> Vec<Row> {
    vec![row(
        label,
        Call::SetUpUser(FAKE.into(), user.into()),
        expect,
    )]
}

fn db_error() -> Expect {
    reply(
        s::USER_UNKNOWN,
        prefix("failed to get container passwd db: "),
    )
}

fn invalid_username(shown: &str) -> Expect {
    let text =
        format!("invalid username {shown}: must be non-empty without ':', ',', newline or NUL");
    reply(s::USER_FAILED, exact(text))
}

/// SetUpUser edits the container's files only: hostile passwd files on a fake rootfs.
#[rustfmt::skip]
mod set_up_user {
    use super::*;

    #[test]
    fn fifo_passwd() {
        run(|_| set_up_fake("SetUpUser with a FIFO /etc/passwd", "tester", db_error()), false,
            |rig| hostile_passwd(rig, |p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo")));
    }

    #[test]
    fn dev_zero_passwd() {
        run(|_| set_up_fake("SetUpUser with /etc/passwd -> /dev/zero", "tester", db_error()), false,
            |rig| hostile_passwd(rig, |p| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink")));
    }

    #[test]
    fn oversized_passwd() {
        run(|_| set_up_fake("SetUpUser with a 20 MiB /etc/passwd", "tester", db_error()), false,
            |rig| hostile_passwd(rig, |p| std::fs::write(p, format!("{PASSWD}#{}\n", "x".repeat(20 << 20))).expect("write")));
    }

    /// An absolute symlink resolves inside the rootfs (so: not found); the host file is untouched.
    #[test]
    fn passwd_symlink_out_of_the_rootfs() {
        run_then(|_| set_up_fake("SetUpUser with /etc/passwd -> a host file", "tester", db_error()), false, |rig| {
            let outside = rig.dir.path().join("outside-passwd");
            std::fs::write(&outside, PASSWD).expect("write");
            hostile_passwd(rig, |p| std::os::unix::fs::symlink(&outside, p).expect("symlink"));
        }, |dir| assert_eq!(std::fs::read_to_string(dir.join("outside-passwd")).expect("read"), PASSWD));
    }

    #[test]
    fn ids_beyond_u32_in_passwd() {
        let reason = "failed to get container passwd db: passwd line 2: uid \"99999999999999999999\" is not a number";
        run(|_| set_up_fake("SetUpUser with uids beyond u32 in passwd", "tester", reply(s::USER_UNKNOWN, exact(reason))), false,
            |rig| {
                fake_rootfs(rig);
                let huge = format!("{PASSWD}big:x:99999999999999999999:4294967296:b:/home/big:/bin/sh\n");
                std::fs::write(rig.rootfs().join("etc/passwd"), huge).expect("write");
            });
    }

    /// Refused names first (nothing is written), then a valid one on the same rootfs.
    #[test]
    fn hostile_usernames() {
        let fail = |what: &str| reply(s::USER_FAILED, exact(format!("failed to add user $USERNAME: {what} /home/$USERNAME in container {FAKE}: ")));
        let too_long = |r: Expect| match r { Expect::Reply(st, Reason::Exact(t)) => Expect::Reply(st, exact(t + "File name too long (os error 36)")), r => r };
        let dotdot = |r: Expect| match r { Expect::Reply(st, Reason::Exact(t)) => Expect::Reply(st, exact(t + "'..' is not allowed")), r => r };
        let rows = vec![
            row("SetUpUser with a NUL in the username", Call::SetUpUser(FAKE.into(), "a\0b".into()), invalid_username("\"a\\0b\"")),
            row("SetUpUser with a ':' in the username", Call::SetUpUser(FAKE.into(), "a:0:0".into()), invalid_username("\"a:0:0\"")),
            row("SetUpUser with a newline in the username", Call::SetUpUser(FAKE.into(), "a\nroot".into()), invalid_username("\"a\\nroot\"")),
            row("SetUpUser with an empty username", Call::SetUpUser(FAKE.into(), String::new()), invalid_username("\"\"")),
            row("SetUpUser with a 3 MiB username", Call::SetUpUser(FAKE.into(), "u".repeat(3 << 20)), too_long(fail("mkdir"))),
            row("SetUpUser with a username of .. and /", Call::SetUpUser(FAKE.into(), "../../../../escape".into()), dotdot(fail("resolve"))),
            row("SetUpUser (control: a valid name on the same rootfs)", Call::SetUpUser(FAKE.into(), "tester".into()), reply(s::USER_SUCCESS, exact(""))),
        ];
        run_then(|_| rows, false, fake_rootfs, |dir| {
            assert!(!dir.join("escape").exists() && !dir.join("no-lxd/escape").exists(), "a home outside the rootfs");
        });
    }
}

/// Rows on the tests' own LXD (adopted): what is validated before a container is touched.
#[rustfmt::skip]
#[test]
fn lxd_hostile_paths_and_image_servers() {
    let a = || ABSENT.to_string();
    let server = common::ImageServer::start(&[]);
    let export_failed = |r: &str| Expect::Report(s::EXPORTING, s::EXPORT_REPORT_FAILED, prefix(r));
    let import_failed = |r: &str| Expect::Report(s::IMPORTING, s::IMPORT_REPORT_FAILED, prefix(r));
    let create_failed = |r: &str| Expect::Report(s::CREATING, s::CREATE_REPORT_FAILED, prefix(r));
    run(|_| vec![
        row("ExportContainer to ../../../etc", Call::Export(a(), "../../../etc/x.tar.gz".into()), export_failed("invalid export path: ")),
        row("ExportContainer to the shared dir itself", Call::Export(a(), "a/..".into()), export_failed("invalid export path: ")),
        row("ImportContainer from ../../etc/shadow", Call::Import(a(), "../../etc/shadow".into()), import_failed("invalid import path: ")),
        row("SetTimezone ../../etc/passwd for an unknown container", Call::Timezone("../../etc/passwd".into(), vec![a()]),
            reply(0, prefix(format!("could not get container {ABSENT}: ")))),
        row("CreateContainer from file:///etc", Call::Create(a(), "file:///etc".into(), "passwd".into()),
            create_failed("failed to connect to simplestreams image server file:///etc: ")),
        row("CreateContainer from a closed port", Call::Create(a(), "https://127.0.0.1:1".into(), "debian/12".into()),
            create_failed("failed to connect to simplestreams image server https://127.0.0.1:1: ")),
        row("CreateContainer from a 64 KiB URL", Call::Create(a(), format!("https://127.0.0.1:1/{}", "u".repeat(64 << 10)), "x".into()),
            create_failed("failed to connect to simplestreams image server https://127.0.0.1:1/uuu")),
        row("CreateContainer with alias ../../../etc/passwd", Call::Create(a(), server.url.clone(), "../../../etc/passwd".into()),
            create_failed("failed to get alias \"../../../etc/passwd\" from https://127.0.0.1:")),
        row("CreateContainer with a 64 KiB hex alias (taken as a fingerprint)", Call::Create(a(), server.url.clone(), "a".repeat(64 << 10)),
            create_failed("failed to create container from image \"aaaa")),
    ], true, no_setup);
}
