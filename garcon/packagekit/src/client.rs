//! The PackageKit client: connection, and the operations garcon performs (garcon-service
//! §5.4-5.7, garcon-host §4.6 and §12).

use zbus::proxy::CacheProperties;

use crate::details::PackageDetails;
use crate::enums::{host_percent, EXIT_SUCCESS, STATUS_DOWNLOAD, STATUS_INSTALL, STATUS_REMOVE};
use crate::error::{DbusError, Failure, GeneralError};
use crate::proxy::PackageKitProxy;
use crate::transaction::{timed, Event, Request, Timeouts, Transaction};

/// The system bus could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the D-Bus system bus ({bus}): {source}")]
pub struct ConnectError {
    /// Which bus: `DBUS_SYSTEM_BUS_ADDRESS` / the default, or the explicit address.
    pub bus: String,
    /// The failure.
    pub source: DbusError,
}

/// What to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallSource<'a> {
    /// A local package file (`InstallFiles`).
    File(&'a str),
    /// A package id from a repository (`InstallPackages`).
    PackageId(&'a str),
}

/// Install progress phases reported to the host (PackageKit status 8 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallPhase {
    /// Status DOWNLOAD (8).
    Downloading,
    /// Status INSTALL (9).
    Installing,
}

/// The end of an install or removal, reported exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Finished with exit SUCCESS. Installs carry `"Exit Code: 1"`; removals carry nothing.
    Succeeded {
        /// Details for the host's `failure_details` field.
        details: String,
    },
    /// PackageKit error, failed exit, or general error.
    Failed {
        /// Why.
        details: String,
    },
}

/// What an install reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallNotice {
    /// The whole-transaction percentage changed while downloading or installing.
    Progress {
        /// Downloading or installing.
        phase: InstallPhase,
        /// 0..=100 (PackageKit's 101 "unknown" is reported as 0).
        percent: u32,
    },
    /// The outcome; nothing follows.
    Completed(Completion),
}

/// What a removal reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveNotice {
    /// A transaction property changed while the status is REMOVE (6).
    Uninstalling {
        /// 0..=100 (101 is reported as 0).
        percent: u32,
    },
    /// The outcome; nothing follows.
    Completed(Completion),
}

/// A PackageKit client on one bus connection. Cheap to clone.
#[derive(Clone)]
pub struct PackageKit {
    root: PackageKitProxy<'static>,
    timeouts: Timeouts,
}

impl std::fmt::Debug for PackageKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageKit")
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// The text sent when a package search finds no owner (§5.7).
pub fn no_owner_text(path: &str) -> String {
    format!("Could not find package that owns {path}")
}

impl PackageKit {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set, else the default socket).
    pub async fn system(timeouts: Timeouts) -> Result<Self, ConnectError> {
        let bus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .unwrap_or_else(|_| "default system bus".to_owned());
        let builder = zbus::connection::Builder::system().map_err(|e| ConnectError {
            bus: bus.clone(),
            source: e.into(),
        })?;
        Self::build(builder, bus, timeouts).await
    }

    /// Connects to the bus at `address` (a D-Bus address such as `unix:path=/tmp/bus`).
    pub async fn connect(address: &str, timeouts: Timeouts) -> Result<Self, ConnectError> {
        let builder = zbus::connection::Builder::address(address).map_err(|e| ConnectError {
            bus: address.to_owned(),
            source: e.into(),
        })?;
        Self::build(builder, address.to_owned(), timeouts).await
    }

    async fn build(
        builder: zbus::connection::Builder<'_>,
        bus: String,
        timeouts: Timeouts,
    ) -> Result<Self, ConnectError> {
        let conn = timed(timeouts.call, builder.method_timeout(timeouts.call).build())
            .await
            .map_err(|source| ConnectError {
                bus: bus.clone(),
                source,
            })?;
        Self::with_connection(&conn, timeouts)
            .await
            .map_err(|source| ConnectError { bus, source })
    }

    /// Uses an existing connection (which should have a method timeout; every call made here is
    /// bounded by `timeouts.call` regardless).
    pub async fn with_connection(
        conn: &zbus::Connection,
        timeouts: Timeouts,
    ) -> Result<Self, DbusError> {
        let root = PackageKitProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok(Self { root, timeouts })
    }

    /// The bus connection.
    pub fn connection(&self) -> &zbus::Connection {
        self.root.inner().connection()
    }

    /// The time limits in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The daemon's backend name (`apt`, `dummy`, ...); starts the daemon if it is activatable.
    pub async fn backend_name(&self) -> Result<String, DbusError> {
        timed(self.timeouts.call, self.root.backend_name()).await
    }

    /// Starts a transaction running `request` (subscriptions in place before the request is
    /// issued). With `track_properties`, `Status`/`Percentage` changes are reported as events,
    /// starting with the initial values.
    pub async fn begin(
        &self,
        request: Request<'_>,
        track_properties: bool,
    ) -> Result<Transaction, GeneralError> {
        Transaction::begin(&self.root, self.timeouts, request, track_properties).await
    }

    /// `GetDetailsLocal` on a package file.
    pub async fn details_local(&self, file: &str) -> Result<PackageDetails, Failure> {
        self.details_of(Request::GetDetailsLocal(file)).await
    }

    /// `GetDetails` on a package id (an installed package has no `size`: 0).
    pub async fn details(&self, package_id: &str) -> Result<PackageDetails, Failure> {
        self.details_of(Request::GetDetails(package_id)).await
    }

    /// Success iff `Finished` with exit 1; the last `Details` wins (none: empty details). On
    /// failure the first `ErrorCode`'s text.
    async fn details_of(&self, request: Request<'_>) -> Result<PackageDetails, Failure> {
        let mut transaction = self.begin(request, false).await?;
        let mut details = PackageDetails::default();
        let mut error = None;
        loop {
            match transaction.next_event().await? {
                Event::Details(d) => details = d,
                Event::ErrorCode { code, details } => {
                    error.get_or_insert(Failure::PackageKit { code, details });
                }
                Event::Finished { exit, .. } if exit == EXIT_SUCCESS => return Ok(details),
                Event::Finished { exit, .. } => {
                    return Err(error.unwrap_or(Failure::Exit {
                        operation: request.method(),
                        exit,
                    }))
                }
                Event::Package { .. } | Event::Properties(_) => {}
            }
        }
    }

    /// `Resolve(1, [name])`: the first package id, or `None` when the transaction finished
    /// without any.
    pub async fn resolve(&self, name: &str) -> Result<Option<String>, Failure> {
        self.first_package(Request::Resolve(name)).await
    }

    /// `SearchFiles(2, [path])`: the id of the package owning `path` (first `Package` signal), or
    /// `None` when no package owns it.
    pub async fn owner_of_file(&self, path: &str) -> Result<Option<String>, Failure> {
        self.first_package(Request::SearchFiles(path)).await
    }

    /// The first `Package` wins at once (the transaction is not waited for); an `ErrorCode` or a
    /// general error before it fails; `Finished` without a package is `None`.
    async fn first_package(&self, request: Request<'_>) -> Result<Option<String>, Failure> {
        let mut transaction = self.begin(request, false).await?;
        loop {
            match transaction.next_event().await? {
                Event::Package { package_id, .. } => return Ok(Some(package_id)),
                Event::ErrorCode { code, details } => {
                    return Err(Failure::PackageKit { code, details })
                }
                Event::Finished { .. } => return Ok(None),
                Event::Details(_) | Event::Properties(_) => {}
            }
        }
    }

    /// Installs a package file or id (§5.6 steps 5-7). `notify` gets `Progress` whenever the
    /// percentage changes while downloading (8) or installing (9), then exactly one `Completed`:
    /// the first `ErrorCode` (its details), else `Finished` (`"Exit Code: <n>"`, succeeded iff
    /// n == 1), else a general error. Returns when the transaction is torn down (after
    /// `Finished`, the daemon's death, or the watchdog), which may be after `Completed`.
    pub async fn install(
        &self,
        source: InstallSource<'_>,
        mut notify: impl FnMut(InstallNotice) + Send,
    ) {
        let request = match source {
            InstallSource::File(file) => Request::InstallFiles(file),
            InstallSource::PackageId(id) => Request::InstallPackages(id),
        };
        let mut report = Reporter::new(&mut notify);
        let mut transaction = match self.begin(request, true).await {
            Ok(transaction) => transaction,
            Err(err) => {
                report.complete(Completion::Failed {
                    details: err.to_string(),
                });
                return;
            }
        };
        loop {
            let event = match transaction.next_event().await {
                Ok(event) => event,
                Err(err) => {
                    report.complete(Completion::Failed {
                        details: err.to_string(),
                    });
                    return;
                }
            };
            match event {
                Event::Properties(p) if p.percentage_changed => {
                    let phase = match p.status {
                        STATUS_DOWNLOAD => InstallPhase::Downloading,
                        STATUS_INSTALL => InstallPhase::Installing,
                        _ => continue,
                    };
                    report.progress(InstallNotice::Progress {
                        phase,
                        percent: host_percent(p.percentage),
                    });
                }
                Event::ErrorCode { details, .. } => {
                    report.complete(Completion::Failed { details });
                }
                Event::Finished { exit, .. } => {
                    let details = format!("Exit Code: {exit}");
                    let completion = if exit == EXIT_SUCCESS {
                        Completion::Succeeded { details }
                    } else {
                        Completion::Failed { details }
                    };
                    report.complete(completion);
                    return;
                }
                Event::Properties(_) | Event::Package { .. } | Event::Details(_) => {}
            }
        }
    }

    /// Removes a package (§5.7 step 5): `Uninstalling` on any property change while the status
    /// is REMOVE (6), then exactly one `Completed`: `ErrorCode` details, `Finished` exit 1
    /// (succeeded, no details) or `"Uninstall transaction failed with code: <n>"`, or a general
    /// error. Returns at teardown.
    pub async fn remove(&self, package_id: &str, mut notify: impl FnMut(RemoveNotice) + Send) {
        let mut report = Reporter::new(&mut notify);
        let mut transaction = match self.begin(Request::RemovePackages(package_id), true).await {
            Ok(transaction) => transaction,
            Err(err) => {
                report.complete(Completion::Failed {
                    details: err.to_string(),
                });
                return;
            }
        };
        loop {
            let event = match transaction.next_event().await {
                Ok(event) => event,
                Err(err) => {
                    report.complete(Completion::Failed {
                        details: err.to_string(),
                    });
                    return;
                }
            };
            match event {
                Event::Properties(p) if p.status == STATUS_REMOVE => {
                    report.progress(RemoveNotice::Uninstalling {
                        percent: host_percent(p.percentage),
                    });
                }
                Event::ErrorCode { details, .. } => {
                    report.complete(Completion::Failed { details });
                }
                Event::Finished { exit, .. } => {
                    let completion = if exit == EXIT_SUCCESS {
                        Completion::Succeeded {
                            details: String::new(),
                        }
                    } else {
                        Completion::Failed {
                            details: format!("Uninstall transaction failed with code: {exit}"),
                        }
                    };
                    report.complete(completion);
                    return;
                }
                Event::Properties(_) | Event::Package { .. } | Event::Details(_) => {}
            }
        }
    }

    /// Finds the package owning `path` and removes it (§5.7 steps 4-5). A failed search or no
    /// owner completes with `Failed` (`"Could not find package that owns <path>"`).
    pub async fn remove_owner_of(&self, path: &str, mut notify: impl FnMut(RemoveNotice) + Send) {
        match self.owner_of_file(path).await {
            Ok(Some(package_id)) => {
                tracing::info!(
                    path,
                    package_id,
                    "removing the package owning a desktop file"
                );
                self.remove(&package_id, notify).await;
            }
            Ok(None) => notify(RemoveNotice::Completed(Completion::Failed {
                details: no_owner_text(path),
            })),
            Err(failure) => notify(RemoveNotice::Completed(Completion::Failed {
                details: failure.to_string(),
            })),
        }
    }
}

/// Notices of one operation: progress until the completion, exactly one completion, nothing after.
struct Reporter<'f, N> {
    notify: &'f mut (dyn FnMut(N) + Send),
    done: bool,
}

/// Notice types that carry a completion.
trait Completes {
    fn completed(completion: Completion) -> Self;
}

impl Completes for InstallNotice {
    fn completed(completion: Completion) -> Self {
        InstallNotice::Completed(completion)
    }
}

impl Completes for RemoveNotice {
    fn completed(completion: Completion) -> Self {
        RemoveNotice::Completed(completion)
    }
}

impl<'f, N: Completes> Reporter<'f, N> {
    fn new(notify: &'f mut (dyn FnMut(N) + Send)) -> Self {
        Self {
            notify,
            done: false,
        }
    }

    fn progress(&mut self, notice: N) {
        if !self.done {
            (self.notify)(notice);
        }
    }

    fn complete(&mut self, completion: Completion) {
        if !std::mem::replace(&mut self.done, true) {
            (self.notify)(N::completed(completion));
        }
    }
}
