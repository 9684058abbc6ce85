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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::events::Payload;
use crostini_host::{HostConfig, RunningHost};
use crostini_proto::vm_tools::tremplin as pb;
use crostini_proto::vm_tools::tremplin::tremplin_client::TremplinClient;
use raw_grpc::{grpc_frame, grpc_message, RawReply};
use tonic::transport::Channel;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_tremplin");
const LXD_NOT_RUNNING: &str = "LXD is not running";
const TZ_BEFORE_LXD: &str = "Ignoring SetTimezone request before LXD is running";
const USB_NOT_READY: &str = "USB manager not ready";
/// A valid container name that no LXD knows.
const ABSENT: &str = "tpl-hostile-absent";
/// The container whose fake rootfs the SetUpUser rows edit.
const FAKE: &str = "tpl-hostile-fake";

/// What a reply's failure reason must be.
#[derive(Debug, Clone)]
enum Reason {
    Exact(String),
    Prefix(String),
}

fn exact(s: impl Into<String>) -> Reason {
    Reason::Exact(s.into())
}

fn prefix(s: impl Into<String>) -> Reason {
    Reason::Prefix(s.into())
}

enum Call {
    Create(String, String, String),
    Delete(String),
    Start(String),
    Stop(String),
    Info(String),
    Username(String),
    SetUpUser(String, String),
    Devices(String, i32),
    Timezone(String, Vec<String>),
    Export(String, String),
    Import(String, String),
    CancelExport(String),
    CancelImport(String),
    Attach(i32, String),
    Detach(i32),
    DebugInfo,
    /// A hand-made gRPC request: method, length-prefixed body.
    Raw(&'static str, Vec<u8>),
    /// Bytes on a fresh connection.
    Bytes(Vec<u8>),
    /// Connections holding half an HTTP/2 preface open during the normal call.
    HalfOpen(usize),
}

enum Expect {
    /// The reply's status enum (or success count / 0) and failure reason (or the reasons
    /// joined by '\n', or the debug text).
    Reply(i32, Reason),
    Status(Code),
    Raw(RawReply),
    Closed,
    StillAnswers,
    /// The call answers `status`, then the host gets a final report with `report_status`
    /// and a reason matching.
    Report(i32, i32, Reason),
}

struct Row {
    name: String,
    call: Call,
    expect: Expect,
}

fn row(name: impl Into<String>, call: Call, expect: Expect) -> Row {
    Row {
        name: name.into(),
        call,
        expect,
    }
}

/// A running tremplin with its host stand-in; killed when dropped.
struct Rig {
    dir: tempfile::TempDir,
    host: RunningHost,
    child: Child,
    client: TremplinClient<Channel>,
    lxd: bool,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rig {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("tremplin.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tremplin.log")).unwrap_or_default()
    }

    /// The fake LXD dir of the no-LXD rigs (where `--lxd-socket` points).
    fn lxd_dir(&self) -> PathBuf {
        self.dir.path().join("no-lxd")
    }

    fn rootfs(&self) -> PathBuf {
        self.lxd_dir().join("containers").join(FAKE).join("rootfs")
    }

    /// Starts tremplin; with `lxd`, against the tests' LXD, adopted through StartLxd.
    async fn start(lxd: bool) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = if lxd {
            common::lxd_socket()
        } else {
            dir.path().join("no-lxd/unix.socket")
        };
        std::fs::create_dir_all(dir.path().join("no-lxd")).expect("mkdir");
        let host = RunningHost::start(HostConfig {
            tremplin_listener: Some("tcp://127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        })
        .await
        .expect("host stand-in");
        let listen = format!("unix://{}", dir.path().join("tremplin.sock").display());
        let log = std::fs::File::create(dir.path().join("tremplin.log")).expect("log");
        let child = Command::new(BIN)
            .args(["-lxd_subnet", common::SUBNET, "--listen", &listen])
            .arg("--host-address")
            .arg(host.tremplin_listener_address().expect("bound").to_string())
            .args(["--crash-address", "none", "--log-stderr"])
            .arg(format!("--lxd-socket={}", socket.display()))
            .args(common::paths_args(dir.path()))
            .env_remove("LXD_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tremplin");
        let client = crostini_host::clients::tremplin(&listen.parse::<Address>().expect("addr"))
            .expect("client");
        let mut rig = Rig {
            dir,
            host,
            child,
            client,
            lxd,
        };
        if let Err(e) = rig
            .host
            .wait_for(
                |e| matches!(e.payload, Payload::TremplinReady(_)),
                Duration::from_secs(30),
            )
            .await
        {
            panic!("no TremplinReady: {e}; log:\n{}", rig.log());
        }
        if lxd {
            rig.start_lxd().await;
        }
        rig
    }

    async fn start_lxd(&mut self) {
        let from = self.host.state.events.next_seq();
        let r = self
            .client
            .start_lxd(pb::StartLxdRequest {
                reset_lxd_db: false,
            })
            .await
            .expect("StartLxd")
            .into_inner();
        if r.status == pb::start_lxd_response::Status::Starting as i32 {
            let e = self
                .host
                .wait_for_from(
                    from,
                    |e| matches!(e.payload, Payload::UpdateStartLxdStatus(_)),
                    Duration::from_secs(300),
                )
                .await
                .unwrap_or_else(|e| panic!("StartLxd: {e}; log:\n{}", self.log()));
            let Payload::UpdateStartLxdStatus(p) = &e.payload else {
                unreachable!()
            };
            assert_eq!(
                p.status,
                pb::start_lxd_progress::Status::Started as i32,
                "{}",
                p.failure_reason
            );
        }
    }

    /// The normal call: GetDebugInfo (no LXD) or GetContainerInfo of an absent container.
    async fn normal_call(&mut self, after: &str) -> Duration {
        let started = Instant::now();
        let within = Duration::from_secs(1);
        if self.lxd {
            let request = pb::GetContainerInfoRequest {
                container_name: ABSENT.into(),
            };
            let reply = tokio::time::timeout(within, self.client.get_container_info(request)).await;
            let reply = reply
                .unwrap_or_else(|_| panic!("after {after}: no GetContainerInfo within 1 s"))
                .unwrap_or_else(|s| panic!("after {after}: {s}"))
                .into_inner();
            let not_found = pb::get_container_info_response::Status::NotFound as i32;
            assert_eq!(reply.status, not_found, "after {after}");
        } else {
            let reply = tokio::time::timeout(
                within,
                self.client.get_debug_info(pb::GetDebugInfoRequest {}),
            )
            .await;
            let reply = reply
                .unwrap_or_else(|_| panic!("after {after}: no GetDebugInfo within 1 s"))
                .unwrap_or_else(|s| panic!("after {after}: {s}"))
                .into_inner();
            assert_eq!(reply.debug_information, "LXD not running", "after {after}");
        }
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "after {after}: tremplin exited {status}; log:\n{}",
                self.log()
            );
        }
        started.elapsed()
    }

    /// Walks `rows`, each followed by the normal call.
    async fn walk(&mut self, rows: Vec<Row>) {
        assert!(!rows.is_empty());
        for row in rows {
            let started = Instant::now();
            let held = self.perform(&row).await;
            let took = started.elapsed();
            let normal = self.normal_call(&row.name).await;
            drop(held);
            println!("{}: {took:?}, then the normal call in {normal:?}", row.name);
        }
    }

    async fn perform(&mut self, row: &Row) -> Vec<tokio::net::UnixStream> {
        let name = &row.name;
        let within = Duration::from_secs(10);
        match (&row.call, &row.expect) {
            (Call::Raw(path, data), Expect::Raw(want)) => {
                let got = raw_grpc::unary(&self.socket(), path, data, within).await;
                match (want, &got) {
                    (RawReply::Message { .. }, RawReply::Message { bytes }) => {
                        assert!(*bytes >= 5, "{name}: {got:?}")
                    }
                    _ => assert_eq!(&got, want, "{name}"),
                }
            }
            (Call::Bytes(bytes), Expect::Closed) => {
                let closed = raw_grpc::server_closes_after(&self.socket(), bytes, within).await;
                assert!(closed, "{name}: tremplin kept the connection open");
            }
            (Call::HalfOpen(n), Expect::StillAnswers) => {
                use tokio::io::AsyncWriteExt;
                let mut held = Vec::new();
                for _ in 0..*n {
                    let mut s = tokio::net::UnixStream::connect(self.socket())
                        .await
                        .expect("connect");
                    s.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
                    held.push(s);
                }
                return held;
            }
            (call, expect) => {
                let from = self.host.state.events.next_seq();
                let result = tokio::time::timeout(within, typed(&mut self.client, call))
                    .await
                    .unwrap_or_else(|_| panic!("{name}: no answer within {within:?}"));
                match (result, expect) {
                    (Err(status), Expect::Status(code)) => {
                        assert_eq!(status.code(), *code, "{name}: {status}")
                    }
                    (Ok((status, reason)), Expect::Reply(want, want_reason)) => {
                        assert_eq!(status, *want, "{name}: status ({reason})");
                        check_reason(name, &reason, want_reason);
                    }
                    (Ok((status, reason)), Expect::Report(want, final_status, final_reason)) => {
                        assert_eq!(status, *want, "{name}: status ({reason})");
                        let (got, got_reason) = self.final_report(from, name).await;
                        assert_eq!(got, *final_status, "{name}: report ({got_reason})");
                        check_reason(name, &got_reason, final_reason);
                    }
                    (result, _) => panic!("{name}: unexpected outcome {result:?}"),
                }
            }
        }
        Vec::new()
    }

    /// The first create/export/import report that is not a progress one.
    async fn final_report(&self, from: u64, name: &str) -> (i32, String) {
        let event = self
            .host
            .wait_for_from(
                from,
                |e| final_report(&e.payload).is_some(),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: no final report: {e}; log:\n{}", self.log()));
        final_report(&event.payload).expect("matched")
    }
}

fn final_report(payload: &Payload) -> Option<(i32, String)> {
    use pb::container_creation_progress::Status as C;
    use pb::container_export_progress::Status as E;
    use pb::container_import_progress::Status as I;
    match payload {
        Payload::UpdateCreateStatus(p) if p.status != C::Downloading as i32 => {
            Some((p.status, p.failure_reason.clone()))
        }
        Payload::UpdateExportStatus(p) if p.status != E::ExportingStreaming as i32 => {
            Some((p.status, p.failure_reason.clone()))
        }
        Payload::UpdateImportStatus(p)
            if p.status != I::ImportingUpload as i32 && p.status != I::ImportingUnpack as i32 =>
        {
            Some((p.status, p.failure_reason.clone()))
        }
        _ => None,
    }
}

fn check_reason(name: &str, got: &str, want: &Reason) {
    match want {
        Reason::Exact(w) => assert_eq!(got, w, "{name}: reason"),
        Reason::Prefix(p) => assert!(
            got.starts_with(p.as_str()),
            "{name}: reason {got:?} does not start with {p:?}"
        ),
    }
}

/// Sends a typed call; (status or count, reason text).
async fn typed(
    c: &mut TremplinClient<Channel>,
    call: &Call,
) -> Result<(i32, String), tonic::Status> {
    let n = |s: &String| s.clone();
    Ok(match call {
        Call::Create(name, server, alias) => {
            let r = c
                .create_container(pb::CreateContainerRequest {
                    container_name: n(name),
                    image_server: n(server),
                    image_alias: n(alias),
                    ..Default::default()
                })
                .await?
                .into_inner();
            (r.status, r.failure_reason)
        }
        Call::Delete(name) => {
            let r = c
                .delete_container(pb::DeleteContainerRequest {
                    container_name: n(name),
                })
                .await?
                .into_inner();
            (r.status, r.failure_reason)
        }
        Call::Start(name) => {
            let request = pb::StartContainerRequest {
                container_name: n(name),
                privilege_level: 999,
                ..Default::default()
            };
            let r = c.start_container(request).await?.into_inner();
            (r.status, r.failure_reason)
        }
        Call::Stop(name) => {
            let r = c
                .stop_container(pb::StopContainerRequest {
                    container_name: n(name),
                })
                .await?
                .into_inner();
            (r.status, r.failure_reason)
        }
        Call::Info(name) => {
            let r = c
                .get_container_info(pb::GetContainerInfoRequest {
                    container_name: n(name),
                })
                .await?
                .into_inner();
            (r.status, r.failure_reason)
        }
        Call::Username(name) => {
            let r = c
                .get_container_username(pb::GetContainerUsernameRequest {
                    container_name: n(name),
                })
                .await?
                .into_inner();
            (r.status, r.failure_reason)
        }
        Call::SetUpUser(name, user) => {
            let request = pb::SetUpUserRequest {
                container_name: n(name),
                container_username: n(user),
            };
            let r = c.set_up_user(request).await?.into_inner();
            (r.status, r.failure_reason)
        }
        Call::Devices(name, action) => {
            let updates = [("microphone".to_string(), *action), ("x".repeat(4096), -1)]
                .into_iter()
                .collect();
            let request = pb::UpdateContainerDevicesRequest {
                container_name: n(name),
                updates,
            };
            let r = c.update_container_devices(request).await?.into_inner();
            (r.status, r.failure_reason)
        }
        Call::Timezone(tz, names) => {
            let request = pb::SetTimezoneRequest {
                timezone_name: n(tz),
                posix_tz_string: n(tz),
                container_names: names.clone(),
            };
            let r = c.set_timezone(request).await?.into_inner();
            (r.successes, r.failure_reasons.join("\n"))
        }
        Call::Export(name, path) => {
            let request = pb::ExportContainerRequest {
                container_name: n(name),
                export_path: n(path),
            };
            let r = c.export_container(request).await?.into_inner();
            (r.status, r.failure_reason)
        }
        Call::Import(name, path) => {
            let request = pb::ImportContainerRequest {
                container_name: n(name),
                import_path: n(path),
                ..Default::default()
            };
            let r = c.import_container(request).await?.into_inner();
            (r.status, r.failure_reason)
        }
        Call::CancelExport(name) => {
            let request = pb::CancelExportContainerRequest {
                in_progress_container_name: n(name),
            };
            (
                c.cancel_export_container(request)
                    .await?
                    .into_inner()
                    .status,
                String::new(),
            )
        }
        Call::CancelImport(name) => {
            let request = pb::CancelImportContainerRequest {
                in_progress_container_name: n(name),
            };
            (
                c.cancel_import_container(request)
                    .await?
                    .into_inner()
                    .status,
                String::new(),
            )
        }
        Call::Attach(port, name) => {
            let request = pb::AttachUsbToContainerRequest {
                port_num: *port,
                container_name: n(name),
            };
            let r = c.attach_usb_to_container(request).await?.into_inner();
            (r.status, r.failure_reason)
        }
        Call::Detach(port) => {
            let r = c
                .detach_usb_from_container(pb::DetachUsbFromContainerRequest { port_num: *port })
                .await?
                .into_inner();
            (r.status, r.failure_reason)
        }
        Call::DebugInfo => (
            0,
            c.get_debug_info(pb::GetDebugInfoRequest {})
                .await?
                .into_inner()
                .debug_information,
        ),
        Call::Raw(..) | Call::Bytes(_) | Call::HalfOpen(_) => unreachable!("not a typed call"),
    })
}

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

fn run(rows: impl FnOnce(&Path) -> Vec<Row>, lxd: bool, setup: fn(&Rig)) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let mut rig = Rig::start(lxd).await;
            setup(&rig);
            let rows = rows(rig.dir.path());
            rig.walk(rows).await;
        });
}

fn no_setup(_: &Rig) {}

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

#[test]
fn bad_names_create_container() {
    run(
        |_| {
            per_name(
                "CreateContainer",
                |n| Call::Create(n, "https://images.invalid".into(), "debian/12".into()),
                |n| reply(s::CREATE_FAILED, exact(name_error(n))),
            )
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_delete_container() {
    run(
        |_| {
            per_name("DeleteContainer", Call::Delete, |n| {
                reply(s::DELETE_GONE, exact(name_error(n)))
            })
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_start_container() {
    run(
        |_| {
            per_name("StartContainer", Call::Start, |n| {
                reply(
                    s::START_FAILED,
                    exact(format!("failed to find container: {}", name_error(n))),
                )
            })
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_stop_container() {
    run(
        |_| {
            per_name("StopContainer", Call::Stop, |n| {
                reply(s::STOP_GONE, exact(name_error(n)))
            })
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_get_container_info() {
    run(
        |_| {
            per_name("GetContainerInfo", Call::Info, |n| {
                reply(
                    s::INFO_NOT_FOUND,
                    exact(format!("failed to find container: {}", name_error(n))),
                )
            })
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_get_container_username() {
    run(
        |_| {
            per_name("GetContainerUsername", Call::Username, |n| {
                reply(
                    s::NAME_NOT_FOUND,
                    exact(format!("failed to find container: {}", name_error(n))),
                )
            })
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_set_up_user() {
    run(
        |_| {
            per_name(
                "SetUpUser",
                |n| Call::SetUpUser(n, "tester".into()),
                |n| {
                    reply(
                        s::USER_UNKNOWN,
                        exact(format!(
                            "failed to get container passwd db: {}",
                            name_error(n)
                        )),
                    )
                },
            )
        },
        false,
        no_setup,
    );
}

#[test]
fn bad_names_update_container_devices() {
    run(
        |_| {
            per_name(
                "UpdateContainerDevices",
                |n| Call::Devices(n, 999),
                |_| reply(s::DEVICES_NO_SUCH, exact("")),
            )
        },
        false,
        no_setup,
    );
}

/// Before LXD runs, the rpcs that need it answer "not running" whatever the name.
#[test]
fn bad_names_export_import_attach_before_lxd() {
    run(
        |_| {
            let mut rows = per_name(
                "ExportContainer",
                |n| Call::Export(n, "x.tar.gz".into()),
                |_| reply(s::EXPORT_FAILED, exact(LXD_NOT_RUNNING)),
            );
            rows.extend(per_name(
                "ImportContainer",
                |n| Call::Import(n, "x.tar.gz".into()),
                |_| reply(s::IMPORT_FAILED, exact(LXD_NOT_RUNNING)),
            ));
            rows.extend(per_name(
                "AttachUsbToContainer",
                |n| Call::Attach(1, n),
                |_| reply(s::ATTACH_FAILED, exact(USB_NOT_READY)),
            ));
            rows.extend(per_name(
                "CancelExportContainer",
                Call::CancelExport,
                |_| reply(s::CANCEL_EXPORT_NONE, exact("")),
            ));
            rows.extend(per_name(
                "CancelImportContainer",
                Call::CancelImport,
                |_| reply(s::CANCEL_IMPORT_NONE, exact("")),
            ));
            rows.push(row(
                "SetTimezone for every bad name",
                Call::Timezone(
                    "Europe/Paris".into(),
                    bad_names().into_iter().map(|(_, n)| n).collect(),
                ),
                reply(0, exact(TZ_BEFORE_LXD)),
            ));
            rows
        },
        false,
        no_setup,
    );
}

/// A valid but unknown container, for every rpc, before LXD runs.
#[test]
fn unknown_container_every_rpc_before_lxd() {
    let a = || ABSENT.to_string();
    let no_rootfs = format!("failed to get container passwd db: stat / in container {ABSENT}: ");
    run(
        |_| {
            vec![
                row(
                    "CreateContainer",
                    Call::Create(a(), "https://images.invalid".into(), "x".into()),
                    reply(s::CREATE_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "DeleteContainer",
                    Call::Delete(a()),
                    reply(s::DELETE_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "StartContainer",
                    Call::Start(a()),
                    reply(s::START_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "StopContainer",
                    Call::Stop(a()),
                    reply(s::STOP_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "GetContainerInfo",
                    Call::Info(a()),
                    reply(s::INFO_NOT_FOUND, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "GetContainerUsername",
                    Call::Username(a()),
                    reply(s::NAME_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "SetUpUser",
                    Call::SetUpUser(a(), "tester".into()),
                    reply(s::USER_UNKNOWN, prefix(no_rootfs.clone())),
                ),
                row(
                    "UpdateContainerDevices",
                    Call::Devices(a(), 1),
                    reply(s::DEVICES_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "SetTimezone",
                    Call::Timezone("../../etc/passwd".into(), vec![a()]),
                    reply(0, exact(TZ_BEFORE_LXD)),
                ),
                row(
                    "ExportContainer",
                    Call::Export(a(), "../../../etc/x".into()),
                    reply(s::EXPORT_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "ImportContainer",
                    Call::Import(a(), "/etc/shadow".into()),
                    reply(s::IMPORT_FAILED, exact(LXD_NOT_RUNNING)),
                ),
                row(
                    "CancelExportContainer",
                    Call::CancelExport(a()),
                    reply(s::CANCEL_EXPORT_NONE, exact("")),
                ),
                row(
                    "CancelImportContainer",
                    Call::CancelImport(a()),
                    reply(s::CANCEL_IMPORT_NONE, exact("")),
                ),
                row(
                    "AttachUsbToContainer port -1",
                    Call::Attach(-1, a()),
                    reply(s::ATTACH_FAILED, exact(USB_NOT_READY)),
                ),
                row(
                    "AttachUsbToContainer port i32::MAX",
                    Call::Attach(i32::MAX, a()),
                    reply(s::ATTACH_FAILED, exact(USB_NOT_READY)),
                ),
                row(
                    "DetachUsbFromContainer port i32::MIN",
                    Call::Detach(i32::MIN),
                    reply(s::DETACH_FAILED, exact(USB_NOT_READY)),
                ),
                row(
                    "GetDebugInfo",
                    Call::DebugInfo,
                    reply(0, exact("LXD not running")),
                ),
            ]
        },
        false,
        no_setup,
    );
}

/// Oversized fields and messages, wrong types on the wire, garbage peers.
#[test]
fn oversized_messages_and_raw_peers() {
    const START: &str = "/vm_tools.tremplin.Tremplin/StartContainer";
    const INFO: &str = "/vm_tools.tremplin.Tremplin/GetContainerInfo";
    use raw_grpc::pb::{len_field, varint_field};
    run(
        |_| {
            vec![
                row(
                    "CreateContainer with a 64 MiB image server",
                    Call::Create(ABSENT.into(), "x".repeat(64 << 20), "a".into()),
                    Expect::Status(Code::OutOfRange),
                ),
                row(
                    "SetUpUser with a 3 MiB username",
                    Call::SetUpUser(ABSENT.into(), "u".repeat(3 << 20)),
                    reply(
                        s::USER_UNKNOWN,
                        prefix(format!(
                            "failed to get container passwd db: stat / in container {ABSENT}: "
                        )),
                    ),
                ),
                row(
                    "SetTimezone with 3 MiB of names",
                    Call::Timezone("UTC".into(), vec!["n".repeat(1 << 10); 3 << 10]),
                    reply(0, exact(TZ_BEFORE_LXD)),
                ),
                row(
                    "CreateContainer with a 3 MiB alias",
                    Call::Create("a".repeat(64), "https://x".into(), "a".repeat(3 << 20)),
                    reply(s::CREATE_FAILED, exact(name_error(&"a".repeat(64)))),
                ),
                row(
                    "raw: valid GetContainerInfo (control)",
                    Call::Raw(INFO, grpc_message(&len_field(1, ABSENT.as_bytes()))),
                    Expect::Raw(RawReply::Message { bytes: 0 }),
                ),
                row(
                    "raw: privilege level out of the enum and of i32",
                    Call::Raw(
                        START,
                        grpc_message(&[len_field(1, b""), varint_field(6, u64::MAX)].concat()),
                    ),
                    Expect::Raw(RawReply::Message { bytes: 0 }),
                ),
                row(
                    "raw: invalid UTF-8 container name",
                    Call::Raw(INFO, grpc_message(&len_field(1, b"\xff\xfe"))),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "raw: wrong wire type",
                    Call::Raw(INFO, grpc_message(&varint_field(1, 5))),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "raw: truncated protobuf",
                    Call::Raw(INFO, grpc_message(&len_field(1, b"penguin")[..5])),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "raw: 4 GiB length prefix",
                    Call::Raw(INFO, grpc_frame(false, u32::MAX, b"abc")),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "raw: compressed flag without an encoding",
                    Call::Raw(INFO, grpc_frame(true, 3, b"abc")),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "raw: unknown method",
                    Call::Raw("/vm_tools.tremplin.Tremplin/NoSuchRpc", grpc_message(b"")),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "raw: unknown service",
                    Call::Raw("/vm_tools.container.Garcon/GetIcon", grpc_message(b"")),
                    Expect::Raw(RawReply::TrailersOnly),
                ),
                row(
                    "garbage bytes on the socket",
                    Call::Bytes(noise(1 << 20)),
                    Expect::Closed,
                ),
                row(
                    "an HTTP/1.1 request on the socket",
                    Call::Bytes(b"GET /1.0 HTTP/1.1\r\nHost: lxd\r\n\r\n".to_vec()),
                    Expect::Closed,
                ),
                row(
                    "100 half-open connections",
                    Call::HalfOpen(100),
                    Expect::StillAnswers,
                ),
            ]
        },
        false,
        no_setup,
    );
}

fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n";
const GROUP: &str = "root:x:0:\nshadow:x:42:\nsudo:x:27:\n";

/// A fake rootfs for FAKE with the four passwd files and /home.
fn fake_rootfs(rig: &Rig) {
    let root = rig.rootfs();
    for d in ["etc/skel", "home", "var/lib"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    for (f, text) in [
        ("passwd", PASSWD),
        ("shadow", "root:*:19000:0:99999:7:::\n"),
        ("group", GROUP),
        ("gshadow", "root:*::\nshadow:*::\nsudo:*::\n"),
    ] {
        std::fs::write(root.join("etc").join(f), text).expect("write");
    }
}

fn replace_passwd(rig: &Rig, how: impl FnOnce(&Path)) {
    let passwd = rig.rootfs().join("etc/passwd");
    std::fs::remove_file(&passwd).expect("rm passwd");
    how(&passwd);
}

fn db_error() -> Reason {
    prefix("failed to get container passwd db: ")
}

/// SetUpUser on a container whose passwd database is hostile (each row on a fresh rootfs).
#[test]
fn set_up_user_fifo_passwd() {
    run(
        |_| {
            vec![row(
                "SetUpUser with a FIFO /etc/passwd",
                Call::SetUpUser(FAKE.into(), "tester".into()),
                reply(s::USER_UNKNOWN, db_error()),
            )]
        },
        false,
        |rig| {
            fake_rootfs(rig);
            replace_passwd(rig, |p| {
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .expect("fifo")
            })
        },
    );
}

#[test]
fn set_up_user_dev_zero_passwd() {
    run(
        |_| {
            vec![row(
                "SetUpUser with /etc/passwd -> /dev/zero",
                Call::SetUpUser(FAKE.into(), "tester".into()),
                reply(s::USER_UNKNOWN, db_error()),
            )]
        },
        false,
        |rig| {
            fake_rootfs(rig);
            replace_passwd(rig, |p| {
                std::os::unix::fs::symlink("/dev/zero", p).expect("symlink")
            })
        },
    );
}

#[test]
fn set_up_user_oversized_passwd() {
    run(
        |_| {
            vec![row(
                "SetUpUser with a 20 MiB /etc/passwd",
                Call::SetUpUser(FAKE.into(), "tester".into()),
                reply(s::USER_UNKNOWN, db_error()),
            )]
        },
        false,
        |rig| {
            fake_rootfs(rig);
            replace_passwd(rig, |p| {
                std::fs::write(p, format!("{PASSWD}#{}\n", "x".repeat(20 << 20))).expect("write")
            })
        },
    );
}

/// An absolute symlink out of the rootfs must resolve inside it (and so not be found), and the
/// host file must stay untouched.
#[test]
fn set_up_user_passwd_symlink_out_of_the_rootfs() {
    run(
        |dir| {
            let outside = dir.join("outside-passwd");
            std::fs::write(&outside, PASSWD).expect("write");
            vec![row(
                "SetUpUser with /etc/passwd -> a host file",
                Call::SetUpUser(FAKE.into(), "tester".into()),
                reply(s::USER_UNKNOWN, db_error()),
            )]
        },
        false,
        |rig| {
            fake_rootfs(rig);
            let outside = rig.dir.path().join("outside-passwd");
            replace_passwd(rig, |p| {
                std::os::unix::fs::symlink(&outside, p).expect("symlink")
            });
        },
    );
}

#[test]
fn set_up_user_hostile_usernames() {
    run(
        |_| {
            vec![
        row("SetUpUser with a NUL in the username", Call::SetUpUser(FAKE.into(), "a\0b".into()),
            reply(s::USER_FAILED, exact("invalid username \"a\\0b\": must be non-empty without ':', ',', newline or NUL"))),
        row("SetUpUser with a ':' in the username", Call::SetUpUser(FAKE.into(), "a:0:0".into()),
            reply(s::USER_FAILED, exact("invalid username \"a:0:0\": must be non-empty without ':', ',', newline or NUL"))),
        row("SetUpUser with a newline in the username", Call::SetUpUser(FAKE.into(), "a\nroot".into()),
            reply(s::USER_FAILED, exact("invalid username \"a\\nroot\": must be non-empty without ':', ',', newline or NUL"))),
        row("SetUpUser with an empty username", Call::SetUpUser(FAKE.into(), String::new()),
            reply(s::USER_FAILED, exact("invalid username \"\": must be non-empty without ':', ',', newline or NUL"))),
        row("SetUpUser with a 3 MiB username", Call::SetUpUser(FAKE.into(), "u".repeat(3 << 20)),
            reply(s::USER_FAILED, exact(format!("failed to add user $USERNAME: mkdir /home/$USERNAME in container {FAKE}: File name too long (os error 36)")))),
        row("SetUpUser with a username of .. and /", Call::SetUpUser(FAKE.into(), "../../../../escape".into()),
            reply(s::USER_FAILED, exact(format!("failed to add user $USERNAME: resolve /home/$USERNAME in container {FAKE}: '..' is not allowed")))),
            row(
                "SetUpUser (control: a valid name on the same rootfs)",
                Call::SetUpUser(FAKE.into(), "tester".into()),
                reply(s::USER_SUCCESS, exact("")),
            ),
    ]
        },
        false,
        fake_rootfs,
    );
}

#[test]
fn set_up_user_huge_ids_in_passwd() {
    run(
        |_| {
            vec![row(
                "SetUpUser with uids beyond u32 in passwd",
                Call::SetUpUser(FAKE.into(), "tester".into()),
                reply(
                s::USER_UNKNOWN,
                exact("failed to get container passwd db: passwd line 2: uid \"99999999999999999999\" is not a number"),
            ),
            )]
        },
        false,
        |rig| {
            fake_rootfs(rig);
            let huge = format!("{PASSWD}big:x:99999999999999999999:4294967296:b:/home/big:/bin/sh\nneg:x:-1:-1::/:/bin/sh\n");
            std::fs::write(rig.rootfs().join("etc/passwd"), huge).expect("write");
        },
    );
}

/// Rows on the tests' own LXD (adopted): what is validated before the container is touched.
#[test]
fn lxd_hostile_paths_and_image_servers() {
    let a = || ABSENT.to_string();
    run(
        |_| {
            vec![
                row(
                    "ExportContainer to ../../../etc",
                    Call::Export(a(), "../../../etc/x.tar.gz".into()),
                    Expect::Report(
                        s::EXPORTING,
                        s::EXPORT_REPORT_FAILED,
                        prefix("invalid export path: "),
                    ),
                ),
                row(
                    "ExportContainer to the shared dir itself",
                    Call::Export(a(), "a/..".into()),
                    Expect::Report(
                        s::EXPORTING,
                        s::EXPORT_REPORT_FAILED,
                        prefix("invalid export path: "),
                    ),
                ),
                row(
                    "ImportContainer from ../../etc/shadow",
                    Call::Import(a(), "../../etc/shadow".into()),
                    Expect::Report(
                        s::IMPORTING,
                        s::IMPORT_REPORT_FAILED,
                        prefix("invalid import path: "),
                    ),
                ),
                row(
                    "SetTimezone ../../etc/passwd for an unknown container",
                    Call::Timezone("../../etc/passwd".into(), vec![a()]),
                    reply(0, prefix(format!("could not get container {ABSENT}: "))),
                ),
                row(
                    "CreateContainer from file:///etc",
                    Call::Create(a(), "file:///etc".into(), "passwd".into()),
                    Expect::Report(s::CREATING, s::CREATE_REPORT_FAILED, prefix("")),
                ),
                row(
                    "CreateContainer from a closed port",
                    Call::Create(a(), "https://127.0.0.1:1".into(), "debian/12".into()),
                    Expect::Report(s::CREATING, s::CREATE_REPORT_FAILED, prefix("")),
                ),
                row(
                    "CreateContainer with alias ../../../etc/passwd",
                    Call::Create(
                        a(),
                        "https://127.0.0.1:1".into(),
                        "../../../etc/passwd".into(),
                    ),
                    Expect::Report(s::CREATING, s::CREATE_REPORT_FAILED, prefix("")),
                ),
            ]
        },
        true,
        no_setup,
    );
}

#[test]
fn the_table_has_at_least_40_rows() {
    // Rows per test above (bad names: 7 names x 8 rpcs + 5 x 7 + 1; unknown: 17; raw: 16;
    // SetUpUser: 9; LXD: 7).
    let per_name_rows = bad_names().len() * (8 + 5) + 1;
    assert!(per_name_rows + 17 + 16 + 9 + 7 >= 40);
}
