//! The row types of the garcon bad-input table and the runner: one sandbox and one garcon per
//! row, the hostile call, its check, then the normal call within 1 s.

use std::time::{Duration, Instant};

use crostini_host::{Payload, RunningHost};
use crostini_proto::vm_tools::container::add_file_watch_response::Status as WatchStatus;
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::{
    AddFileWatchRequest, DesktopIcon, IconRequest, LaunchApplicationRequest, LaunchVshdRequest,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::common::{app_ids, good_icon, wait_event, Sandbox, Server};
use crate::raw_grpc::{self, RawReply};

/// One row: what to create before garcon starts, what to send, what must come back.
pub struct Case {
    pub setup: fn(&Sandbox),
    pub call: fn(&Sandbox) -> Call,
    pub expect: Expect,
    /// Extra garcon environment.
    pub env: &'static [(&'static str, &'static str)],
    /// Deadline of the hostile call itself.
    pub within: Duration,
}

pub enum Call {
    GetIcon(Vec<String>, i32, i32),
    /// `n` GetIcon calls of one id at once.
    GetIconParallel(&'static str, usize),
    Launch(String, Vec<String>),
    AddFileWatch(String),
    LaunchVshd(u32),
    /// One hand-made gRPC request: method path, request body (length-prefixed).
    Raw(&'static str, Vec<u8>),
    /// Bytes written on a fresh connection.
    Bytes(Vec<u8>),
    /// `n` connections that send half an HTTP/2 preface and stay open during the normal call.
    HalfOpen(usize),
    /// A change in the container's files after the first app list went out.
    Change(fn(&Sandbox)),
    /// Nothing beyond start-up.
    Startup,
}

pub enum Expect {
    /// GetIcon ids, in order.
    Icons(&'static [&'static str]),
    /// At least one icon, all for this id (a batch capped below the host's limit).
    IconsOf(&'static str),
    /// One icon for the id whose center pixel is (within 2 per channel) this color.
    IconCenter(&'static str, [u8; 4]),
    /// LaunchApplication success, and none of these sandbox paths exists 300 ms later.
    Launched(&'static [&'static str]),
    LaunchFailed(&'static str),
    Status(Code),
    Watch(WatchStatus, &'static str),
    Raw(RawReply),
    /// The server closes the connection.
    Closed,
    /// Nothing but the normal call.
    StillAnswers,
    /// An accepted UpdateApplicationList (after the change, for `Call::Change`) with all of
    /// `has` and none of `lacks`.
    AppList {
        has: &'static [&'static str],
        lacks: &'static [&'static str],
    },
    /// garcon exits with this code and its log mentions this text.
    Exits(i32, &'static str),
    /// garcon (still starting) exits 0 within 1 s of SIGTERM, sent after this many ms.
    StopsOnSigterm(u64),
}

impl Case {
    pub fn new(setup: fn(&Sandbox), call: fn(&Sandbox) -> Call, expect: Expect) -> Self {
        Case {
            setup,
            call,
            expect,
            env: &[],
            within: Duration::from_secs(3),
        }
    }

    pub fn within(mut self, seconds: u64) -> Self {
        self.within = Duration::from_secs(seconds);
        self
    }

    pub fn env(mut self, env: &'static [(&'static str, &'static str)]) -> Self {
        self.env = env;
        self
    }
}

pub fn run(name: &str, case: Case) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run_case(name, case));
}

/// What a row's checks need.
struct Ctx<'a> {
    name: &'a str,
    sandbox: &'a Sandbox,
    host: &'a RunningHost,
    server: &'a Server,
    client: GarconClient<Channel>,
    within: Duration,
}

impl Ctx<'_> {
    /// Awaits `call` within the row's deadline, panicking with the log otherwise.
    async fn timed<T>(&self, what: &str, call: impl std::future::Future<Output = T>) -> T {
        match tokio::time::timeout(self.within, call).await {
            Ok(v) => v,
            Err(_) => panic!(
                "{}: {what} did not answer within {:?}; log:\n{}",
                self.name,
                self.within,
                self.server.log()
            ),
        }
    }
}

async fn run_case(name: &str, case: Case) {
    let sandbox = Sandbox::new();
    (case.setup)(&sandbox);
    let call = (case.call)(&sandbox);
    let host = sandbox.host().await;
    let env: Vec<(&str, String)> = case.env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let mut server = sandbox.spawn(&env);
    if check_exit(name, &mut server, &case).await {
        return;
    }
    let ready = wait_event(
        &host,
        &server,
        0,
        "ContainerReady",
        Duration::from_secs(30),
        |e| e.payload.rpc() == "ContainerReady",
    )
    .await;
    assert!(ready.is_ok(), "{name}: {ready:?}");
    let client = sandbox.client();
    // Warm-up (first scan of the icon dirs), outside the measured second.
    good_icon(&client, &server, Duration::from_secs(10)).await;
    let ctx = Ctx {
        name,
        sandbox: &sandbox,
        host: &host,
        server: &server,
        client: client.clone(),
        within: case.within,
    };
    let started = Instant::now();
    let held = perform(&ctx, call, &case.expect).await;
    println!("{name}: hostile call answered in {:?}", started.elapsed());
    let took = good_icon(&client, &server, Duration::from_secs(1)).await;
    assert!(
        server.exited().is_none(),
        "{name}: garcon exited; log:\n{}",
        server.log()
    );
    drop(held);
    println!("{name}: normal GetIcon afterwards in {took:?}");
}

/// The start-up rows: true when the row was one (and passed).
async fn check_exit(name: &str, server: &mut Server, case: &Case) -> bool {
    match case.expect {
        Expect::Exits(code, needle) => {
            let status = server.wait_exit(case.within).await;
            let log = server.log();
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(code),
                "{name}: exit; log:\n{log}"
            );
            assert!(log.contains(needle), "{name}: log lacks {needle:?}:\n{log}");
            true
        }
        Expect::StopsOnSigterm(after_ms) => {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            server.signal(nix::sys::signal::Signal::SIGTERM);
            let status = server.wait_exit(Duration::from_secs(1)).await;
            let log = server.log();
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "{name}; log:\n{log}"
            );
            true
        }
        _ => false,
    }
}

/// Sends the hostile call and checks its outcome; returns connections to hold open.
async fn perform(ctx: &Ctx<'_>, call: Call, expect: &Expect) -> Vec<tokio::net::UnixStream> {
    let name = ctx.name;
    let socket = ctx.sandbox.garcon_socket();
    match (call, expect) {
        (Call::GetIcon(ids, size, scale), expect) => get_icon(ctx, ids, size, scale, expect).await,
        (Call::GetIconParallel(id, n), expect) => get_icon_parallel(ctx, id, n, expect).await,
        (Call::Launch(id, files), expect) => launch(ctx, id, files, expect).await,
        (Call::AddFileWatch(path), Expect::Watch(status, reason)) => {
            let mut c = ctx.client.clone();
            let reply = ctx.timed(
                "AddFileWatch",
                c.add_file_watch(AddFileWatchRequest { path }),
            );
            let reply = reply
                .await
                .unwrap_or_else(|s| panic!("{name}: {s}"))
                .into_inner();
            let got = (reply.status, reply.failure_reason.as_str());
            assert_eq!(got, (*status as i32, *reason), "{name}");
        }
        (Call::LaunchVshd(port), Expect::Status(code)) => {
            let mut c = ctx.client.clone();
            let request = LaunchVshdRequest {
                port,
                ..Default::default()
            };
            let reply = ctx.timed("LaunchVshd", c.launch_vshd(request)).await;
            assert_eq!(reply.map(|_| ()).unwrap_err().code(), *code, "{name}");
        }
        (Call::Raw(path, data), Expect::Raw(want)) => {
            let got = raw_grpc::unary(&socket, path, &data, ctx.within).await;
            match (want, &got) {
                (RawReply::Message { .. }, RawReply::Message { bytes }) => {
                    assert!(*bytes > 5, "{name}: {got:?}")
                }
                _ => assert_eq!(&got, want, "{name}"),
            }
        }
        (Call::Bytes(bytes), Expect::Closed) => {
            let closed = raw_grpc::server_closes_after(&socket, &bytes, ctx.within).await;
            assert!(
                closed,
                "{name}: garcon kept the connection open for {:?}",
                ctx.within
            );
        }
        (Call::HalfOpen(n), Expect::StillAnswers) => return raw_grpc::half_open(&socket, n).await,
        (Call::Startup, Expect::AppList { has, lacks }) => check_list(ctx, 0, has, lacks).await,
        (Call::Change(change), Expect::AppList { has, lacks }) => {
            let first = wait_event(
                ctx.host,
                ctx.server,
                0,
                "first list",
                Duration::from_secs(10),
                |e| e.is_ok() && e.payload.rpc() == "UpdateApplicationList",
            )
            .await;
            let from = ctx.host.state.events.next_seq().max(first.seq + 1);
            let changed = Instant::now();
            change(ctx.sandbox);
            check_list(ctx, from, has, lacks).await;
            println!("{name}: list after the change in {:?}", changed.elapsed());
        }
        _ => panic!("{name}: the row's call and expectation do not fit together"),
    }
    Vec::new()
}

async fn get_icon(ctx: &Ctx<'_>, ids: Vec<String>, size: i32, scale: i32, expect: &Expect) {
    let request = IconRequest {
        desktop_file_ids: ids,
        icon_size: size,
        scale,
    };
    let mut c = ctx.client.clone();
    match (ctx.timed("GetIcon", c.get_icon(request)).await, expect) {
        (Err(status), Expect::Status(code)) => {
            assert_eq!(status.code(), *code, "{}: {status}", ctx.name)
        }
        (Ok(reply), expect) => check_icons(ctx.name, &reply.into_inner().desktop_icons, expect),
        (Err(status), _) => panic!("{}: GetIcon failed: {status}", ctx.name),
    }
}

async fn get_icon_parallel(ctx: &Ctx<'_>, id: &str, n: usize, expect: &Expect) {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let mut c = ctx.client.clone();
            let ids = vec![id.to_string()];
            let request = IconRequest {
                desktop_file_ids: ids,
                icon_size: 48,
                scale: 1,
            };
            tokio::spawn(async move { c.get_icon(request).await })
        })
        .collect();
    for reply in ctx
        .timed("parallel GetIcon", futures::future::join_all(calls))
        .await
    {
        let reply = reply
            .expect("task")
            .unwrap_or_else(|s| panic!("{}: {s}", ctx.name));
        check_icons(ctx.name, &reply.into_inner().desktop_icons, expect);
    }
}

async fn launch(ctx: &Ctx<'_>, id: String, files: Vec<String>, expect: &Expect) {
    let name = ctx.name;
    let request = LaunchApplicationRequest {
        desktop_file_id: id,
        files,
        ..Default::default()
    };
    let mut c = ctx.client.clone();
    match (
        ctx.timed("LaunchApplication", c.launch_application(request))
            .await,
        expect,
    ) {
        (Err(status), Expect::Status(code)) => assert_eq!(status.code(), *code, "{name}: {status}"),
        (Ok(reply), Expect::Launched(absent)) => {
            let reply = reply.into_inner();
            assert!(reply.success, "{name}: {}", reply.failure_reason);
            tokio::time::sleep(Duration::from_millis(300)).await;
            for rel in *absent {
                assert!(!ctx.sandbox.path(rel).exists(), "{name}: {rel} was created");
            }
        }
        (Ok(reply), Expect::LaunchFailed(reason)) => {
            let reply = reply.into_inner();
            assert!(!reply.success, "{name}: launched");
            assert_eq!(reply.failure_reason, *reason, "{name}");
        }
        (reply, _) => panic!("{name}: unexpected LaunchApplication outcome {reply:?}"),
    }
}

fn check_icons(name: &str, icons: &[DesktopIcon], expect: &Expect) {
    let ids: Vec<&str> = icons.iter().map(|i| i.desktop_file_id.as_str()).collect();
    match expect {
        Expect::Icons(want) => assert_eq!(ids, *want, "{name}"),
        Expect::IconsOf(id) => {
            let all = !ids.is_empty() && ids.iter().all(|i| i == id);
            assert!(all, "{name}: {} icons", ids.len());
        }
        Expect::IconCenter(id, rgba) => {
            assert_eq!(ids, [*id], "{name}");
            let image = image::load_from_memory(&icons[0].icon)
                .expect("a PNG")
                .into_rgba8();
            let (w, h) = image.dimensions();
            let got = image.get_pixel(w / 2, h / 2).0;
            let close = got.iter().zip(rgba).all(|(a, b)| a.abs_diff(*b) <= 2);
            assert!(close, "{name}: center {got:?}, want {rgba:?}");
        }
        _ => panic!("{name}: not an icon expectation"),
    }
}

/// The first accepted list from event `from` holding every id of `has`; it must lack `lacks`.
async fn check_list(ctx: &Ctx<'_>, from: u64, has: &[&str], lacks: &[&str]) {
    let event = wait_event(ctx.host, ctx.server, from, ctx.name, ctx.within, |e| {
        e.is_ok()
            && matches!(e.payload, Payload::UpdateApplicationList(_))
            && has.iter().all(|id| app_ids(e).iter().any(|a| a == id))
    })
    .await;
    let ids = app_ids(&event);
    for id in lacks {
        assert!(
            !ids.iter().any(|a| a == id),
            "{}: {id} was published: {ids:?}",
            ctx.name
        );
    }
}
