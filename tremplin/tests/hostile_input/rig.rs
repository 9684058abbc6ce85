//! The row types of the tremplin bad-input table and the rig that walks them: one tremplin
//! process (and host stand-in) per test, each row's call and check, then the normal call
//! within 1 s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::events::Payload;
use crostini_host::{HostConfig, RunningHost};
use crostini_proto::vm_tools::tremplin as pb;
use crostini_proto::vm_tools::tremplin::tremplin_client::TremplinClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::raw_grpc::{self, RawReply};
use crate::{common, ABSENT, FAKE};

const BIN: &str = env!("CARGO_BIN_EXE_tremplin");

/// What a reply's failure reason must be.
#[derive(Debug, Clone)]
pub enum Reason {
    Exact(String),
    Prefix(String),
}

pub fn exact(s: impl Into<String>) -> Reason {
    Reason::Exact(s.into())
}

pub fn prefix(s: impl Into<String>) -> Reason {
    Reason::Prefix(s.into())
}

pub enum Call {
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

pub enum Expect {
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

pub struct Row {
    name: String,
    call: Call,
    expect: Expect,
}

pub fn row(name: impl Into<String>, call: Call, expect: Expect) -> Row {
    Row {
        name: name.into(),
        call,
        expect,
    }
}

/// A running tremplin with its host stand-in; killed when dropped.
pub struct Rig {
    pub dir: tempfile::TempDir,
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

    pub fn rootfs(&self) -> PathBuf {
        self.lxd_dir().join("containers").join(FAKE).join("rootfs")
    }

    /// Starts tremplin; with `lxd`, against the tests' LXD, adopted through StartLxd.
    pub async fn start(lxd: bool) -> Rig {
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
                return raw_grpc::half_open(&self.socket(), *n).await;
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
                        println!("{name}: final report {got}: {got_reason}");
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

/// Starts one tremplin (with LXD or not), runs `setup`, walks the rows `rows` builds (from the
/// rig's temp dir).
pub fn run(rows: impl FnOnce(&Path) -> Vec<Row>, lxd: bool, setup: fn(&Rig)) {
    run_then(rows, lxd, setup, |_| {});
}

/// [`run`], then `after` on the rig's temp dir (checks of what the rows must not have done).
pub fn run_then(
    rows: impl FnOnce(&Path) -> Vec<Row>,
    lxd: bool,
    setup: fn(&Rig),
    after: fn(&Path),
) {
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
            after(rig.dir.path());
        });
}

pub fn no_setup(_: &Rig) {}
