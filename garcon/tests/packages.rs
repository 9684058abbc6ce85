//! GetLinuxPackageInfo / InstallLinuxPackage / UninstallPackageOwningFile at the rpc level
//! (garcon-service §5.5-5.7): the rpc functions of `garcon::service::packages` against a real
//! packagekitd on a private system bus (`tests/packagekit/start-env.sh`, through
//! `crostini_packagekit::testenv`), with the progress reports received by the crostini-host
//! stand-in (which validates token and status values as cicerone does).
//!
//! Test names start with `packagekit_` (nextest runs them in the `real-packagekit` group). They
//! need root; without it each prints why it skips.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crostini_common::Address;
use crostini_host::{HostConfig, Payload, RunningHost};
use crostini_packagekit::testenv::{
    is_installed, skip_reason, EnvOptions, Fixtures, TestEnv, HELLO, HELLO_DESKTOP, UNSAT,
};
use crostini_packagekit::{zbus, Timeouts};
use crostini_proto::vm_tools::container::{
    install_linux_package_response, uninstall_package_owning_file_response,
    InstallLinuxPackageProgressInfo, InstallLinuxPackageRequest, LinuxPackageInfoRequest,
    UninstallPackageOwningFileRequest, UninstallPackageProgressInfo,
};
use garcon::config::Paths;
use garcon::desktop::XdgDirs;
use garcon::host::HostClient;
use garcon::packages::{package_id_lookup_for, packages_for, Packages, PackagesSlot};
use garcon::service::packages::{
    get_linux_package_info, install_linux_package, uninstall_package_owning_file,
};
use garcon::state::GarconState;
use tonic::Code;

const TOKEN: &str = "packagekit-test-token";
/// A package the dummy backend knows; installing it takes about 10 s with steady progress.
const DUMMY_PACKAGE: &str = "glib2;2.14.0;i386;fedora";

const STARTED: i32 = install_linux_package_response::Status::Started as i32;
const INSTALL_FAILED: i32 = install_linux_package_response::Status::Failed as i32;
const ALREADY_ACTIVE: i32 = install_linux_package_response::Status::InstallAlreadyActive as i32;
const UNINSTALL_STARTED: i32 = uninstall_package_owning_file_response::Status::Started as i32;
const BLOCKED: i32 =
    uninstall_package_owning_file_response::Status::BlockingOperationInProgress as i32;

// Progress statuses on the wire.
const P_SUCCEEDED: i32 = 0;
const P_FAILED: i32 = 1;
const P_DOWNLOADING: i32 = 2;
const P_INSTALLING: i32 = 3;
const P_UNINSTALLING: i32 = 2;

macro_rules! require_root {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("{reason}");
            return;
        }
    };
}

fn dummy() -> EnvOptions {
    EnvOptions {
        backend: Some("dummy".into()),
        ..EnvOptions::default()
    }
}

/// A garcon state wired to the stand-in host, and (with `env`) to the private system bus.
struct Rig {
    host: RunningHost,
    state: Arc<GarconState>,
}

async fn rig(env: Option<&TestEnv>) -> Rig {
    let host = RunningHost::start(HostConfig {
        container_listener: Some(Address::tcp("127.0.0.1", 0)),
        ..HostConfig::default()
    })
    .await
    .expect("stand-in host starts");
    host.register_container(TOKEN, "penguin");
    let client = HostClient::new(host.container_listener_address().expect("bound"), TOKEN)
        .expect("host client");
    client
        .container_ready(10000, 0)
        .await
        .expect("ContainerReady accepted");
    let state = Arc::new(GarconState::new(client, Paths::from_env(), false));
    if let Some(env) = env {
        let bus = zbus::connection::Builder::address(env.address())
            .expect("bus address")
            .build()
            .await
            .expect("connect to the private system bus");
        state.set_system_bus(bus);
    }
    Rig { host, state }
}

impl Rig {
    /// Installs an explicit `Packages` (desktop ids looked up in `xdg`) instead of the one built
    /// from the state's bus on first use.
    async fn with_xdg(self, env: &TestEnv, xdg: XdgDirs) -> Self {
        let packagekit = env.client(Timeouts::default()).await;
        let packages = Packages::new(packagekit, Arc::new(self.state.host.clone())).with_xdg(xdg);
        self.state
            .extension::<PackagesSlot>()
            .set(Arc::new(packages))
            .expect("slot empty");
        self
    }

    fn next_seq(&self) -> u64 {
        self.host.state.events.next_seq()
    }

    async fn busy(&self) -> bool {
        packages_for(&self.state)
            .await
            .expect("packages")
            .busy()
            .is_set()
    }

    /// Waits until no install/uninstall runs (the flag clears at transaction teardown, which may
    /// trail the terminal report slightly).
    async fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.busy().await {
            assert!(
                Instant::now() < deadline,
                "busy flag still set 15 s after completion"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn install(&self, file_path: &str, package_id: &str, uuid: &str) -> (i32, String) {
        let reply = install_linux_package(
            &self.state,
            InstallLinuxPackageRequest {
                file_path: file_path.into(),
                package_id: package_id.into(),
                command_uuid: uuid.into(),
            },
        )
        .await
        .expect("gRPC OK");
        (reply.status, reply.failure_reason)
    }

    async fn uninstall(&self, desktop_file_id: &str) -> Result<(i32, String), tonic::Status> {
        uninstall_package_owning_file(
            &self.state,
            UninstallPackageOwningFileRequest {
                desktop_file_id: desktop_file_id.into(),
            },
        )
        .await
        .map(|reply| (reply.status, reply.failure_reason))
    }

    /// Every InstallLinuxPackageProgress from `from` up to and including the first terminal one;
    /// each must have been accepted by the host.
    async fn install_reports(
        &self,
        from: u64,
        timeout: Duration,
    ) -> Vec<InstallLinuxPackageProgressInfo> {
        self.reports(from, timeout, "install", |payload| match payload {
            Payload::InstallLinuxPackageProgress(p) => Some((p, p.status)),
            _ => None,
        })
        .await
    }

    /// The same for UninstallPackageProgress.
    async fn uninstall_reports(
        &self,
        from: u64,
        timeout: Duration,
    ) -> Vec<UninstallPackageProgressInfo> {
        self.reports(from, timeout, "uninstall", |payload| match payload {
            Payload::UninstallPackageProgress(p) => Some((p, p.status)),
            _ => None,
        })
        .await
    }

    /// The progress reports `pick` selects (with their status) from event `from` up to and
    /// including the first terminal one; each must have been accepted by the host.
    async fn reports<T: Clone + std::fmt::Debug>(
        &self,
        from: u64,
        timeout: Duration,
        what: &str,
        pick: impl Fn(&Payload) -> Option<(&T, i32)>,
    ) -> Vec<T> {
        self.host
            .wait_for_from(
                from,
                |e| matches!(pick(&e.payload), Some((_, status)) if status <= P_FAILED),
                timeout,
            )
            .await
            .unwrap_or_else(|_| panic!("no terminal {what} report within {timeout:?}"));
        let mut reports = Vec::new();
        for event in self.host.events().into_iter().filter(|e| e.seq >= from) {
            if let Some((p, status)) = pick(&event.payload) {
                assert!(
                    event.is_ok(),
                    "host refused {p:?}: {}",
                    event.status_message
                );
                reports.push(p.clone());
                if status <= P_FAILED {
                    break;
                }
            }
        }
        reports
    }

    async fn info(
        &self,
        file_path: &str,
        package_name: &str,
    ) -> Result<(bool, String, String, u64), tonic::Status> {
        get_linux_package_info(
            &self.state,
            LinuxPackageInfoRequest {
                file_path: file_path.into(),
                package_name: package_name.into(),
            },
        )
        .await
        .map(|r| (r.success, r.failure_reason, r.package_id, r.size))
    }
}

/// The terminal report of an install: asserts the progress before it is well-formed.
fn terminal_install(
    reports: &[InstallLinuxPackageProgressInfo],
    uuid: &str,
) -> InstallLinuxPackageProgressInfo {
    let (terminal, progress) = reports.split_last().expect("at least the terminal report");
    for p in progress {
        assert!(
            [P_DOWNLOADING, P_INSTALLING].contains(&p.status),
            "{reports:?}"
        );
        assert!(p.progress_percent <= 100, "{reports:?}");
        assert!(p.failure_details.is_empty(), "{reports:?}");
    }
    assert!(
        reports.iter().all(|p| p.command_uuid == uuid),
        "uuid echoed: {reports:?}"
    );
    terminal.clone()
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test]
async fn packagekit_info_rpc_answers_for_files_names_and_bad_input() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(EnvOptions::default());
    let rig = rig(Some(&env)).await;

    let reply = get_linux_package_info(
        &rig.state,
        LinuxPackageInfoRequest {
            file_path: path(&fixtures.hello).into(),
            package_name: String::new(),
        },
    )
    .await
    .expect("gRPC OK");
    assert!(reply.success, "{}", reply.failure_reason);
    assert_eq!(reply.package_id, "crostini-fixture-hello;1.2-3;all;local");
    assert_eq!(reply.license, "unknown");
    assert_eq!(
        reply.summary,
        "Crostini fixture package that installs cleanly"
    );
    assert_eq!(
        reply.project_url,
        "https://crostini-rs.invalid/fixture-hello"
    );
    assert_eq!(
        reply.size,
        std::fs::metadata(&fixtures.hello).unwrap().len()
    );
    assert!(reply.failure_reason.is_empty());

    let (success, reason, package_id, _) = rig.info(path(&fixtures.corrupt), "").await.unwrap();
    assert!(!success);
    assert!(reason.contains("Could not read meta data"), "{reason}");
    assert!(
        package_id.is_empty(),
        "failure replies carry only the reason"
    );

    let (success, reason, ..) = rig.info(path(&fixtures.not_a_package), "").await.unwrap();
    assert!(!success);
    assert!(
        reason.starts_with(
            "Failure executing the request in the transaction(error=\
             org.freedesktop.PackageKit.Transaction.NoSuchFile: "
        ),
        "{reason}"
    );

    let (success, reason, ..) = rig
        .info("", "crostini-fixture-no-such-package")
        .await
        .unwrap();
    assert!(!success);
    assert_eq!(
        reason,
        "GetLinuxPackageInfoFromPackageName failed to resolve: crostini-fixture-no-such-package \
         into a package_id"
    );

    let missing = fixtures.dir().join("nonexistent.deb");
    let err = rig.info(path(&missing), "").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "file_path does not exist")
    );
    let err = rig.info("", "").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::InvalidArgument,
            "file_path and package_name cannot both be empty"
        )
    );
}

#[tokio::test]
async fn packagekit_install_and_uninstall_over_rpc() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(EnvOptions::default());
    // The fixture's desktop file appears under /usr/share once installed; `other-app` exists
    // from the start.
    let apps = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(apps.path().join("applications")).unwrap();
    std::fs::write(
        apps.path().join("applications/other-app.desktop"),
        "[Desktop Entry]\nType=Application\nName=O\nExec=true\n",
    )
    .unwrap();
    let xdg = XdgDirs::from_data_dirs(vec!["/usr/share".into(), apps.path().to_owned()]);
    let rig = rig(Some(&env)).await.with_xdg(&env, xdg).await;
    let uuid = "6a3f0c55-0000-4000-8000-000000000001";

    // Install: STARTED, while it runs a second install and an uninstall are refused.
    let from = rig.next_seq();
    assert_eq!(
        rig.install(path(&fixtures.hello), "", uuid).await,
        (STARTED, String::new())
    );
    assert_eq!(
        rig.install(path(&fixtures.hello), "", "other").await,
        (
            ALREADY_ACTIVE,
            "Install or other blocking operation is already active".into()
        )
    );
    assert_eq!(
        rig.uninstall("other-app").await.unwrap(),
        (
            BLOCKED,
            "Uninstall or other blocking operation is already active".into()
        )
    );
    let reports = rig.install_reports(from, Duration::from_secs(120)).await;
    let terminal = terminal_install(&reports, uuid);
    assert_eq!(
        (terminal.status, terminal.failure_details.as_str()),
        (P_SUCCEEDED, "Exit Code: 1")
    );
    assert!(
        reports.iter().any(|p| p.status == P_INSTALLING),
        "{reports:?}"
    );
    assert!(is_installed(HELLO));
    assert!(!rig.busy().await, "busy flag clear once SUCCEEDED was sent");

    // The installed package by name.
    let (success, reason, package_id, size) = rig.info("", HELLO).await.unwrap();
    assert!(success, "{reason}");
    assert!(package_id.ends_with(";manual:local"), "{package_id}");
    assert_eq!(size, 0);

    // Uninstall by desktop file id: UNINSTALLING reports, then SUCCEEDED without details.
    let from = rig.next_seq();
    assert_eq!(
        rig.uninstall("crostini-fixture-hello").await.unwrap(),
        (UNINSTALL_STARTED, String::new())
    );
    let reports = rig.uninstall_reports(from, Duration::from_secs(120)).await;
    let (terminal, progress) = reports.split_last().unwrap();
    assert_eq!(
        (terminal.status, terminal.failure_details.as_str()),
        (P_SUCCEEDED, "")
    );
    assert!(
        !progress.is_empty(),
        "UNINSTALLING reports before SUCCEEDED: {reports:?}"
    );
    assert!(
        progress
            .iter()
            .all(|p| p.status == P_UNINSTALLING && p.progress_percent <= 100),
        "{reports:?}"
    );
    assert!(!is_installed(HELLO));
    assert!(!std::path::Path::new(HELLO_DESKTOP).exists());
    rig.wait_idle().await;
}

#[tokio::test]
async fn packagekit_failed_operations_over_rpc_report_failed_and_release_the_flag() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(EnvOptions::default());
    let apps = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(apps.path().join("applications")).unwrap();
    let unowned = apps.path().join("applications/unowned-app.desktop");
    std::fs::write(
        &unowned,
        "[Desktop Entry]\nType=Application\nName=U\nExec=true\n",
    )
    .unwrap();
    let rig = rig(Some(&env))
        .await
        .with_xdg(&env, XdgDirs::from_data_dirs(vec![apps.path().to_owned()]))
        .await;

    // Unsatisfiable dependency: STARTED, then FAILED with apt's reason.
    let from = rig.next_seq();
    assert_eq!(
        rig.install(path(&fixtures.unsat), "", "u-unsat").await.0,
        STARTED
    );
    let reports = rig.install_reports(from, Duration::from_secs(120)).await;
    let terminal = terminal_install(&reports, "u-unsat");
    assert_eq!(terminal.status, P_FAILED);
    assert!(
        terminal.failure_details.contains("unmet dependencies"),
        "{}",
        terminal.failure_details
    );
    assert!(!is_installed(UNSAT));
    rig.wait_idle().await;

    // Corrupt file: STARTED, then FAILED.
    let from = rig.next_seq();
    assert_eq!(
        rig.install(path(&fixtures.corrupt), "", "").await.0,
        STARTED
    );
    let terminal = terminal_install(
        &rig.install_reports(from, Duration::from_secs(120)).await,
        "",
    );
    assert_eq!(terminal.status, P_FAILED);
    assert!(!terminal.failure_details.is_empty());
    rig.wait_idle().await;

    // A desktop file no package owns.
    let from = rig.next_seq();
    assert_eq!(
        rig.uninstall("unowned-app").await.unwrap().0,
        UNINSTALL_STARTED
    );
    let reports = rig.uninstall_reports(from, Duration::from_secs(60)).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, P_FAILED);
    assert_eq!(
        reports[0].failure_details,
        format!("Could not find package that owns {}", unowned.display())
    );
    rig.wait_idle().await;

    // Malformed requests are INVALID_ARGUMENT (and never take the flag).
    let err = install_linux_package(
        &rig.state,
        InstallLinuxPackageRequest {
            file_path: path(&fixtures.dir().join("missing.deb")).into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "file_path does not exist")
    );
    let err = install_linux_package(&rig.state, InstallLinuxPackageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::InvalidArgument,
            "file_path and package_id cannot both be empty"
        )
    );
    let err = rig.uninstall("").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "missing desktop_file_id")
    );
    let err = rig.uninstall("no-such-app").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "desktop_file_id does not exist")
    );
    assert!(!rig.busy().await);

    // After all that, an install still works.
    let from = rig.next_seq();
    assert_eq!(
        rig.install(path(&fixtures.hello), "", "u-after").await.0,
        STARTED
    );
    let terminal = terminal_install(
        &rig.install_reports(from, Duration::from_secs(120)).await,
        "u-after",
    );
    assert_eq!(terminal.status, P_SUCCEEDED);
    assert!(is_installed(HELLO));
    rig.wait_idle().await;
}

#[tokio::test]
async fn packagekit_killed_mid_install_over_rpc_then_a_later_install_succeeds() {
    require_root!();
    let env = TestEnv::start(dummy());
    let rig = rig(Some(&env)).await;

    let from = rig.next_seq();
    assert_eq!(rig.install("", DUMMY_PACKAGE, "u-killed").await.0, STARTED);
    rig.host
        .wait_for_from(
            from,
            |e| matches!(&e.payload, Payload::InstallLinuxPackageProgress(p) if p.status == P_INSTALLING),
            Duration::from_secs(30),
        )
        .await
        .expect("INSTALLING report while the dummy install runs");
    assert_eq!(
        rig.install("", DUMMY_PACKAGE, "u-second").await.0,
        ALREADY_ACTIVE
    );
    env.kill_packagekitd();

    let terminal = terminal_install(
        &rig.install_reports(from, Duration::from_secs(15)).await,
        "u-killed",
    );
    assert_eq!(
        (terminal.status, terminal.failure_details.as_str()),
        (P_FAILED, "PackageKit D-Bus service died, abort operation")
    );
    rig.wait_idle().await;

    // With a new daemon on the bus, the next install runs to completion.
    env.restart_missing(&dummy());
    let from = rig.next_seq();
    assert_eq!(rig.install("", DUMMY_PACKAGE, "u-later").await.0, STARTED);
    let reports = rig.install_reports(from, Duration::from_secs(60)).await;
    let terminal = terminal_install(&reports, "u-later");
    assert_eq!(
        (terminal.status, terminal.failure_details.as_str()),
        (P_SUCCEEDED, "Exit Code: 1")
    );
    let installing: Vec<u32> = reports
        .iter()
        .filter(|p| p.status == P_INSTALLING)
        .map(|p| p.progress_percent)
        .collect();
    assert!(
        installing.len() >= 10,
        "steady INSTALLING reports: {installing:?}"
    );
    rig.wait_idle().await;
}

#[tokio::test]
async fn packagekit_not_running_over_rpc_fails_in_band() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(EnvOptions {
        packagekitd: false,
        ..EnvOptions::default()
    });
    let rig = rig(Some(&env)).await;

    let (success, reason, ..) = rig.info(path(&fixtures.hello), "").await.unwrap();
    assert!(!success);
    assert!(
        reason.starts_with(
            "Failure calling CreateTransaction(error=org.freedesktop.DBus.Error.ServiceUnknown"
        ),
        "{reason}"
    );

    let from = rig.next_seq();
    assert_eq!(
        rig.install(path(&fixtures.hello), "", "u-none").await,
        (STARTED, String::new())
    );
    let reports = rig.install_reports(from, Duration::from_secs(30)).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].status, P_FAILED);
    assert!(
        reports[0].failure_details.contains("ServiceUnknown"),
        "{:?}",
        reports[0]
    );
    rig.wait_idle().await;

    // The app list gets no package ids, quickly.
    let lookup = package_id_lookup_for(&rig.state).await;
    assert_eq!(
        lookup
            .package_id(std::path::Path::new("/etc/hostname"))
            .await,
        None
    );
}

#[tokio::test]
async fn packagekit_app_list_lookup_is_cached() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(EnvOptions::default());
    let rig = rig(Some(&env)).await;
    let dpkg = std::process::Command::new("dpkg")
        .arg("-i")
        .arg(&fixtures.hello)
        .output()
        .unwrap();
    assert!(
        dpkg.status.success(),
        "{}",
        String::from_utf8_lossy(&dpkg.stderr)
    );

    let lookup = package_id_lookup_for(&rig.state).await;
    let desktop = std::path::Path::new(HELLO_DESKTOP);
    let first = lookup.package_id(desktop).await;
    assert!(
        first
            .as_deref()
            .is_some_and(|id| id.starts_with("crostini-fixture-hello;1.2-3;all;")),
        "{first:?}"
    );
    let started = Instant::now();
    assert_eq!(lookup.package_id(desktop).await, first);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "cached lookup took {:?}",
        started.elapsed()
    );
    let packages = packages_for(&rig.state).await.unwrap();
    assert_eq!(packages.package_id_cache().dbus_lookups(), 1);
}

/// Without a system bus connection nothing reaches PackageKit: in-band failures, no busy flag.
#[tokio::test]
async fn package_rpcs_without_a_system_bus_fail_in_band() {
    let fixtures_dir = tempfile::tempdir().unwrap();
    let file = fixtures_dir.path().join("p.deb");
    std::fs::write(&file, b"x").unwrap();
    let rig = rig(None).await;

    let reply = install_linux_package(
        &rig.state,
        InstallLinuxPackageRequest {
            file_path: path(&file).into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(reply.status, INSTALL_FAILED);
    assert_eq!(
        reply.failure_reason,
        "PackageKit unavailable: no D-Bus system bus connection"
    );

    let (success, reason, ..) = rig.info(path(&file), "").await.unwrap();
    assert!(!success);
    assert_eq!(
        reason,
        "PackageKit unavailable: no D-Bus system bus connection"
    );

    let err = rig.uninstall("").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "missing desktop_file_id")
    );
    assert!(packages_for(&rig.state).await.is_err());
}
