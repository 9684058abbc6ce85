//! Startup order and lifecycle, in process (garcon-host.md §3, §19 hints 5-13).

use super::*;

use std::sync::Mutex;

use crostini_host::{HostConfig, Payload, RunningHost};
use crostini_proto::vm_tools::container::container_listener_server::{
    ContainerListener, ContainerListenerServer,
};
use crostini_proto::vm_tools::container::garcon_client::GarconClient;
use crostini_proto::vm_tools::container::{self as ct, get_garcon_session_info_response};
use crostini_proto::vm_tools::EmptyMessage;
use tonic::{Request, Response, Status};

const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";

struct Fixture {
    dir: tempfile::TempDir,
    host_address: Address,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).expect("token");
        let host_address = Address::unix(dir.path().join("host.sock"));
        Fixture { dir, host_address }
    }

    fn config(&self, listen: Address) -> ServerConfig {
        let mut paths = Paths::from_env();
        paths.home = Some(self.dir.path().to_path_buf());
        paths.sftp_server = PathBuf::from("/bin/cat");
        let sftp_listen = crate::cli::default_sftp_listen(&ListenSpec::Fixed(listen.clone()));
        let mut config = ServerConfig::new(
            self.host_address.clone(),
            ListenSpec::Fixed(listen),
            sftp_listen,
            self.dir.path().join("token"),
            paths,
        );
        config.allow_any_user = true;
        config.system_bus = false;
        config.session_bus = false;
        config.publish_apps = false;
        config.low_disk = None;
        config.token_wait = Duration::from_secs(5);
        config.ready_retry = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            give_up_after: Duration::from_secs(10),
        };
        config
    }

    async fn host(&self) -> RunningHost {
        let host = RunningHost::start(HostConfig {
            container_listener: Some(self.host_address.clone()),
            ..HostConfig::default()
        })
        .await
        .expect("host starts");
        host.register_container(TOKEN, "penguin");
        host
    }
}

fn recorder() -> (Observer, Arc<Mutex<Vec<Step>>>) {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let sink = steps.clone();
    let observer: Observer = Arc::new(move |step: &Step| sink.lock().unwrap().push(step.clone()));
    (observer, steps)
}

fn stopper() -> (
    tokio::sync::oneshot::Sender<()>,
    impl Future<Output = ()> + Send,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The first ContainerReady the host receives: whether the host accepted it, and its info.
async fn container_ready(host: &RunningHost) -> (bool, ct::ContainerStartupInfo) {
    let ready = host
        .wait_for(
            |e| e.payload.rpc() == "ContainerReady",
            Duration::from_secs(10),
        )
        .await
        .expect("ContainerReady");
    let Payload::ContainerReady(info) = &ready.payload else {
        panic!("unexpected payload");
    };
    (ready.is_ok(), info.clone())
}

#[tokio::test]
async fn steps_run_in_the_normative_order_and_sigterm_sends_one_shutdown() {
    let fixture = Fixture::new();
    let host = fixture.host().await;
    let (observer, steps) = recorder();
    let (stop_tx, stop) = stopper();
    let config = fixture.config(Address::tcp("127.0.0.1", 0));
    let server = tokio::spawn(run_server(config, stop, Some(observer)));

    let (ready_ok, info) = container_ready(&host).await;
    assert_eq!(info.token, TOKEN, "hint 5: bare 36-char token");
    assert!(info.garcon_port != 0 && info.sftp_port != 0);
    assert!(ready_ok);
    wait_until("startup to finish", || {
        steps.lock().unwrap().contains(&Step::LowDiskTimer)
    })
    .await;

    stop_tx.send(()).expect("stop");
    let exit = server.await.expect("join").expect("clean exit");
    assert_eq!(
        exit,
        ServerExit::Stopped {
            shutdown_sent: true
        }
    );
    let shutdowns: Vec<_> = host
        .events()
        .into_iter()
        .filter(|e| e.payload.rpc() == "ContainerShutdown")
        .collect();
    assert_eq!(shutdowns.len(), 1, "exactly one ContainerShutdown");
    assert!(shutdowns[0].is_ok());

    let steps = steps.lock().unwrap().clone();
    let names: Vec<String> = steps
        .iter()
        .map(|s| {
            format!("{s:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "Token",
            "UserChecked",
            "SystemBus",
            "SessionBus",
            "Serving",
            "SftpListening",
            "ContainerReady",
            "Publishing",
            "LowDiskTimer",
            "ShutdownSent",
            "Stopped"
        ]
    );
    let Step::Serving { garcon_port, .. } = &steps[4] else {
        panic!("serving step");
    };
    assert_eq!(
        *garcon_port, info.garcon_port,
        "reported port is the bound one"
    );
}

#[tokio::test]
async fn unix_listen_reports_port_zero() {
    let fixture = Fixture::new();
    let host = fixture.host().await;
    let (stop_tx, stop) = stopper();
    let config = fixture.config(Address::unix(fixture.dir.path().join("garcon.sock")));
    let server = tokio::spawn(run_server(config, stop, None));
    let (_, info) = container_ready(&host).await;
    assert_eq!((info.garcon_port, info.sftp_port), (0, 0));
    stop_tx.send(()).expect("stop");
    server.await.expect("join").expect("clean exit");
}

/// A host whose ContainerReady handler calls back into garcon before answering (hint 9).
struct CallbackHost {
    garcon: Mutex<Option<Address>>,
    answers: Mutex<Vec<ct::GetGarconSessionInfoResponse>>,
}

/// Methods answering OK, written in the shape `#[tonic::async_trait]` produces (the attribute
/// cannot see methods generated by a macro).
macro_rules! empty_rpcs {
    ($($name:ident: $req:ty),* $(,)?) => {
        $(fn $name<'life0, 'async_trait>(
            &'life0 self,
            _r: Request<$req>,
        ) -> std::pin::Pin<Box<
            dyn Future<Output = Result<Response<EmptyMessage>, Status>> + Send + 'async_trait,
        >>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Ok(Response::new(EmptyMessage {})) })
        })*
    };
}

#[tonic::async_trait]
impl ContainerListener for CallbackHost {
    async fn container_ready(
        &self,
        request: Request<ct::ContainerStartupInfo>,
    ) -> Result<Response<EmptyMessage>, Status> {
        let info = request.into_inner();
        let base = self.garcon.lock().unwrap().clone().expect("garcon address");
        let address = base.with_port(info.garcon_port).expect("port");
        let channel = crostini_common::lazy_channel(&address, Duration::from_secs(5))
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut client = GarconClient::new(channel);
        let mut call = Request::new(ct::GetGarconSessionInfoRequest {});
        call.set_timeout(Duration::from_secs(5));
        let answer = client.get_garcon_session_info(call).await?.into_inner();
        self.answers.lock().unwrap().push(answer);
        Ok(Response::new(EmptyMessage {}))
    }

    empty_rpcs! {
        container_shutdown: ct::ContainerShutdownInfo,
        update_application_list: ct::UpdateApplicationListRequest,
        pending_update_application_list_calls: ct::PendingAppListUpdateCount,
        open_url: ct::OpenUrlRequest,
        install_linux_package_progress: ct::InstallLinuxPackageProgressInfo,
        uninstall_package_progress: ct::UninstallPackageProgressInfo,
        apply_ansible_playbook_progress: ct::ApplyAnsiblePlaybookProgressInfo,
        open_terminal: ct::OpenTerminalRequest,
        update_mime_types: ct::UpdateMimeTypesRequest,
        file_watch_triggered: ct::FileWatchTriggeredInfo,
        low_disk_space_triggered: ct::LowDiskSpaceTriggeredInfo,
        install_shader_cache: ct::InstallShaderCacheRequest,
        uninstall_shader_cache: ct::UninstallShaderCacheRequest,
        unmount_shader_cache: ct::UnmountShaderCacheRequest,
        inhibit_screensaver: ct::InhibitScreensaverInfo,
        uninhibit_screensaver: ct::UninhibitScreensaverInfo,
    }

    async fn forward_security_key_message(
        &self,
        _r: Request<ct::ForwardSecurityKeyMessageRequest>,
    ) -> Result<Response<ct::ForwardSecurityKeyMessageResponse>, Status> {
        Err(Status::failed_precondition("not Bruschetta"))
    }

    async fn select_file(
        &self,
        _r: Request<ct::SelectFileRequest>,
    ) -> Result<Response<ct::SelectFileResponse>, Status> {
        Ok(Response::new(ct::SelectFileResponse::default()))
    }

    async fn report_metrics(
        &self,
        _r: Request<ct::ReportMetricsRequest>,
    ) -> Result<Response<ct::ReportMetricsResponse>, Status> {
        Ok(Response::new(ct::ReportMetricsResponse::default()))
    }
}

#[tokio::test]
async fn host_calling_back_during_container_ready_is_answered() {
    let fixture = Fixture::new();
    let callback_host = Arc::new(CallbackHost {
        garcon: Mutex::new(Some(Address::tcp("127.0.0.1", 0))),
        answers: Mutex::new(Vec::new()),
    });
    let listener = Listener::bind(&fixture.host_address)
        .await
        .expect("bind host");
    let service = ContainerListenerServer::from_arc(callback_host.clone());
    let host_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(listener.into_incoming()),
    );
    let (observer, steps) = recorder();
    let (stop_tx, stop) = stopper();
    let server = tokio::spawn(run_server(
        fixture.config(Address::tcp("127.0.0.1", 0)),
        stop,
        Some(observer),
    ));
    wait_until("ContainerReady to complete", || {
        steps
            .lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, Step::ContainerReady { .. }))
    })
    .await;
    let answers = callback_host.answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].status,
        get_garcon_session_info_response::Status::Succeeded as i32
    );
    assert_ne!(
        answers[0].sftp_vsock_port, 0,
        "sftp port published before ContainerReady"
    );
    assert_eq!(
        answers[0].container_homedir,
        fixture.dir.path().to_string_lossy()
    );
    stop_tx.send(()).expect("stop");
    server.await.expect("join").expect("clean exit");
    host_task.abort();
}

#[tokio::test]
async fn container_ready_is_retried_while_the_host_is_unavailable() {
    let fixture = Fixture::new();
    let (observer, steps) = recorder();
    let (stop_tx, stop) = stopper();
    let server = tokio::spawn(run_server(
        fixture.config(Address::tcp("127.0.0.1", 0)),
        stop,
        Some(observer),
    ));
    // Nobody listens for a while: UNAVAILABLE, retried.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!server.is_finished());
    let host = fixture.host().await;
    host.wait_for(
        |e| e.payload.rpc() == "ContainerReady" && e.is_ok(),
        Duration::from_secs(10),
    )
    .await
    .expect("ContainerReady after the host came up");
    wait_until("ready step", || {
        steps
            .lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, Step::ContainerReady { attempts } if *attempts > 1))
    })
    .await;
    stop_tx.send(()).expect("stop");
    server.await.expect("join").expect("clean exit");
}

#[tokio::test]
async fn host_rejecting_container_ready_fails_without_retry_or_shutdown() {
    let fixture = Fixture::new();
    // The host runs but does not know the token: FAILED_PRECONDITION.
    let host = RunningHost::start(HostConfig {
        container_listener: Some(fixture.host_address.clone()),
        ..HostConfig::default()
    })
    .await
    .expect("host");
    let (_stop_tx, stop) = stopper();
    let result = run_server(fixture.config(Address::tcp("127.0.0.1", 0)), stop, None).await;
    let Err(StartupError::ContainerReady { attempts, code, .. }) = result else {
        panic!("expected ContainerReady failure, got {result:?}");
    };
    assert_eq!((attempts, code), (1, Code::FailedPrecondition));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rpcs: Vec<&str> = host.events().iter().map(|e| e.payload.rpc()).collect();
    assert_eq!(
        rpcs,
        ["ContainerReady"],
        "no ContainerShutdown on error exits"
    );
}

#[tokio::test]
async fn unreachable_host_gives_up_after_the_retry_window() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Address::tcp("127.0.0.1", 0));
    config.ready_retry.give_up_after = Duration::from_millis(700);
    let (_stop_tx, stop) = stopper();
    let start = std::time::Instant::now();
    let result = run_server(config, stop, None).await;
    let Err(error @ StartupError::ContainerReady { .. }) = result else {
        panic!("expected ContainerReady failure, got {result:?}");
    };
    let StartupError::ContainerReady { attempts, code, .. } = &error else {
        unreachable!()
    };
    assert!(*attempts >= 2, "retried: {error}");
    assert_eq!(*code, Code::Unavailable);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(error.to_string().contains("host.sock"), "{error}");
}

#[tokio::test]
async fn stop_during_token_wait_exits_quietly() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Address::tcp("127.0.0.1", 0));
    config.token_file = fixture.dir.path().join("never");
    config.token_wait = Duration::from_secs(30);
    let (stop_tx, stop) = stopper();
    let server = tokio::spawn(run_server(config, stop, None));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(()).expect("stop");
    let exit = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("prompt")
        .expect("join")
        .expect("clean");
    assert_eq!(exit, ServerExit::StoppedDuringStartup);
}

#[tokio::test]
async fn missing_token_fails_after_the_wait() {
    let fixture = Fixture::new();
    let mut config = fixture.config(Address::tcp("127.0.0.1", 0));
    config.token_file = fixture.dir.path().join("never");
    config.token_wait = Duration::from_millis(300);
    let (_stop_tx, stop) = stopper();
    let result = run_server(config, stop, None).await;
    assert!(matches!(result, Err(StartupError::Token(_))), "{result:?}");
}

#[tokio::test]
async fn wrong_uid_is_refused_without_any_rpc() {
    let uid = nix::unistd::getuid().as_raw();
    if uid == DEFAULT_UID {
        eprintln!("SKIPPED: running as uid {DEFAULT_UID}, the wrong-uid path cannot be reached");
        return;
    }
    let fixture = Fixture::new();
    let host = fixture.host().await;
    let mut config = fixture.config(Address::tcp("127.0.0.1", 0));
    config.allow_any_user = false;
    let (_stop_tx, stop) = stopper();
    let result = run_server(config, stop, None).await;
    assert!(
        matches!(result, Err(StartupError::WrongUser { uid: u }) if u == uid),
        "{result:?}"
    );
    assert!(host.events().is_empty(), "hint 10: no rpc sent");
}

#[tokio::test]
async fn probing_skips_busy_ports_and_fails_when_all_are_busy() {
    // Occupy one port, then probe a window starting there.
    let busy = Listener::bind(&Address::tcp("127.0.0.1", 0))
        .await
        .expect("bind");
    let Some(first) = busy.local_address().port() else {
        panic!("tcp port");
    };
    let Some(last) = first.checked_add(20).filter(|p| *p <= 65535) else {
        eprintln!("SKIPPED: kernel picked a port too close to 65535 for a probe window");
        return;
    };
    let got = bind_first_free(&Address::tcp("127.0.0.1", 0), first, last)
        .await
        .expect("a free port in the window");
    let port = got.local_address().port().expect("port");
    assert!(
        port > first && port <= last,
        "{port} not in ({first}, {last}]"
    );

    let err = bind_first_free(&Address::tcp("127.0.0.1", 0), first, first)
        .await
        .err()
        .expect("all busy");
    assert!(matches!(err, StartupError::NoFreePort { .. }), "{err}");
}

#[tokio::test]
async fn bind_errors_other_than_in_use_stop_probing_at_once() {
    // A vsock bind fails with "no such device"/"not supported" on machines without vsock, and
    // with a clear error everywhere; it must not walk 10 000 ports.
    let start = std::time::Instant::now();
    let result = bind_first_free(
        &Address::tcp("203.0.113.1", 0), // TEST-NET-3: not a local address
        10000,
        19999,
    )
    .await;
    let err = result.err().expect("cannot bind a non-local address");
    assert!(matches!(err, StartupError::Listen(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn only_definitive_refusals_from_the_host_are_final() {
    for code in [
        Code::FailedPrecondition,
        Code::InvalidArgument,
        Code::Unimplemented,
    ] {
        assert!(
            is_final_refusal(&Status::new(code, "from the host")),
            "{code:?}"
        );
    }
    for code in [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::Unknown,
        Code::Internal,
        Code::Cancelled,
        Code::ResourceExhausted,
    ] {
        assert!(
            !is_final_refusal(&Status::new(code, "transient")),
            "{code:?}"
        );
    }
    // The same code made locally from a transport error is not the host's answer.
    let local = Status::from_error(Box::new(std::io::Error::other("connection reset")));
    assert!(!is_final_refusal(&local));
    let mut local_refusal = Status::permission_denied("h2 INADEQUATE_SECURITY");
    local_refusal.set_source(Arc::new(std::io::Error::other("h2")));
    assert!(!is_final_refusal(&local_refusal));
}
