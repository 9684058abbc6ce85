//! Startup and shutdown (§3.3, §3.4): milestone, listener bound before `TremplinReady`,
//! serving, stop on SIGPWR/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use crostini_common::signals::{StopSignal, StopSignals};
use crostini_common::{Address, Listener, TransportError};
use crostini_proto::vm_tools::tremplin::TremplinStartupInfo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::daemon::Daemon;
use crate::listener::{HostListener, ReportError};
use crate::milestone::{load_milestone, MilestoneError, MilestoneSource};
use crate::service::TremplinService;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read the Chrome OS milestone: {0}")]
    Milestone(#[from] MilestoneError),
    #[error("cannot set up the host listener client: {0}")]
    ListenerClient(#[source] TransportError),
    #[error("cannot bind the Tremplin service: {0}")]
    Bind(#[source] TransportError),
    #[error("TremplinReady failed, exiting: {0}")]
    Ready(#[source] ReportError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// SIGPWR: VM shutdown. A supervised LXD gets SIGPWR (it stops its containers cleanly);
    /// an adopted LXD is left alone.
    PowerOff,
    /// SIGTERM/SIGINT or a test: stop serving; LXD is left running.
    Terminate,
}

/// A started daemon: serving, `TremplinReady` sent.
pub struct RunningTremplin {
    daemon: Arc<Daemon>,
    local: Address,
    shutdown: Option<oneshot::Sender<()>>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningTremplin {
    /// Reads the milestone, binds `config.listen`, serves, then calls `TremplinReady`.
    pub async fn start(config: Config) -> Result<RunningTremplin, StartupError> {
        let milestone = match load_milestone(config.milestone_override, &config.paths.lsb_release)?
        {
            MilestoneSource::Absent => {
                tracing::warn!(
                    "{} does not exist: Chrome OS milestone unknown (not a Termina VM?); \
                     {} will not be written and image server URLs must not contain %d \
                     (use --milestone to set one)",
                    config.paths.lsb_release.display(),
                    config.paths.milestone_file.display()
                );
                None
            }
            found => {
                tracing::info!("Chrome OS milestone: {found:?}");
                found.value()
            }
        };
        let listener = HostListener::new(&config.host_address, config.crash_address.as_ref())
            .map_err(StartupError::ListenerClient)?;
        let bound = Listener::bind_with(&config.listen, config.listen_options.clone())
            .await
            .map_err(StartupError::Bind)?;
        let local = bound.local_address().clone();
        let daemon = Daemon::new(config, milestone, listener.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let service = TremplinService::new(daemon.clone()).into_server();
        let serve = tokio::spawn(async move {
            crostini_common::transport::server_builder()
                .add_service(service)
                .serve_with_incoming_shutdown(bound.into_incoming(), async {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!("Tremplin service listening on {local}");
        if let Err(e) = listener.tremplin_ready(TremplinStartupInfo {}).await {
            let _ = tx.send(());
            serve.abort();
            return Err(StartupError::Ready(e));
        }
        tracing::info!("TremplinReady sent to {}", listener.address());
        Ok(RunningTremplin {
            daemon,
            local,
            shutdown: Some(tx),
            serve,
        })
    }

    /// The address actually bound (real port when 0 was asked for).
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }

    /// Stops serving (gracefully, at most 5 s) and the background loops.
    pub async fn stop(mut self, how: StopKind) {
        if how == StopKind::PowerOff {
            self.daemon.power_off_lxd();
        }
        self.daemon.stop_background();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(5), &mut self.serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("gRPC server ended with error: {e}"),
            Ok(Err(e)) => tracing::warn!("gRPC server task failed: {e}"),
            Err(_) => {
                tracing::warn!("gRPC server did not stop within 5 s; aborting it");
                self.serve.abort();
            }
        }
    }
}

/// The whole daemon: start, then wait for SIGPWR / SIGTERM / SIGINT and stop.
pub async fn run(config: Config) -> Result<(), StartupError> {
    // Installed before anything else so an early signal is not lost to the default action.
    let mut signals = StopSignals::install(&[StopSignal::Pwr, StopSignal::Term, StopSignal::Int])
        .map_err(StartupError::Signals)?;
    let running = RunningTremplin::start(config).await?;
    let signal = signals.recv().await;
    tracing::info!("received {signal}; shutting down");
    let how = match signal {
        StopSignal::Pwr => StopKind::PowerOff,
        StopSignal::Term | StopSignal::Int => StopKind::Terminate,
    };
    running.stop(how).await;
    Ok(())
}
