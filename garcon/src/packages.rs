//! Package operations behind GetLinuxPackageInfo, InstallLinuxPackage and
//! UninstallPackageOwningFile (garcon-service §5.5-5.7), and the app list's package ids
//! (garcon-host §4.6).
//!
//! * Requests are validated first ([`InfoRequest::validate`], [`InstallRequest::validate`],
//!   [`UninstallRequest::validate`]); a [`RequestError`] is the rpc's `INVALID_ARGUMENT`, except
//!   the in-band ones ([`RequestError::is_in_band`]).
//! * DEVIATION (our issue: "a path outside the container user's reach"): a package file must be
//!   a regular file that garcon's own user can read. PackageKit runs as root and would read
//!   anything the path names, so without this check any caller could have root parse (and
//!   install) a file the container user cannot see. Refused with `FAILED` (install) or
//!   `success=false` (info) and a reason naming the path; the request then carries the
//!   canonical path, so PackageKit reads the very file that was checked.
//! * Installs and uninstalls share one process-wide busy flag ([`BusyFlag`]): set atomically when
//!   an operation starts, cleared just before its terminal progress message is queued (a host may
//!   start the next operation the moment it sees a final status: release first, then report),
//!   and at the latest when its PackageKit transaction is torn down (the daemon's death, the
//!   transaction watchdog) — also if the task panics, since the flag is an RAII guard.
//! * Progress goes to a [`ProgressSink`] (the host client) in order, through a queue, so a slow
//!   host never stalls the D-Bus side.
//!
//! No gRPC types here; `service::packages` translates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crostini_packagekit::{
    Completion, InstallNotice, InstallPhase, InstallSource, PackageDetails, PackageIdCache,
    PackageKit, RemoveNotice, Timeouts,
};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::apps::{NoPackageLookup, PackageIdLookup};
use crate::desktop::{find_file_for_desktop_id, XdgDirs};
use crate::state::GarconState;

/// How long GetLinuxPackageInfo waits for PackageKit (§5.5 step 5).
pub const INFO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one uncached app-list package-id lookup may take.
pub const PACKAGE_ID_LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Reply text for an install refused because an operation is running (§5.6 step 3).
pub const INSTALL_ALREADY_ACTIVE: &str = "Install or other blocking operation is already active";
/// Reply text for an uninstall refused because an operation is running (§5.7 step 3).
pub const UNINSTALL_BLOCKED: &str = "Uninstall or other blocking operation is already active";
/// `failure_reason` of GetLinuxPackageInfo when PackageKit did not answer in time.
pub const INFO_TIMEOUT_TEXT: &str = "Timeout";

/// A malformed request: the rpc answers `INVALID_ARGUMENT` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// GetLinuxPackageInfo with neither field.
    #[error("file_path and package_name cannot both be empty")]
    InfoWithoutTarget,
    /// InstallLinuxPackage with neither field.
    #[error("file_path and package_id cannot both be empty")]
    InstallWithoutTarget,
    /// `file_path` names nothing.
    #[error("file_path does not exist")]
    FileMissing,
    /// UninstallPackageOwningFile with an empty id.
    #[error("missing desktop_file_id")]
    MissingDesktopFileId,
    /// No desktop file has that id.
    #[error("desktop_file_id does not exist")]
    UnknownDesktopFileId,
    /// `file_path` is not something the container user can read (in-band).
    #[error("{} is not readable by the container user (uid {uid}): {reason}", path.display())]
    NotReadable {
        path: PathBuf,
        uid: u32,
        reason: String,
    },
    /// `file_path` is a directory, device, FIFO or socket (in-band).
    #[error("{} is not a regular file", path.display())]
    NotRegularFile { path: PathBuf },
}

impl RequestError {
    /// Whether the rpc reports this in its reply (`FAILED` / `success=false` with the message)
    /// rather than as `INVALID_ARGUMENT`.
    pub fn is_in_band(&self) -> bool {
        matches!(self, Self::NotReadable { .. } | Self::NotRegularFile { .. })
    }
}

/// Whose read permission a package file is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileAccess {
    /// garcon's own real uid and gids, with access(2) (production: garcon runs as the container
    /// user).
    #[default]
    Process,
    /// The given user and primary group, from the mode bits of the file and of every directory
    /// above it (no ACLs, no supplementary groups; uid 0 may read everything). For tests, which
    /// run as root, where access(2) always succeeds.
    User { uid: u32, gid: u32 },
}

impl FileAccess {
    fn uid(self) -> u32 {
        match self {
            Self::Process => nix::unistd::getuid().as_raw(),
            Self::User { uid, .. } => uid,
        }
    }

    /// Whether the user may read `path` (canonical), or why not.
    fn check_readable(self, path: &Path) -> Result<(), String> {
        match self {
            Self::Process => nix::unistd::access(path, nix::unistd::AccessFlags::R_OK)
                .map_err(|errno| errno.desc().to_owned()),
            Self::User { uid: 0, .. } => Ok(()),
            Self::User { uid, gid } => {
                for dir in path.ancestors().skip(1) {
                    let meta = std::fs::metadata(dir)
                        .map_err(|err| format!("cannot stat {}: {err}", dir.display()))?;
                    if !mode_permits(&meta, uid, gid, 0o1) {
                        return Err(format!("no search permission on {}", dir.display()));
                    }
                }
                let meta = std::fs::metadata(path).map_err(|err| err.to_string())?;
                if mode_permits(&meta, uid, gid, 0o4) {
                    Ok(())
                } else {
                    Err("Permission denied".to_owned())
                }
            }
        }
    }
}

/// The owner, group or other permission bit `bit` (0o4 read, 0o1 search) that applies to the
/// user.
fn mode_permits(meta: &std::fs::Metadata, uid: u32, gid: u32, bit: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let shift = if meta.uid() == uid {
        6
    } else if meta.gid() == gid {
        3
    } else {
        0
    };
    (meta.mode() >> shift) & bit != 0
}

/// The canonical form of a request path (relative paths resolve against garcon's cwd, §5.5):
/// it must exist (else `FileMissing`), be a regular file and be readable as `access` says.
async fn package_file(file_path: &str, access: FileAccess) -> Result<PathBuf, RequestError> {
    let path = std::path::absolute(file_path).map_err(|_| RequestError::FileMissing)?;
    tokio::task::spawn_blocking(move || check_package_file(path, access))
        .await
        .unwrap_or_else(|err| {
            tracing::error!(%err, "package file check task failed");
            Err(RequestError::FileMissing)
        })
}

fn check_package_file(path: PathBuf, access: FileAccess) -> Result<PathBuf, RequestError> {
    let not_readable = |path: PathBuf, reason: String| RequestError::NotReadable {
        path,
        uid: access.uid(),
        reason,
    };
    let canonical = match std::fs::canonicalize(&path) {
        Ok(canonical) => canonical,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(RequestError::FileMissing)
        }
        Err(err) => return Err(not_readable(path, err.to_string())),
    };
    let meta = std::fs::metadata(&canonical)
        .map_err(|err| not_readable(canonical.clone(), err.to_string()))?;
    if !meta.is_file() {
        return Err(RequestError::NotRegularFile { path: canonical });
    }
    access
        .check_readable(&canonical)
        .map_err(|reason| not_readable(canonical.clone(), reason))?;
    Ok(canonical)
}

/// What GetLinuxPackageInfo asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoRequest {
    /// A local package file (absolute path; `file_path` wins when both are set).
    File(PathBuf),
    /// A package name to resolve.
    PackageName(String),
}

impl InfoRequest {
    /// §5.5 steps 1-2, checked against garcon's own user.
    pub async fn validate(file_path: &str, package_name: &str) -> Result<Self, RequestError> {
        Self::validate_as(file_path, package_name, FileAccess::Process).await
    }

    /// As [`InfoRequest::validate`], checking readability as `access` says.
    pub async fn validate_as(
        file_path: &str,
        package_name: &str,
        access: FileAccess,
    ) -> Result<Self, RequestError> {
        if !file_path.is_empty() {
            Ok(Self::File(package_file(file_path, access).await?))
        } else if !package_name.is_empty() {
            Ok(Self::PackageName(package_name.to_owned()))
        } else {
            Err(RequestError::InfoWithoutTarget)
        }
    }
}

/// What InstallLinuxPackage installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallRequest {
    /// A local package file (absolute path; `file_path` wins when both are set).
    File(PathBuf),
    /// A package id.
    PackageId(String),
}

impl InstallRequest {
    /// §5.6 steps 1-2 (before the busy check), checked against garcon's own user.
    pub async fn validate(file_path: &str, package_id: &str) -> Result<Self, RequestError> {
        Self::validate_as(file_path, package_id, FileAccess::Process).await
    }

    /// As [`InstallRequest::validate`], checking readability as `access` says.
    pub async fn validate_as(
        file_path: &str,
        package_id: &str,
        access: FileAccess,
    ) -> Result<Self, RequestError> {
        if !file_path.is_empty() {
            Ok(Self::File(package_file(file_path, access).await?))
        } else if !package_id.is_empty() {
            Ok(Self::PackageId(package_id.to_owned()))
        } else {
            Err(RequestError::InstallWithoutTarget)
        }
    }
}

/// The desktop file whose owning package UninstallPackageOwningFile removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallRequest {
    /// The desktop file found for the id.
    pub desktop_file: PathBuf,
}

impl UninstallRequest {
    /// §5.7 steps 1-2: the id must be non-empty and name a desktop file (lookup §4.7).
    pub async fn validate(desktop_file_id: &str, xdg: &XdgDirs) -> Result<Self, RequestError> {
        if desktop_file_id.is_empty() {
            return Err(RequestError::MissingDesktopFileId);
        }
        let id = desktop_file_id.to_owned();
        let dirs = xdg.application_dirs();
        let found = tokio::task::spawn_blocking(move || find_file_for_desktop_id(&id, &dirs))
            .await
            .unwrap_or_else(|err| {
                tracing::error!(%err, "desktop file lookup task failed");
                None
            });
        found
            .map(|desktop_file| Self { desktop_file })
            .ok_or(RequestError::UnknownDesktopFileId)
    }
}

/// InstallLinuxPackageProgress status (wire values in `service::packages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStatus {
    /// Terminal: PackageKit finished with exit 1.
    Succeeded,
    /// Terminal: error, failed exit, or general error.
    Failed,
    /// PackageKit status DOWNLOAD.
    Downloading,
    /// PackageKit status INSTALL.
    Installing,
}

/// One InstallLinuxPackageProgress message (the token is the host client's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallProgress {
    /// Status.
    pub status: InstallStatus,
    /// 0..=100; 0 on terminal messages.
    pub percent: u32,
    /// Terminal messages only: `"Exit Code: <n>"` or the error text.
    pub failure_details: String,
    /// The request's `command_uuid`, echoed verbatim (may be empty).
    pub command_uuid: String,
}

/// UninstallPackageProgress status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UninstallStatus {
    /// Terminal: removed.
    Succeeded,
    /// Terminal: not removed.
    Failed,
    /// PackageKit status REMOVE.
    Uninstalling,
}

/// One UninstallPackageProgress message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallProgress {
    /// Status.
    pub status: UninstallStatus,
    /// 0..=100; 0 on terminal messages.
    pub percent: u32,
    /// Failed only: why.
    pub failure_details: String,
}

/// Where progress goes (the host's ContainerListener in production; `HostClient` implements it in
/// `service::packages`). Delivery failures are the sink's to log; they never stop an operation.
pub trait ProgressSink: Send + Sync {
    /// Sends one InstallLinuxPackageProgress.
    fn install_progress(&self, progress: InstallProgress) -> BoxFuture<'_, ()>;
    /// Sends one UninstallPackageProgress.
    fn uninstall_progress(&self, progress: UninstallProgress) -> BoxFuture<'_, ()>;
}

/// The process-wide "blocking operation active" flag shared by installs and uninstalls.
#[derive(Debug, Clone, Default)]
pub struct BusyFlag(Arc<AtomicBool>);

/// Holds the [`BusyFlag`] set; dropping it clears the flag.
#[derive(Debug)]
pub struct BusyGuard(Arc<AtomicBool>);

impl BusyFlag {
    /// Sets the flag if it is clear (atomic test-and-set).
    pub fn try_acquire(&self) -> Option<BusyGuard> {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| BusyGuard(self.0.clone()))
    }

    /// Whether an install or uninstall is running.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Whether InstallLinuxPackage started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStart {
    /// Running; progress follows.
    Started,
    /// Another install or uninstall is running ([`INSTALL_ALREADY_ACTIVE`]).
    AlreadyActive,
}

/// Whether UninstallPackageOwningFile started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UninstallStart {
    /// Running; progress follows.
    Started,
    /// Another install or uninstall is running ([`UNINSTALL_BLOCKED`]).
    Blocked,
}

/// The package operations of one garcon process.
pub struct Packages {
    packagekit: PackageKit,
    sink: Arc<dyn ProgressSink>,
    busy: BusyFlag,
    info_timeout: Duration,
    owners: Arc<PackageIdCache>,
    xdg: XdgDirs,
}

impl std::fmt::Debug for Packages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packages")
            .field("packagekit", &self.packagekit)
            .field("busy", &self.busy.is_set())
            .field("info_timeout", &self.info_timeout)
            .finish_non_exhaustive()
    }
}

impl Packages {
    /// Operations on `packagekit`, reporting progress to `sink`.
    pub fn new(packagekit: PackageKit, sink: Arc<dyn ProgressSink>) -> Self {
        let owners = Arc::new(PackageIdCache::new(
            packagekit.clone(),
            PACKAGE_ID_LOOKUP_TIMEOUT,
        ));
        Self {
            packagekit,
            sink,
            busy: BusyFlag::default(),
            info_timeout: INFO_TIMEOUT,
            owners,
            xdg: XdgDirs::from_env(),
        }
    }

    /// Overrides where desktop file ids are looked up (default: the process environment).
    pub fn with_xdg(mut self, xdg: XdgDirs) -> Self {
        self.xdg = xdg;
        self
    }

    /// Where desktop file ids are looked up.
    pub fn xdg(&self) -> &XdgDirs {
        &self.xdg
    }

    /// Overrides the GetLinuxPackageInfo wait (tests).
    pub fn with_info_timeout(mut self, timeout: Duration) -> Self {
        self.info_timeout = timeout;
        self
    }

    /// The shared busy flag.
    pub fn busy(&self) -> &BusyFlag {
        &self.busy
    }

    /// The PackageKit client.
    pub fn packagekit(&self) -> &PackageKit {
        &self.packagekit
    }

    /// Cached desktop-file → package-id lookups for the app list (garcon-host §4.6); cleared
    /// whenever an install or uninstall ends.
    pub fn package_id_lookup(&self) -> Arc<dyn PackageIdLookup> {
        Arc::new(CachedPackageIds(self.owners.clone()))
    }

    /// The cache behind [`Self::package_id_lookup`].
    pub fn package_id_cache(&self) -> &Arc<PackageIdCache> {
        &self.owners
    }

    /// GetLinuxPackageInfo (§5.5 steps 2-6): details, or the in-band failure reason. Waits at
    /// most the info timeout (then `"Timeout"`; the late result is discarded).
    pub async fn info(&self, request: &InfoRequest) -> Result<PackageDetails, String> {
        let work = async {
            match request {
                InfoRequest::File(path) => match path.to_str() {
                    Some(file) => self
                        .packagekit
                        .details_local(file)
                        .await
                        .map_err(|f| f.to_string()),
                    None => Err(format!("file_path {} is not valid UTF-8", path.display())),
                },
                InfoRequest::PackageName(name) => self.info_for_name(name).await,
            }
        };
        tokio::time::timeout(self.info_timeout, work)
            .await
            .unwrap_or_else(|_| Err(INFO_TIMEOUT_TEXT.to_owned()))
    }

    async fn info_for_name(&self, name: &str) -> Result<PackageDetails, String> {
        match self.packagekit.resolve(name).await {
            Err(failure) => Err(format!(
                "GetLinuxPackageInfoFromPackageName failed at resolve package name step: {failure}"
            )),
            Ok(None) => Err(format!(
                "GetLinuxPackageInfoFromPackageName failed to resolve: {name} into a package_id"
            )),
            Ok(Some(package_id)) => self
                .packagekit
                .details(&package_id)
                .await
                .map_err(|f| f.to_string()),
        }
    }

    /// InstallLinuxPackage (§5.6 steps 3-8): starts the install in the background unless an
    /// operation is running. Progress and exactly one terminal message go to the sink.
    pub fn install(&self, request: InstallRequest, command_uuid: String) -> InstallStart {
        let Some(guard) = self.busy.try_acquire() else {
            return InstallStart::AlreadyActive;
        };
        let packagekit = self.packagekit.clone();
        let sink = self.sink.clone();
        let owners = self.owners.clone();
        tokio::spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let forwarder = tokio::spawn(forward(rx, sink));
            let mut report = Report::new(guard, owners, tx, |p: &InstallProgress| {
                matches!(p.status, InstallStatus::Succeeded | InstallStatus::Failed)
            });
            let file;
            let source = match &request {
                InstallRequest::File(path) => {
                    file = path.to_string_lossy().into_owned();
                    InstallSource::File(&file)
                }
                InstallRequest::PackageId(id) => InstallSource::PackageId(id),
            };
            tracing::info!(?request, command_uuid, "install started");
            packagekit
                .install(source, |notice| {
                    let progress = install_progress(notice, &command_uuid);
                    if matches!(
                        progress.status,
                        InstallStatus::Succeeded | InstallStatus::Failed
                    ) {
                        tracing::info!(?progress, "install completed");
                    }
                    report.send(progress);
                })
                .await;
            // Transaction torn down (released already if a terminal message went out).
            drop(report);
            if let Err(err) = forwarder.await {
                tracing::error!(%err, "install progress forwarder failed");
            }
        });
        InstallStart::Started
    }

    /// UninstallPackageOwningFile (§5.7 steps 3-6): finds the package owning the desktop file
    /// and removes it in the background unless an operation is running.
    pub fn uninstall(&self, request: UninstallRequest) -> UninstallStart {
        let Some(guard) = self.busy.try_acquire() else {
            return UninstallStart::Blocked;
        };
        let packagekit = self.packagekit.clone();
        let sink = self.sink.clone();
        let owners = self.owners.clone();
        tokio::spawn(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let forwarder = tokio::spawn(forward(rx, sink));
            let mut report = Report::new(guard, owners, tx, |p: &UninstallProgress| {
                p.status != UninstallStatus::Uninstalling
            });
            let path = request.desktop_file.to_string_lossy().into_owned();
            tracing::info!(path, "uninstall started");
            packagekit
                .remove_owner_of(&path, |notice| {
                    let progress = uninstall_progress(notice);
                    if progress.status != UninstallStatus::Uninstalling {
                        tracing::info!(?progress, "uninstall completed");
                    }
                    report.send(progress);
                })
                .await;
            drop(report);
            if let Err(err) = forwarder.await {
                tracing::error!(%err, "uninstall progress forwarder failed");
            }
        });
        UninstallStart::Started
    }
}

/// A progress message that knows which sink method carries it.
trait Deliver: Send + 'static {
    fn deliver(self, sink: &dyn ProgressSink) -> BoxFuture<'_, ()>;
}

impl Deliver for InstallProgress {
    fn deliver(self, sink: &dyn ProgressSink) -> BoxFuture<'_, ()> {
        sink.install_progress(self)
    }
}

impl Deliver for UninstallProgress {
    fn deliver(self, sink: &dyn ProgressSink) -> BoxFuture<'_, ()> {
        sink.uninstall_progress(self)
    }
}

/// The garcon process's [`Packages`], kept in [`GarconState::extension`]. Startup (or a test) may
/// [`PackagesSlot::set`] one; otherwise the first use builds it from the state's system bus
/// connection and host client.
#[derive(Debug, Default)]
pub struct PackagesSlot(tokio::sync::OnceCell<Arc<Packages>>);

impl PackagesSlot {
    /// Installs `packages` unless the slot is already filled (then it is handed back).
    pub fn set(&self, packages: Arc<Packages>) -> Result<(), Arc<Packages>> {
        self.0.set(packages).map_err(|err| match err {
            tokio::sync::SetError::AlreadyInitializedError(p)
            | tokio::sync::SetError::InitializingError(p) => p,
        })
    }
}

/// The process's [`Packages`], or why PackageKit cannot be used (no system bus connection).
pub async fn packages_for(state: &GarconState) -> Result<Arc<Packages>, String> {
    let slot = state.extension::<PackagesSlot>();
    slot.0
        .get_or_try_init(|| async {
            let conn = state.system_bus().ok_or_else(|| {
                "PackageKit unavailable: no D-Bus system bus connection".to_owned()
            })?;
            let packagekit = PackageKit::with_connection(conn, Timeouts::default())
                .await
                .map_err(|err| format!("PackageKit unavailable: cannot create its proxy: {err}"))?;
            Ok::<_, String>(Arc::new(Packages::new(
                packagekit,
                Arc::new(state.host.clone()),
            )))
        })
        .await
        .cloned()
}

/// The app list's package-id lookup: cached PackageKit lookups, or no package ids at all when
/// there is no system bus (garcon-host §18: the list is still sent).
pub async fn package_id_lookup_for(state: &GarconState) -> Arc<dyn PackageIdLookup> {
    match packages_for(state).await {
        Ok(packages) => packages.package_id_lookup(),
        Err(reason) => {
            tracing::warn!(reason, "app list goes without package ids");
            Arc::new(NoPackageLookup)
        }
    }
}

/// Queues one operation's progress for [`forward`] and holds its busy flag: the flag is released
/// (and the owner cache cleared) just before the first terminal message is queued, so a host
/// that starts the next operation the moment it sees a final status is accepted (issue 9
/// defect 7: release first, then report). Dropping the report releases it at the latest.
struct Report<P> {
    guard: Option<BusyGuard>,
    /// Forgets cached package owners (the database may have changed).
    clear_owners: Box<dyn Fn() + Send>,
    tx: mpsc::UnboundedSender<P>,
    is_terminal: fn(&P) -> bool,
}

impl<P> Report<P> {
    fn new(
        guard: BusyGuard,
        owners: Arc<PackageIdCache>,
        tx: mpsc::UnboundedSender<P>,
        is_terminal: fn(&P) -> bool,
    ) -> Self {
        Self::with_clear(guard, Box::new(move || owners.clear()), tx, is_terminal)
    }

    fn with_clear(
        guard: BusyGuard,
        clear_owners: Box<dyn Fn() + Send>,
        tx: mpsc::UnboundedSender<P>,
        is_terminal: fn(&P) -> bool,
    ) -> Self {
        Report {
            guard: Some(guard),
            clear_owners,
            tx,
            is_terminal,
        }
    }

    fn send(&mut self, progress: P) {
        if (self.is_terminal)(&progress) {
            self.release();
        }
        let _ = self.tx.send(progress);
    }

    fn release(&mut self) {
        if let Some(guard) = self.guard.take() {
            (self.clear_owners)();
            drop(guard);
        }
    }
}

impl<P> Drop for Report<P> {
    fn drop(&mut self) {
        self.release();
        // The transaction is torn down: the package database is final now.
        (self.clear_owners)();
    }
}

/// Delivers queued progress to the sink one message at a time, in order.
async fn forward<P: Deliver>(mut rx: mpsc::UnboundedReceiver<P>, sink: Arc<dyn ProgressSink>) {
    while let Some(progress) = rx.recv().await {
        progress.deliver(sink.as_ref()).await;
    }
}

/// The host message for one install notice (§5.6 steps 6-7).
pub fn install_progress(notice: InstallNotice, command_uuid: &str) -> InstallProgress {
    let (status, percent, failure_details) = match notice {
        InstallNotice::Progress {
            phase: InstallPhase::Downloading,
            percent,
        } => (InstallStatus::Downloading, percent, String::new()),
        InstallNotice::Progress {
            phase: InstallPhase::Installing,
            percent,
        } => (InstallStatus::Installing, percent, String::new()),
        InstallNotice::Completed(Completion::Succeeded { details }) => {
            (InstallStatus::Succeeded, 0, details)
        }
        InstallNotice::Completed(Completion::Failed { details }) => {
            (InstallStatus::Failed, 0, details)
        }
    };
    InstallProgress {
        status,
        percent,
        failure_details,
        command_uuid: command_uuid.to_owned(),
    }
}

/// The host message for one removal notice (§5.7 step 5; details only on failure).
pub fn uninstall_progress(notice: RemoveNotice) -> UninstallProgress {
    let (status, percent, failure_details) = match notice {
        RemoveNotice::Uninstalling { percent } => {
            (UninstallStatus::Uninstalling, percent, String::new())
        }
        RemoveNotice::Completed(Completion::Succeeded { .. }) => {
            (UninstallStatus::Succeeded, 0, String::new())
        }
        RemoveNotice::Completed(Completion::Failed { details }) => {
            (UninstallStatus::Failed, 0, details)
        }
    };
    UninstallProgress {
        status,
        percent,
        failure_details,
    }
}

/// [`PackageIdLookup`] over the shared cache.
struct CachedPackageIds(Arc<PackageIdCache>);

impl PackageIdLookup for CachedPackageIds {
    fn package_id<'a>(&'a self, desktop_file: &'a Path) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.0.package_id(desktop_file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_flag_admits_one_holder_at_a_time() {
        let flag = BusyFlag::default();
        let guard = flag.try_acquire().expect("first acquire");
        assert!(flag.is_set());
        assert!(
            flag.clone().try_acquire().is_none(),
            "a clone shares the flag"
        );
        drop(guard);
        assert!(!flag.is_set());
        assert!(flag.try_acquire().is_some());
    }

    /// A sink that, on a terminal status, immediately tries to start the next operation.
    struct NextOperationSink {
        busy: BusyFlag,
        accepted: mpsc::UnboundedSender<bool>,
    }

    impl ProgressSink for NextOperationSink {
        fn install_progress(&self, progress: InstallProgress) -> BoxFuture<'_, ()> {
            if progress.status == InstallStatus::Failed {
                let _ = self.accepted.send(self.busy.try_acquire().is_some());
            }
            Box::pin(async {})
        }
        fn uninstall_progress(&self, progress: UninstallProgress) -> BoxFuture<'_, ()> {
            if progress.status != UninstallStatus::Uninstalling {
                let _ = self.accepted.send(self.busy.try_acquire().is_some());
            }
            Box::pin(async {})
        }
    }

    /// Issue 9 defect 7: PackageKit sends ErrorCode (the terminal FAILED) and its transaction is
    /// torn down seconds later; the host that sees FAILED must be able to start at once.
    #[tokio::test]
    async fn the_next_operation_is_accepted_as_soon_as_the_final_status_arrives() {
        let busy = BusyFlag::default();
        let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
        let sink: Arc<dyn ProgressSink> = Arc::new(NextOperationSink {
            busy: busy.clone(),
            accepted: accepted_tx,
        });

        let (tx, rx) = mpsc::unbounded_channel();
        let forwarder = tokio::spawn(forward(rx, sink.clone()));
        let guard = busy.try_acquire().expect("install starts");
        let mut report = Report::with_clear(guard, Box::new(|| {}), tx, |p: &InstallProgress| {
            matches!(p.status, InstallStatus::Succeeded | InstallStatus::Failed)
        });
        report.send(install_progress(
            InstallNotice::Progress {
                phase: InstallPhase::Downloading,
                percent: 10,
            },
            "u",
        ));
        report.send(install_progress(
            InstallNotice::Completed(Completion::Failed {
                details: "unsatisfiable dependency".into(),
            }),
            "u",
        ));
        // The transaction is still being torn down (the report is alive) when the host reacts.
        let verdict = tokio::time::timeout(Duration::from_secs(5), accepted.recv())
            .await
            .expect("final status delivered");
        assert_eq!(verdict, Some(true), "next operation refused after FAILED");
        drop(report);
        drop(forwarder.await);

        let (tx, rx) = mpsc::unbounded_channel();
        let forwarder = tokio::spawn(forward(rx, sink));
        let guard = busy.try_acquire().expect("uninstall starts");
        let mut report = Report::with_clear(guard, Box::new(|| {}), tx, |p: &UninstallProgress| {
            p.status != UninstallStatus::Uninstalling
        });
        report.send(uninstall_progress(RemoveNotice::Completed(
            Completion::Failed {
                details: "no".into(),
            },
        )));
        let verdict = tokio::time::timeout(Duration::from_secs(5), accepted.recv())
            .await
            .expect("final status delivered");
        assert_eq!(
            verdict,
            Some(true),
            "next operation refused after uninstall FAILED"
        );
        drop(report);
        drop(forwarder.await);
    }

    #[test]
    fn busy_flag_is_cleared_when_the_holder_panics() {
        let flag = BusyFlag::default();
        let inner = flag.clone();
        let result = std::thread::spawn(move || {
            let _guard = inner.try_acquire().expect("acquire");
            panic!("operation task panicked");
        })
        .join();
        assert!(result.is_err());
        assert!(!flag.is_set());
    }

    #[test]
    fn install_progress_maps_phases_and_echoes_the_uuid() {
        let downloading = install_progress(
            InstallNotice::Progress {
                phase: InstallPhase::Downloading,
                percent: 0,
            },
            "u-1",
        );
        assert_eq!(
            downloading,
            InstallProgress {
                status: InstallStatus::Downloading,
                percent: 0,
                failure_details: String::new(),
                command_uuid: "u-1".into(),
            }
        );
        let installing = install_progress(
            InstallNotice::Progress {
                phase: InstallPhase::Installing,
                percent: 80,
            },
            "",
        );
        assert_eq!(
            (installing.status, installing.percent),
            (InstallStatus::Installing, 80)
        );
    }

    #[test]
    fn install_completion_carries_details_both_ways() {
        let ok = install_progress(
            InstallNotice::Completed(Completion::Succeeded {
                details: "Exit Code: 1".into(),
            }),
            "u",
        );
        assert_eq!(
            (ok.status, ok.failure_details.as_str()),
            (InstallStatus::Succeeded, "Exit Code: 1")
        );
        let failed = install_progress(
            InstallNotice::Completed(Completion::Failed {
                details: "broken".into(),
            }),
            "u",
        );
        assert_eq!(
            (failed.status, failed.failure_details.as_str()),
            (InstallStatus::Failed, "broken")
        );
        assert_eq!(failed.command_uuid, "u");
    }

    #[test]
    fn uninstall_success_has_no_details() {
        let ok = uninstall_progress(RemoveNotice::Completed(Completion::Succeeded {
            details: "ignored".into(),
        }));
        assert_eq!(
            ok,
            UninstallProgress {
                status: UninstallStatus::Succeeded,
                percent: 0,
                failure_details: String::new()
            }
        );
        let progress = uninstall_progress(RemoveNotice::Uninstalling { percent: 66 });
        assert_eq!(
            (progress.status, progress.percent),
            (UninstallStatus::Uninstalling, 66)
        );
    }

    #[tokio::test]
    async fn validate_rejects_empty_requests() {
        assert_eq!(
            InfoRequest::validate("", "").await,
            Err(RequestError::InfoWithoutTarget)
        );
        assert_eq!(
            InstallRequest::validate("", "").await,
            Err(RequestError::InstallWithoutTarget)
        );
        let xdg = XdgDirs::from_data_dirs(vec![]);
        assert_eq!(
            UninstallRequest::validate("", &xdg).await,
            Err(RequestError::MissingDesktopFileId)
        );
    }

    #[tokio::test]
    async fn validate_rejects_missing_files_before_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.deb");
        let missing = missing.to_str().unwrap();
        assert_eq!(
            InfoRequest::validate(missing, "name").await,
            Err(RequestError::FileMissing)
        );
        assert_eq!(
            InstallRequest::validate(missing, "id;1;all;x").await,
            Err(RequestError::FileMissing)
        );
    }

    #[tokio::test]
    async fn validate_prefers_the_file_and_makes_it_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.deb");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            InstallRequest::validate(file.to_str().unwrap(), "id;1;all;x").await,
            Ok(InstallRequest::File(file.clone()))
        );
        assert_eq!(
            InfoRequest::validate("", "vim").await,
            Ok(InfoRequest::PackageName("vim".into()))
        );
        // Relative paths resolve against the current directory.
        let relative = InfoRequest::validate("Cargo.toml", "").await.unwrap();
        assert_eq!(
            relative,
            InfoRequest::File(std::env::current_dir().unwrap().join("Cargo.toml"))
        );
    }

    /// A root-owned dir others may search, holding a 0600 and a 0644 root-owned file.
    fn permission_fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let private = dir.path().join("private.deb");
        let public = dir.path().join("public.deb");
        for (path, mode) in [(&private, 0o600), (&public, 0o644)] {
            std::fs::write(path, b"x").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        (dir, private, public)
    }

    #[tokio::test]
    async fn validate_refuses_a_file_the_container_user_cannot_read() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, private, public) = permission_fixture();
        let owner = std::fs::metadata(&private).unwrap().uid();
        for uid in [1000, 65534] {
            if uid == owner {
                continue;
            }
            let user = FileAccess::User { uid, gid: uid };
            let refused = InstallRequest::validate_as(private.to_str().unwrap(), "", user).await;
            let Err(err) = refused else {
                panic!("uid {uid} may not read a 0600 file of uid {owner}: {refused:?}")
            };
            assert!(err.is_in_band());
            assert_eq!(
                err,
                RequestError::NotReadable {
                    path: private.clone(),
                    uid,
                    reason: "Permission denied".into()
                }
            );
            let text = err.to_string();
            assert!(text.contains(private.to_str().unwrap()), "{text}");
            assert!(text.contains(&format!("uid {uid}")), "{text}");
            assert_eq!(
                InfoRequest::validate_as(private.to_str().unwrap(), "", user).await,
                Err(err)
            );
            assert_eq!(
                InstallRequest::validate_as(public.to_str().unwrap(), "", user).await,
                Ok(InstallRequest::File(public.clone()))
            );
            assert_eq!(
                InfoRequest::validate_as(public.to_str().unwrap(), "", user).await,
                Ok(InfoRequest::File(public.clone()))
            );
        }
    }

    #[tokio::test]
    async fn validate_refuses_a_readable_file_in_an_unsearchable_directory() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _private, public) = permission_fixture();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let user = FileAccess::User {
            uid: 65534,
            gid: 65534,
        };
        let refused = InstallRequest::validate_as(public.to_str().unwrap(), "", user).await;
        let Err(RequestError::NotReadable { path, reason, .. }) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(path, public);
        assert!(reason.contains(dir.path().to_str().unwrap()), "{reason}");
    }

    #[tokio::test]
    async fn validate_refuses_non_regular_files_and_resolves_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let err = InstallRequest::validate(dir.path().to_str().unwrap(), "")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            RequestError::NotRegularFile {
                path: dir.path().to_owned()
            }
        );
        assert!(err.is_in_band());
        assert!(err.to_string().contains(dir.path().to_str().unwrap()));
        assert_eq!(
            InfoRequest::validate("/dev/null", "").await,
            Err(RequestError::NotRegularFile {
                path: "/dev/null".into()
            })
        );
        // The request carries the file the link points at: the one that was checked.
        let target = dir.path().join("real.deb");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link.deb");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            InstallRequest::validate(link.to_str().unwrap(), "").await,
            Ok(InstallRequest::File(target))
        );
        // A dangling link names nothing.
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling")).unwrap();
        assert_eq!(
            InstallRequest::validate(dir.path().join("dangling").to_str().unwrap(), "").await,
            Err(RequestError::FileMissing)
        );
    }

    /// The production check asks the kernel for garcon's real uid; run as that uid in a forked
    /// child, so it holds when the tests run as root.
    #[test]
    fn process_access_check_uses_the_real_uid() {
        let (_dir, private, public) = permission_fixture();
        if !nix::unistd::getuid().is_root() {
            // Unprivileged: the check applies to us directly.
            assert!(FileAccess::Process.check_readable(&public).is_ok());
            return;
        }
        // SAFETY: the child drops privileges, runs the check and _exits; it never returns into
        // the test harness. It allocates, which glibc's fork handlers make safe in the child.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).ok()?;
                    nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).ok()?;
                    let private_refused = matches!(
                        check_package_file(private.clone(), FileAccess::Process),
                        Err(RequestError::NotReadable { uid: 65534, .. })
                    );
                    let public_allowed =
                        check_package_file(public.clone(), FileAccess::Process).is_ok();
                    Some(match (private_refused, public_allowed) {
                        (true, true) => 0,
                        (false, _) => 2,
                        (true, false) => 3,
                    })
                })()
                .unwrap_or(1);
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "1: cannot drop privileges, 2: 0600 root file readable, 3: 0644 refused"
                );
            }
        }
    }

    #[tokio::test]
    async fn validate_uninstall_finds_the_desktop_file() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("applications/sub");
        std::fs::create_dir_all(&apps).unwrap();
        std::fs::write(
            apps.join("app.desktop"),
            "[Desktop Entry]\nType=Application\nName=A\n",
        )
        .unwrap();
        let xdg = XdgDirs::from_data_dirs(vec![dir.path().to_owned()]);
        assert_eq!(
            UninstallRequest::validate("sub-app", &xdg).await,
            Ok(UninstallRequest {
                desktop_file: apps.join("app.desktop")
            })
        );
        assert_eq!(
            UninstallRequest::validate("other", &xdg).await,
            Err(RequestError::UnknownDesktopFileId)
        );
    }
}
