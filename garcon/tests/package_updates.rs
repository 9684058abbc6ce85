//! Background package updates (garcon-host §12) against a real packagekitd (apt backend) on a
//! private system bus, with local apt repositories built at test time
//! (`tests/packagekit/build-update-repo.sh`): packagekitd gets an `APT_CONFIG` naming only those
//! `[trusted=yes] file:` sources and its own lists and cache directories, so a refresh reaches no
//! network and leaves the machine's `/etc/apt` and `/var/lib/apt/lists` untouched (the version-1
//! packages go into the machine's dpkg database; `TestEnv` purges every `crostini-fixture-*`).
//!
//! What the real apt backend (PackageKit 1.2.6) reports, found with `pkcon get-updates` on this
//! setup: the id's data field is `<origin>-<suite>-<component>` in lower case, so Origin `Google`,
//! Suite `stable`, component `main` gives `google-stable-main`; Origin `Debian` with a Suite
//! ending in `-security` gives info SECURITY (data `debian-x-security-main`); Origin `Example`
//! gives NORMAL (`example-stable-main`).
//!
//! Test names contain `packagekit` (nextest runs them in the `real-packagekit` group). They need
//! root; without it each prints why it skips.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crostini_packagekit::testenv::{
    installed_version, skip_reason, EnvOptions, Fixtures, TestEnv, UpdateRepo, HELLO, UPD_CROS,
    UPD_OTHER, UPD_SECURITY,
};
use crostini_packagekit::Timeouts;
use futures::future::BoxFuture;
use garcon::package_updates::{BackgroundUpdates, RunOutcome, CONFIG_FILE_NAME};
use garcon::packages::{
    InstallProgress, InstallRequest, InstallStart, InstallStatus, Packages, ProgressSink,
    UninstallProgress,
};

macro_rules! require_root {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("{reason}");
            return;
        }
    };
}

/// Collects install progress.
#[derive(Default)]
struct Sink(Mutex<Vec<InstallProgress>>);

impl ProgressSink for Sink {
    fn install_progress(&self, progress: InstallProgress) -> BoxFuture<'_, ()> {
        self.0.lock().expect("sink lock").push(progress);
        Box::pin(async {})
    }
    fn uninstall_progress(&self, _: UninstallProgress) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

impl Sink {
    async fn wait_terminal(&self) -> InstallProgress {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let last = self.0.lock().expect("sink lock").last().cloned();
            if let Some(p) = last
                .filter(|p| matches!(p.status, InstallStatus::Succeeded | InstallStatus::Failed))
            {
                return p;
            }
            assert!(Instant::now() < deadline, "no terminal install progress");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Setup {
    repo: UpdateRepo,
    env: TestEnv,
    config_dir: tempfile::TempDir,
}

impl Setup {
    fn start() -> Self {
        let repo = UpdateRepo::build();
        let env = TestEnv::start(EnvOptions {
            apt_config: Some(repo.apt_config()),
            ..EnvOptions::default()
        });
        for package in [UPD_CROS, UPD_SECURITY, UPD_OTHER] {
            repo.install_v1(package);
        }
        Self {
            repo,
            env,
            config_dir: tempfile::tempdir().expect("config dir"),
        }
    }

    fn config(&self) -> PathBuf {
        self.config_dir.path().join(CONFIG_FILE_NAME)
    }

    fn write_config(&self, cros_disabled: bool, security_disabled: bool) {
        write(
            &self.config(),
            &format!(
                "DisableAutomaticCrosPackageUpdates={cros_disabled}\n\
                 DisableAutomaticSecurityUpdates={security_disabled}\n"
            ),
        );
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn versions() -> [Option<String>; 3] {
    [UPD_CROS, UPD_SECURITY, UPD_OTHER].map(installed_version)
}

fn v(version: &str) -> Option<String> {
    Some(version.to_owned())
}

fn id_of(outcome: &RunOutcome) -> Vec<String> {
    match outcome {
        RunOutcome::Updated(ids) => ids.clone(),
        other => panic!("expected an update, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packagekit_background_update_applies_cros_and_security_updates_per_switches() {
    require_root!();
    let setup = Setup::start();
    let pk = setup.env.client(Timeouts::default()).await;
    let updater = BackgroundUpdates::new(
        pk,
        garcon::packages::BusyFlag::default(),
        Some(setup.config()),
    );
    assert_eq!(versions(), [v("1"), v("1"), v("1")]);

    // Both disabled: nothing at all.
    setup.write_config(true, true);
    assert_eq!(updater.run_once().await, RunOutcome::Disabled);
    assert_eq!(versions(), [v("1"), v("1"), v("1")]);

    // Security updates disabled: only the cros package.
    setup.write_config(false, true);
    let outcome = updater.run_once().await;
    assert_eq!(
        id_of(&outcome),
        [format!("{UPD_CROS};2;all;google-stable-main")]
    );
    assert_eq!(versions(), [v("2"), v("1"), v("1")]);

    // Switch read again at the next run: now the security update too; never the unrelated one.
    setup.write_config(false, false);
    let outcome = updater.run_once().await;
    assert_eq!(
        id_of(&outcome),
        [format!("{UPD_SECURITY};2;all;debian-x-security-main")]
    );
    assert_eq!(versions(), [v("2"), v("2"), v("1")]);

    assert_eq!(updater.run_once().await, RunOutcome::NothingToUpdate);
    assert_eq!(versions(), [v("2"), v("2"), v("1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packagekit_background_update_and_user_install_share_the_busy_flag() {
    require_root!();
    let setup = Setup::start();
    let fixtures = Fixtures::build();
    let pk = setup.env.client(Timeouts::default()).await;
    let sink = Arc::new(Sink::default());
    let packages = Packages::new(pk.clone(), sink.clone());
    // No config file: both kinds on.
    let updater = BackgroundUpdates::new(pk, packages.busy().clone(), Some(setup.config()));

    // A user operation running: the background run does not start.
    let held = packages.busy().try_acquire().expect("flag free");
    assert_eq!(updater.run_once().await, RunOutcome::SkippedBusy);
    assert_eq!(versions(), [v("1"), v("1"), v("1")]);
    drop(held);

    // During UpdatePackages a user install is refused at once.
    let run = tokio::spawn({
        let updater = updater.clone();
        async move { updater.run_once().await }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !packages.busy().is_set() {
        assert!(!run.is_finished(), "the run ended without holding the flag");
        assert!(Instant::now() < deadline, "UpdatePackages never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let request = InstallRequest::File(fixtures.hello.clone());
    assert_eq!(
        packages.install(request.clone(), "during-update".into()),
        InstallStart::AlreadyActive
    );
    let outcome = run.await.expect("run task");
    assert_eq!(id_of(&outcome).len(), 2, "{outcome:?}");
    assert_eq!(versions(), [v("2"), v("2"), v("1")]);

    // Afterwards the flag is free again and the user install runs.
    assert!(!packages.busy().is_set());
    assert_eq!(
        packages.install(request, "after-update".into()),
        InstallStart::Started
    );
    let terminal = sink.wait_terminal().await;
    assert_eq!(terminal.status, InstallStatus::Succeeded, "{terminal:?}");
    assert_eq!(terminal.command_uuid, "after-update");
    assert!(installed_version(HELLO).is_some());
}

/// A loopback HTTP source that holds its first request for `hold`, reporting its arrival, and
/// answers every request 404.
fn slow_source(hold: Duration) -> (String, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            if n == 0 {
                let _ = tx.send(());
                std::thread::sleep(hold);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (
        format!("deb [trusted=yes] http://127.0.0.1:{port}/ slow main"),
        rx,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packagekit_user_install_during_background_refresh_is_accepted() {
    require_root!();
    let setup = Setup::start();
    let (source, arrived) = slow_source(Duration::from_secs(3));
    setup.repo.add_source(&source);
    let fixtures = Fixtures::build();
    let pk = setup.env.client(Timeouts::default()).await;
    let sink = Arc::new(Sink::default());
    let packages = Packages::new(pk.clone(), sink.clone());
    let updater = BackgroundUpdates::new(pk, packages.busy().clone(), Some(setup.config()));

    let run = tokio::spawn({
        let updater = updater.clone();
        async move { updater.run_once().await }
    });
    // RefreshCache is now fetching (the loopback source holds the request).
    tokio::task::spawn_blocking(move || arrived.recv_timeout(Duration::from_secs(60)))
        .await
        .expect("join")
        .expect("the refresh reached the loopback source");
    assert!(!run.is_finished(), "the run is still refreshing");
    assert!(
        !packages.busy().is_set(),
        "the refresh does not hold the flag"
    );
    assert_eq!(
        packages.install(
            InstallRequest::File(fixtures.hello.clone()),
            "during-refresh".into()
        ),
        InstallStart::Started
    );
    let terminal = sink.wait_terminal().await;
    assert_eq!(terminal.status, InstallStatus::Succeeded, "{terminal:?}");
    assert!(installed_version(HELLO).is_some());
    // The run ends (its refresh may fail on the 404 source: logged, nothing else), bounded.
    let outcome = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the run ends")
        .expect("run task");
    eprintln!("background run outcome: {outcome:?}");
    assert!(
        matches!(
            outcome,
            RunOutcome::Failed {
                step: "RefreshCache",
                ..
            } | RunOutcome::Updated(_)
                | RunOutcome::Yielded
        ),
        "{outcome:?}"
    );
}
