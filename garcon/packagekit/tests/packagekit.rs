//! The PackageKit client against a real packagekitd (apt backend, or the dummy backend where a
//! slow, deterministic transaction is needed) on a private system bus started by
//! `tests/packagekit/start-env.sh`. Fixture packages come from `tests/fixtures/debs/` and are
//! purged afterwards (by `TestEnv`'s drop). Needs root; without it each test prints why it skips.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crostini_packagekit::testenv::{
    dpkg_status, is_installed, skip_reason, EnvOptions, Fixtures, TestEnv, HELLO, HELLO_DESKTOP,
    UNSAT,
};
use crostini_packagekit::{
    no_owner_text, Completion, Event, Failure, GeneralError, InstallNotice, InstallPhase,
    InstallSource, PackageIdCache, PackageKit, RemoveNotice, Request, Timeouts,
};

/// A package the dummy backend knows; installing it takes about 10 s with steady progress.
const DUMMY_PACKAGE: &str = "glib2;2.14.0;i386;fedora";

macro_rules! require_root {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("{reason}");
            return;
        }
    };
}

fn apt() -> EnvOptions {
    EnvOptions::default()
}

fn dummy() -> EnvOptions {
    EnvOptions {
        backend: Some("dummy".into()),
        ..EnvOptions::default()
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("fixture paths are UTF-8")
}

/// Runs an install, collecting every notice.
async fn install_notices(pk: &PackageKit, source: InstallSource<'_>) -> Vec<InstallNotice> {
    let mut notices = Vec::new();
    pk.install(source, |n| notices.push(n)).await;
    notices
}

/// Runs a removal, collecting every notice.
async fn remove_notices(pk: &PackageKit, package_id: &str) -> Vec<RemoveNotice> {
    let mut notices = Vec::new();
    pk.remove(package_id, |n| notices.push(n)).await;
    notices
}

/// The single completion, which must be the last notice.
fn install_completion(notices: &[InstallNotice]) -> &Completion {
    let completions: Vec<_> = notices
        .iter()
        .filter_map(|n| match n {
            InstallNotice::Completed(c) => Some(c),
            InstallNotice::Progress { .. } => None,
        })
        .collect();
    assert_eq!(
        completions.len(),
        1,
        "exactly one completion in {notices:?}"
    );
    assert!(
        matches!(notices.last(), Some(InstallNotice::Completed(_))),
        "completion is last in {notices:?}"
    );
    completions[0]
}

fn remove_completion(notices: &[RemoveNotice]) -> &Completion {
    let completions: Vec<_> = notices
        .iter()
        .filter_map(|n| match n {
            RemoveNotice::Completed(c) => Some(c),
            RemoveNotice::Uninstalling { .. } => None,
        })
        .collect();
    assert_eq!(
        completions.len(),
        1,
        "exactly one completion in {notices:?}"
    );
    assert!(
        matches!(notices.last(), Some(RemoveNotice::Completed(_))),
        "completion is last in {notices:?}"
    );
    completions[0]
}

fn failed_details(completion: &Completion) -> &str {
    match completion {
        Completion::Failed { details } => details,
        Completion::Succeeded { details } => panic!("expected failure, got success ({details})"),
    }
}

#[tokio::test]
async fn details_local_reports_the_fixture_control_fields() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;

    let details = pk
        .details_local(path_str(&fixtures.hello))
        .await
        .expect("details");

    assert_eq!(details.package_id, "crostini-fixture-hello;1.2-3;all;local");
    assert_eq!(
        details.summary,
        "Crostini fixture package that installs cleanly"
    );
    assert_eq!(
        details.description,
        "Ships one desktop file; used by the PackageKit tests and removed afterwards."
    );
    assert_eq!(details.license, "unknown");
    assert_eq!(details.url, "https://crostini-rs.invalid/fixture-hello");
    assert_eq!(
        details.size,
        std::fs::metadata(&fixtures.hello).unwrap().len()
    );
}

#[tokio::test]
async fn details_local_of_a_corrupt_deb_fails_with_apts_message() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;

    let err = pk
        .details_local(path_str(&fixtures.corrupt))
        .await
        .unwrap_err();

    let Failure::PackageKit { details, .. } = &err else {
        panic!("expected an ErrorCode failure, got {err:?}");
    };
    assert!(details.contains("Could not read meta data"), "{details}");
}

#[tokio::test]
async fn details_local_of_a_text_file_is_a_no_such_file_general_error() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;

    let err = pk
        .details_local(path_str(&fixtures.not_a_package))
        .await
        .unwrap_err();

    let Failure::General(GeneralError::Request(dbus)) = &err else {
        panic!("expected a request general error, got {err:?}");
    };
    assert_eq!(
        dbus.name,
        "org.freedesktop.PackageKit.Transaction.NoSuchFile"
    );
    assert!(
        err.to_string().starts_with(
            "Failure executing the request in the transaction(error=\
             org.freedesktop.PackageKit.Transaction.NoSuchFile: "
        ),
        "{err}"
    );
}

/// Install, look up (SearchFiles, Resolve, GetDetails, the cache) and remove the clean fixture.
#[tokio::test]
async fn install_lookup_and_remove_round_trip() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;
    assert!(!is_installed(HELLO));

    // Install: progress while downloading/installing, then exactly one SUCCEEDED.
    let notices = install_notices(&pk, InstallSource::File(path_str(&fixtures.hello))).await;
    assert_eq!(
        install_completion(&notices),
        &Completion::Succeeded {
            details: "Exit Code: 1".into()
        }
    );
    for notice in &notices[..notices.len() - 1] {
        let InstallNotice::Progress { percent, .. } = notice else {
            unreachable!()
        };
        assert!(*percent <= 100, "{notices:?}");
    }
    assert!(
        notices.iter().any(|n| matches!(
            n,
            InstallNotice::Progress {
                phase: InstallPhase::Installing,
                ..
            }
        )),
        "at least one INSTALLING report in {notices:?}"
    );
    assert_eq!(dpkg_status(HELLO).as_deref(), Some("install ok installed"));

    // Lookups.
    let owner = pk
        .owner_of_file(HELLO_DESKTOP)
        .await
        .expect("search")
        .expect("owned");
    assert!(
        owner.starts_with("crostini-fixture-hello;1.2-3;all;"),
        "{owner}"
    );
    let resolved = pk.resolve(HELLO).await.expect("resolve").expect("resolved");
    assert_eq!(resolved, "crostini-fixture-hello;1.2-3;all;manual:local");
    let details = pk.details(&resolved).await.expect("details");
    assert_eq!(details.package_id, resolved);
    assert_eq!(details.size, 0, "installed packages have no size");
    assert_eq!(
        details.summary,
        "Crostini fixture package that installs cleanly"
    );
    let unowned = tempfile::NamedTempFile::with_suffix(".desktop").unwrap();
    assert_eq!(
        pk.owner_of_file(path_str(unowned.path()))
            .await
            .expect("search"),
        None
    );
    assert_eq!(
        pk.resolve("crostini-fixture-no-such-package")
            .await
            .expect("resolve"),
        None
    );

    // Removal: UNINSTALLING reports, then SUCCEEDED without details.
    let notices = remove_notices(&pk, &resolved).await;
    assert_eq!(
        remove_completion(&notices),
        &Completion::Succeeded {
            details: String::new()
        }
    );
    assert!(
        notices
            .iter()
            .any(|n| matches!(n, RemoveNotice::Uninstalling { .. })),
        "at least one UNINSTALLING report in {notices:?}"
    );
    assert!(
        !is_installed(HELLO),
        "dpkg status after removal: {:?}",
        dpkg_status(HELLO)
    );
}

#[tokio::test]
async fn install_with_an_unsatisfiable_dependency_fails_with_apts_reason() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;

    let notices = install_notices(&pk, InstallSource::File(path_str(&fixtures.unsat))).await;

    let details = failed_details(install_completion(&notices));
    assert!(details.contains("unmet dependencies"), "{details}");
    assert!(
        details.contains("crostini-fixture-no-such-package"),
        "{details}"
    );
    assert!(!is_installed(UNSAT));
}

#[tokio::test]
async fn install_of_a_corrupt_deb_fails() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;

    let notices = install_notices(&pk, InstallSource::File(path_str(&fixtures.corrupt))).await;

    let details = failed_details(install_completion(&notices));
    assert!(!details.is_empty());
    assert!(!is_installed("crostini-fixture-corrupt"));
}

#[tokio::test]
async fn install_of_a_malformed_package_id_is_a_general_error() {
    require_root!();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;

    let notices = install_notices(&pk, InstallSource::PackageId("garbage")).await;

    let details = failed_details(install_completion(&notices));
    assert!(
        details.starts_with(
            "Failure executing the request in the transaction(error=\
             org.freedesktop.PackageKit.Transaction.PackageIdInvalid: "
        ),
        "{details}"
    );
}

#[tokio::test]
async fn remove_owner_of_an_unowned_file_cannot_find_the_package() {
    require_root!();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;
    let unowned = tempfile::NamedTempFile::with_suffix(".desktop").unwrap();
    let path = path_str(unowned.path());

    let mut notices = Vec::new();
    pk.remove_owner_of(path, |n| notices.push(n)).await;

    assert_eq!(
        notices,
        vec![RemoveNotice::Completed(Completion::Failed {
            details: no_owner_text(path)
        })]
    );
    assert_eq!(
        no_owner_text(path),
        format!("Could not find package that owns {path}")
    );
}

#[tokio::test]
async fn without_packagekitd_every_operation_fails_with_service_unknown() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(EnvOptions {
        packagekitd: false,
        ..apt()
    });
    let pk = env.client(Timeouts::default()).await;

    let err = pk
        .details_local(path_str(&fixtures.hello))
        .await
        .unwrap_err();
    let Failure::General(GeneralError::CreateTransaction(dbus)) = &err else {
        panic!("expected CreateTransaction to fail, got {err:?}");
    };
    assert_eq!(dbus.name, "org.freedesktop.DBus.Error.ServiceUnknown");
    assert!(
        err.to_string()
            .starts_with("Failure calling CreateTransaction(error="),
        "{err}"
    );

    let notices = install_notices(&pk, InstallSource::File(path_str(&fixtures.hello))).await;
    let details = failed_details(install_completion(&notices));
    assert!(
        details.contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{details}"
    );
    assert_eq!(notices.len(), 1);

    // The app-list lookup degrades to "no package id" and does not cache the failure.
    let cache = PackageIdCache::new(pk.clone(), Duration::from_secs(10));
    let desktop = tempfile::NamedTempFile::with_suffix(".desktop").unwrap();
    assert_eq!(cache.package_id(desktop.path()).await, None);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn install_without_polkitd_fails_naming_policykit() {
    require_root!();
    let fixtures = Fixtures::build();
    let env = TestEnv::start(apt());
    let pk = env.client(Timeouts::default()).await;
    env.stop_polkitd();

    let notices = install_notices(&pk, InstallSource::File(path_str(&fixtures.hello))).await;

    let details = failed_details(install_completion(&notices));
    assert!(details.contains("org.freedesktop.PolicyKit1"), "{details}");
    assert!(!is_installed(HELLO));
}

#[tokio::test]
async fn packagekitd_killed_mid_install_fails_with_service_died() {
    require_root!();
    let env = TestEnv::start(dummy());
    let pk = env.client(Timeouts::default()).await;
    let notices = Arc::new(Mutex::new(Vec::new()));
    let (first_progress_tx, first_progress) = tokio::sync::oneshot::channel();

    let install = {
        let (pk, notices) = (pk.clone(), notices.clone());
        tokio::spawn(async move {
            let mut first = Some(first_progress_tx);
            pk.install(InstallSource::PackageId(DUMMY_PACKAGE), |n| {
                if matches!(n, InstallNotice::Progress { .. }) {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
                notices.lock().unwrap().push(n);
            })
            .await;
        })
    };
    tokio::time::timeout(Duration::from_secs(20), first_progress)
        .await
        .expect("progress within 20 s")
        .expect("install reported progress");
    env.kill_packagekitd();
    tokio::time::timeout(Duration::from_secs(10), install)
        .await
        .expect("install ends within 10 s of the daemon's death")
        .expect("install task");

    let notices = notices.lock().unwrap();
    assert_eq!(
        install_completion(&notices),
        &Completion::Failed {
            details: "PackageKit D-Bus service died, abort operation".into()
        }
    );
}

#[tokio::test]
async fn a_transaction_exceeding_the_watchdog_fails() {
    require_root!();
    let env = TestEnv::start(dummy());
    let timeouts = Timeouts {
        transaction: Duration::from_secs(2),
        ..Timeouts::default()
    };
    let pk = env.client(timeouts).await;

    let started = std::time::Instant::now();
    let notices = install_notices(&pk, InstallSource::PackageId(DUMMY_PACKAGE)).await;

    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        failed_details(install_completion(&notices)),
        "PackageKit transaction did not finish within 2 s, abort operation"
    );
}

/// The signal-before-call rule: fast transactions (dummy backend, a few ms each) never lose their
/// `Finished`.
#[tokio::test]
async fn fifty_fast_transactions_all_finish() {
    require_root!();
    let env = TestEnv::start(dummy());
    let pk = env
        .client(Timeouts {
            transaction: Duration::from_secs(10),
            ..Timeouts::default()
        })
        .await;

    for i in 0..50 {
        let mut transaction = pk
            .begin(Request::Resolve("glib2"), false)
            .await
            .expect("begin");
        let mut packages = 0;
        loop {
            match transaction.next_event().await {
                Ok(Event::Package { .. }) => packages += 1,
                Ok(Event::Finished { exit, .. }) => {
                    assert_eq!(exit, 1, "transaction {i}");
                    break;
                }
                Ok(_) => {}
                Err(err) => panic!("transaction {i}: {err}"),
            }
        }
        assert!(packages >= 1, "transaction {i} resolved nothing");
    }
}

#[tokio::test]
async fn package_id_cache_looks_up_each_file_version_once() {
    require_root!();
    let env = TestEnv::start(dummy());
    let pk = env.client(Timeouts::default()).await;
    let cache = PackageIdCache::new(pk, Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let desktop = dir.path().join("app.desktop");
    std::fs::write(&desktop, "[Desktop Entry]\n").unwrap();

    // The dummy backend's SearchFiles answers every path with the same package.
    let first = cache.package_id(&desktop).await;
    let second = cache.package_id(&desktop).await;
    assert!(
        first
            .as_deref()
            .is_some_and(|id| id.split(';').count() == 4),
        "{first:?}"
    );
    assert_eq!(second, first);
    assert_eq!(cache.dbus_lookups(), 1);

    // A new version of the file (dpkg renames a new file into place) is looked up again.
    let replacement = dir.path().join("app.desktop.new");
    std::fs::write(&replacement, "[Desktop Entry]\n").unwrap();
    std::fs::rename(&replacement, &desktop).unwrap();
    assert_eq!(cache.package_id(&desktop).await, first);
    assert_eq!(cache.dbus_lookups(), 2);

    // A vanished file has no package and costs no lookup.
    std::fs::remove_file(&desktop).unwrap();
    assert_eq!(cache.package_id(&desktop).await, None);
    assert_eq!(cache.dbus_lookups(), 2);
}
