//! Server mode: startup sequence and lifecycle (garcon-host.md §3).
//!
//! Order (§3.1), with our deviations marked:
//!  1. argv parsed ([`crate::cli`]);
//!  2. token: polled every 100 ms for up to 60 s ([`crate::token`]);
//!  3. lazy host channel ([`HostClient`]);
//!  5. logging (set up by `main` before this runs: syslog unless `--log-stderr`);
//!  6. uid check (1000 unless `--allow_any_user`);
//!  7. `--no_startup_notify` recorded in [`GarconState`];
//!  8. system D-Bus connection. DEVIATION: unavailable ⇒ logged as an error and garcon runs on
//!     without the PackageKit features, instead of exiting 255 (a missing bus would otherwise
//!     crash-loop the unit and take the app list, URL handling and sftp down with it);
//!  9. session D-Bus services (failure logged and ignored);
//! 10. garcon's gRPC server bound (port probing 10000..=19999 by default; all busy ⇒ 255, never a
//!     hang) and serving;
//! 11. sftp listener bound; its port published to the service (GetGarconSessionInfo);
//! 12. SIGCHLD: DEVIATION, not ignored. Every detached program is double-forked
//!     ([`crate::launch::spawn_detached`]) so it can never become our zombie, and ignoring
//!     SIGCHLD would break the commands whose output we collect;
//! 13. ContainerReady{token, garcon_port, sftp_port}, no deadline. DEVIATION (recommended, and
//!     wider than §3.5's): every transient failure (UNAVAILABLE, DEADLINE_EXCEEDED, and the
//!     UNKNOWN/INTERNAL/CANCELLED of a connection the host accepts and closes mid-restart) is
//!     retried with the same backoff (0.5 s doubling, cap 5 s, give up after 60 s); only a
//!     definitive refusal sent by the host ([`is_final_refusal`]) exits 255 at once;
//! 14. SIGTERM: the stop future is installed by the caller *before* startup, so a SIGTERM during
//!     startup ends garcon quietly (exit 0, no ContainerShutdown, like the default action);
//! 15. and 16. app publisher (watchers, initial app list, MIME types) in
//!     [`crate::app_publisher`]; DEVIATION: it also resends everything whenever the host
//!     reconnects ([`HostClient::link`]);
//! 17. low-disk timer (first check after 2 minutes);
//! 18. run until the stop future resolves (SIGTERM) ⇒ ContainerShutdown (best effort), stop the
//!     server, exit 0. ContainerShutdown is never sent on any other path.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crostini_common::transport::{Listener, TransportError};
use crostini_common::Address;
use crostini_proto::vm_tools::container::garcon_server::GarconServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::app_publisher::{AppPublisher, PublisherConfig};
use crate::config::{Paths, DEFAULT_UID, TOKEN_POLL_INTERVAL, TOKEN_WAIT};
use crate::disk::{self, LowDiskConfig};
use crate::host::HostClient;
use crate::service::GarconService;
use crate::session_dbus;
use crate::state::GarconState;
use crate::token::{wait_for_token, TokenError};

/// How long startup waits for the PackageKit-backed package-id lookup before publishing without.
pub const PACKAGE_LOOKUP_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where garcon's own gRPC server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    /// Exactly this address (port 0 lets the kernel choose for tcp).
    Fixed(Address),
    /// The first port of `first..=last` that binds, on `base`'s host/CID (§3.3).
    Probe {
        base: Address,
        first: u32,
        last: u32,
    },
}

/// ContainerReady retry policy (the recommended deviation of §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

/// Whether a ContainerReady failure is a definitive refusal by the host, which retrying cannot
/// change (garcon-host §18: FAILED_PRECONDITION for an unknown VM or a shut-down token; also a
/// host that rejects the request or does not implement the rpc). A status tonic made from a local
/// transport error carries that error as its source and is never final, whatever its code.
pub fn is_final_refusal(status: &Status) -> bool {
    let refusal = matches!(
        status.code(),
        Code::FailedPrecondition
            | Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::NotFound
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::Unimplemented
    );
    refusal && std::error::Error::source(status).is_none()
}

/// Everything server mode needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host_address: Address,
    pub listen: ListenSpec,
    pub sftp_listen: Address,
    pub token_file: PathBuf,
    pub token_poll: Duration,
    pub token_wait: Duration,
    pub allow_any_user: bool,
    pub no_startup_notify: bool,
    pub paths: Paths,
    pub ready_retry: RetryPolicy,
    /// Connect to the system bus (step 8).
    pub system_bus: bool,
    /// Export the session-bus services (step 9); `session_bus_address` overrides the bus.
    pub session_bus: bool,
    pub session_bus_address: Option<String>,
    /// Run the app-list/MIME publisher (steps 15-16).
    pub publish_apps: bool,
    /// Low-disk monitor (step 17); `None` disables it.
    pub low_disk: Option<LowDiskConfig>,
    /// Background package updates (§12); `None` disables them.
    pub updates: Option<crate::package_updates::UpdateSchedule>,
    /// Log to stderr instead of syslog (read by `main`).
    pub log_stderr: bool,
}

impl ServerConfig {
    pub fn new(
        host_address: Address,
        listen: ListenSpec,
        sftp_listen: Address,
        token_file: PathBuf,
        paths: Paths,
    ) -> Self {
        Self {
            host_address,
            listen,
            sftp_listen,
            token_file,
            token_poll: TOKEN_POLL_INTERVAL,
            token_wait: TOKEN_WAIT,
            allow_any_user: false,
            no_startup_notify: false,
            paths,
            ready_retry: RetryPolicy::default(),
            system_bus: true,
            session_bus: true,
            session_bus_address: None,
            publish_apps: true,
            low_disk: Some(LowDiskConfig::default()),
            updates: Some(crate::package_updates::UpdateSchedule::default()),
            log_stderr: false,
        }
    }
}

/// Why server mode ended with exit 255.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("cannot set up the channel to the host at {address}: {source}")]
    HostChannel {
        address: Address,
        source: TransportError,
    },
    #[error(
        "garcon must run as uid {DEFAULT_UID}, not uid {uid} (use --allow_any_user to override)"
    )]
    WrongUser { uid: u32 },
    #[error("cannot listen for garcon's gRPC server: {0}")]
    Listen(#[source] TransportError),
    #[error("no free port for garcon's gRPC server on {base} in {first}..={last}")]
    NoFreePort {
        base: Address,
        first: u32,
        last: u32,
    },
    #[error("cannot listen for sftp: {0}")]
    SftpListen(#[source] TransportError),
    #[error("the sftp listener on {address} has port 0")]
    SftpPortZero { address: Address },
    #[error(
        "ContainerReady to {address} failed after {attempts} attempt(s) over {elapsed:?}: \
         {code:?}: {message}"
    )]
    ContainerReady {
        address: Address,
        attempts: u32,
        elapsed: Duration,
        code: Code,
        message: String,
    },
}

/// How a server run ended normally (both exit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerExit {
    /// Stopped after a complete startup; ContainerShutdown was attempted.
    Stopped { shutdown_sent: bool },
    /// Stopped during startup (before ContainerReady succeeded); no ContainerShutdown.
    StoppedDuringStartup,
}

/// A startup milestone, reported to [`Observer`] in order (for tests and debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Token,
    UserChecked,
    SystemBus { connected: bool },
    SessionBus { connected: bool },
    Serving { address: Address, garcon_port: u32 },
    SftpListening { address: Address, sftp_port: u32 },
    ContainerReady { attempts: u32 },
    Publishing,
    LowDiskTimer,
    ShutdownSent { ok: bool },
    Stopped,
}

pub type Observer = Arc<dyn Fn(&Step) + Send + Sync>;

/// The port ContainerReady reports for a bound address (0 for unix sockets).
pub fn reported_port(address: &Address) -> u32 {
    address.port().unwrap_or(0)
}

/// Binds the first free port of `first..=last` on `base`'s host/CID. Only "address in use" moves
/// on to the next port; any other error (no vsock, permissions) is returned at once.
pub async fn bind_first_free(
    base: &Address,
    first: u32,
    last: u32,
) -> Result<Listener, StartupError> {
    for port in first..=last {
        let candidate = base.with_port(port).map_err(|e| {
            StartupError::Listen(TransportError::Bind {
                address: base.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })
        })?;
        match Listener::bind(&candidate).await {
            Ok(listener) => return Ok(listener),
            Err(TransportError::InUse { .. }) => continue,
            Err(error) => return Err(StartupError::Listen(error)),
        }
    }
    Err(StartupError::NoFreePort {
        base: base.clone(),
        first,
        last,
    })
}

async fn bind_grpc(listen: &ListenSpec) -> Result<Listener, StartupError> {
    match listen {
        ListenSpec::Fixed(address) => Listener::bind(address).await.map_err(StartupError::Listen),
        ListenSpec::Probe { base, first, last } => bind_first_free(base, *first, *last).await,
    }
}

/// Sends ContainerReady, retrying every failure but a final refusal ([`is_final_refusal`]) with
/// backoff. Returns the number of attempts. Each failure is logged with its code, message and the
/// next delay.
pub async fn send_container_ready(
    host: &HostClient,
    garcon_port: u32,
    sftp_port: u32,
    policy: &RetryPolicy,
) -> Result<u32, StartupError> {
    let start = tokio::time::Instant::now();
    let mut delay = policy.initial_delay;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let status = match host.container_ready(garcon_port, sftp_port).await {
            Ok(()) => return Ok(attempts),
            Err(status) => status,
        };
        let elapsed = start.elapsed();
        let give_up = is_final_refusal(&status) || elapsed + delay > policy.give_up_after;
        if give_up {
            return Err(StartupError::ContainerReady {
                address: host.address().clone(),
                attempts,
                elapsed,
                code: status.code(),
                message: status.message().to_string(),
            });
        }
        tracing::warn!(
            attempt = attempts,
            host = %host.address(),
            code = ?status.code(),
            retry_in = ?delay,
            "ContainerReady failed: {}; retrying",
            status.message()
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(policy.max_delay);
    }
}

/// Runs server mode until `stop` resolves (SIGTERM in production). `observer` sees each step.
pub async fn run_server<S>(
    config: ServerConfig,
    stop: S,
    observer: Option<Observer>,
) -> Result<ServerExit, StartupError>
where
    S: Future<Output = ()> + Send + 'static,
{
    let notify = |step: Step| {
        tracing::debug!(?step, "startup");
        if let Some(observer) = &observer {
            observer(&step);
        }
    };
    // The stop request is watched from the very beginning so startup can be abandoned.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stop_task = tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let _stop_guard = AbortOnDrop(stop_task);
    macro_rules! or_stopped {
        ($future:expr) => {{
            let mut rx = stop_rx.clone();
            tokio::select! {
                biased;
                _ = rx.wait_for(|stopped| *stopped) => {
                    tracing::info!("SIGTERM during startup; exiting without ContainerShutdown");
                    return Ok(ServerExit::StoppedDuringStartup);
                }
                value = $future => value,
            }
        }};
    }

    // 2. Token.
    let token = or_stopped!(wait_for_token(
        &config.token_file,
        config.token_poll,
        config.token_wait
    ))?;
    notify(Step::Token);

    // 3. Lazy host channel.
    let host = HostClient::new(&config.host_address, token).map_err(|source| {
        StartupError::HostChannel {
            address: config.host_address.clone(),
            source,
        }
    })?;

    // 6. uid.
    let uid = nix::unistd::getuid().as_raw();
    if uid != DEFAULT_UID && !config.allow_any_user {
        return Err(StartupError::WrongUser { uid });
    }
    notify(Step::UserChecked);

    // 7. State (records --no_startup_notify).
    let state = Arc::new(GarconState::new(
        host.clone(),
        config.paths.clone(),
        config.no_startup_notify,
    ));

    // 8. System bus.
    let connected = if config.system_bus {
        match tokio::time::timeout(session_dbus::BUS_TIMEOUT, zbus::Connection::system()).await {
            Ok(Ok(connection)) => {
                state.set_system_bus(connection);
                true
            }
            Ok(Err(error)) => {
                tracing::error!(
                    "cannot connect to the system D-Bus: {error}; package operations and \
                     package ids are unavailable"
                );
                false
            }
            Err(_) => {
                tracing::error!(
                    "timed out connecting to the system D-Bus; package operations and package \
                     ids are unavailable"
                );
                false
            }
        }
    } else {
        false
    };
    notify(Step::SystemBus { connected });

    // 9. Session bus services.
    let session = if config.session_bus {
        let host: Arc<dyn session_dbus::SessionHost> = Arc::new(host.clone());
        match session_dbus::start(host, config.session_bus_address.as_deref()).await {
            Ok(services) => Some(services),
            Err(error) => {
                tracing::warn!("{error}; screensaver inhibit and the file chooser portal are off");
                None
            }
        }
    } else {
        None
    };
    notify(Step::SessionBus {
        connected: session.is_some(),
    });

    // 10. gRPC server, serving before ContainerReady (the host may call back during it).
    let listener = bind_grpc(&config.listen).await?;
    let grpc_address = listener.local_address().clone();
    let garcon_port = reported_port(&grpc_address);
    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task: JoinHandle<Result<(), tonic::transport::Error>> = tokio::spawn(
        crostini_common::transport::server_builder()
            .add_service(GarconServer::new(GarconService::new(state.clone())))
            .serve_with_incoming_shutdown(listener.into_incoming(), async {
                let _ = server_stop_rx.await;
            }),
    );
    tracing::info!(address = %grpc_address, garcon_port, "garcon gRPC server listening");
    notify(Step::Serving {
        address: grpc_address.clone(),
        garcon_port,
    });

    // 11. sftp listener.
    let sftp_listener = Listener::bind(&config.sftp_listen)
        .await
        .map_err(StartupError::SftpListen)?;
    let sftp_address = sftp_listener.local_address().clone();
    let sftp_port = reported_port(&sftp_address);
    if sftp_port == 0 && !matches!(sftp_address, Address::Unix(_)) {
        return Err(StartupError::SftpPortZero {
            address: sftp_address,
        });
    }
    let sftp_task = crate::sftp::spawn_acceptor(sftp_listener, config.paths.sftp_server.clone());
    let _sftp_guard = AbortOnDrop(sftp_task);
    state.set_sftp_vsock_port(sftp_port);
    tracing::info!(address = %sftp_address, sftp_port, "sftp listener ready");
    notify(Step::SftpListening {
        address: sftp_address,
        sftp_port,
    });

    // 13. ContainerReady.
    let attempts = or_stopped!(send_container_ready(
        &host,
        garcon_port,
        sftp_port,
        &config.ready_retry
    ))?;
    tracing::info!(attempts, host = %host.address(), "ContainerReady acknowledged");
    notify(Step::ContainerReady { attempts });

    // 15.-16. App list and MIME types.
    let publisher = if config.publish_apps {
        // package_id lookups through PackageKit (none without a system bus: the list is still
        // sent). Bounded so a stuck bus cannot delay the initial list.
        let lookup: Arc<dyn crate::apps::PackageIdLookup> = match tokio::time::timeout(
            PACKAGE_LOOKUP_SETUP_TIMEOUT,
            crate::packages::package_id_lookup_for(&state),
        )
        .await
        {
            Ok(lookup) => lookup,
            Err(_) => {
                tracing::warn!(
                    "PackageKit setup took over {PACKAGE_LOOKUP_SETUP_TIMEOUT:?}; the app list \
                     goes without package ids"
                );
                Arc::new(crate::apps::NoPackageLookup)
            }
        };
        let publisher_host: Arc<dyn crate::app_publisher::AppListHost> = Arc::new(host.clone());
        // Follows the host link: full resend on every host reconnect (our issue's deviation).
        Some(AppPublisher::spawn_linked(
            PublisherConfig::from_env(lookup),
            publisher_host,
            host.link(),
        ))
    } else {
        None
    };
    notify(Step::Publishing);

    // 17. Low disk.
    let low_disk = config.low_disk.clone().map(|low_disk| {
        AbortOnDrop(disk::spawn_monitor(
            low_disk,
            Arc::new(host.clone()),
            disk::free_bytes,
        ))
    });
    notify(Step::LowDiskTimer);

    // Background package updates (§12): no host messages.
    let updates = config.updates.map(|schedule| {
        AbortOnDrop(spawn_background_updates(
            state.clone(),
            &config.paths,
            schedule,
        ))
    });

    // 18. Run until SIGTERM (or until the server dies).
    let mut server_task = server_task;
    tokio::select! {
        _ = stop_rx.wait_for(|stopped| *stopped) => {}
        result = &mut server_task => {
            // The server never ends by itself; if it does, that is an error exit (no shutdown
            // message: only SIGTERM sends ContainerShutdown).
            let detail = match result {
                Ok(Ok(())) => "ended".to_string(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
            return Err(StartupError::Listen(TransportError::Bind {
                address: grpc_address,
                source: std::io::Error::other(format!("gRPC server stopped: {detail}")),
            }));
        }
    }
    tracing::info!("SIGTERM: sending ContainerShutdown");
    let shutdown_sent = match host.container_shutdown().await {
        Ok(()) => true,
        Err(status) => {
            tracing::warn!(
                code = ?status.code(),
                "ContainerShutdown failed: {}",
                status.message()
            );
            false
        }
    };
    notify(Step::ShutdownSent { ok: shutdown_sent });
    drop(publisher);
    drop(low_disk);
    drop(updates);
    drop(session);
    let _ = server_stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(5), server_task)
        .await
        .is_err()
    {
        tracing::warn!("gRPC server did not stop within 5 s");
    }
    notify(Step::Stopped);
    Ok(ServerExit::Stopped { shutdown_sent })
}

/// Starts the background updater once the process's PackageKit client exists (no system bus:
/// logged, no updates).
fn spawn_background_updates(
    state: Arc<GarconState>,
    paths: &Paths,
    schedule: crate::package_updates::UpdateSchedule,
) -> JoinHandle<()> {
    let config = crate::package_updates::config_path(
        std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()),
        paths.home.as_deref(),
    );
    tokio::spawn(async move {
        tokio::time::sleep(schedule.initial_delay).await;
        let packages = match crate::packages::packages_for(&state).await {
            Ok(packages) => packages,
            Err(reason) => {
                tracing::warn!(reason, "no background package updates");
                return;
            }
        };
        let updater = crate::package_updates::BackgroundUpdates::new(
            packages.packagekit().clone(),
            packages.busy().clone(),
            config,
        )
        .with_owner_cache(packages.package_id_cache().clone());
        updater.run_every(schedule.interval).await;
    })
}

/// Aborts a background task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
