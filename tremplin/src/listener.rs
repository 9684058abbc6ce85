//! Client of the host's `TremplinListener` (and `CrashListener`) with deadlines.
//!
//! Reports are best effort (§8 conventions, §14 "Listener unreachable"): a failed report is
//! logged and the caller continues, except `TremplinReady` (startup fails) and export progress
//! (the export fails), which get the error back.

use std::time::Duration;

use crostini_common::{lazy_channel, Address, TransportError};
use crostini_proto::vm_tools::cicerone::crash_listener_client::CrashListenerClient;
use crostini_proto::vm_tools::cicerone::FailureReport;
use crostini_proto::vm_tools::tremplin::tremplin_listener_client::TremplinListenerClient;
use crostini_proto::vm_tools::tremplin::{
    ContainerCreationProgress, ContainerDeletionProgress, ContainerExportProgress,
    ContainerImportProgress, ContainerShutdownInfo, ContainerStartProgress, ContainerStopProgress,
    ListeningPortInfo, StartLxdProgress, TremplinStartupInfo,
};
use tonic::transport::Channel;

/// Deadline of every listener call (upstream uses none; the spec recommends a generous one).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connection timeout of the lazy channel.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A listener call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{call} to the host listener at {address} failed: {code:?}: {message}", code = status.code(), message = status.message())]
pub struct ReportError {
    pub call: &'static str,
    pub address: Address,
    pub status: tonic::Status,
}

/// Handle on the host listener; cheap to clone.
#[derive(Clone, Debug)]
pub struct HostListener {
    address: Address,
    client: TremplinListenerClient<Channel>,
    crash: Option<(Address, CrashListenerClient<Channel>)>,
}

macro_rules! report_fn {
    ($(#[$doc:meta])* $name:ident, $rpc:ident, $msg:ty) => {
        $(#[$doc])*
        pub async fn $name(&self, message: $msg) -> Result<(), ReportError> {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(message);
            request.set_timeout(REPORT_TIMEOUT);
            let result = tokio::time::timeout(REPORT_TIMEOUT, client.$rpc(request)).await;
            let status = match result {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(status)) => status,
                Err(_) => tonic::Status::deadline_exceeded(format!(
                    "no answer within {REPORT_TIMEOUT:?}"
                )),
            };
            let err = ReportError {
                call: stringify!($rpc),
                address: self.address.clone(),
                status,
            };
            tracing::warn!("{err}");
            Err(err)
        }
    };
}

impl HostListener {
    /// Lazily connecting client of `address` (no I/O here).
    pub fn new(address: &Address, crash: Option<&Address>) -> Result<Self, TransportError> {
        let channel = lazy_channel(address, CONNECT_TIMEOUT)?;
        let crash = match crash {
            Some(a) => Some((
                a.clone(),
                CrashListenerClient::new(lazy_channel(a, CONNECT_TIMEOUT)?),
            )),
            None => None,
        };
        Ok(HostListener {
            address: address.clone(),
            client: TremplinListenerClient::new(channel),
            crash,
        })
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    report_fn!(
        /// `TremplinReady`.
        tremplin_ready, tremplin_ready, TremplinStartupInfo
    );
    report_fn!(
        update_start_lxd_status,
        update_start_lxd_status,
        StartLxdProgress
    );
    report_fn!(
        update_create_status,
        update_create_status,
        ContainerCreationProgress
    );
    report_fn!(
        update_deletion_status,
        update_deletion_status,
        ContainerDeletionProgress
    );
    report_fn!(
        update_start_status,
        update_start_status,
        ContainerStartProgress
    );
    report_fn!(
        update_stop_status,
        update_stop_status,
        ContainerStopProgress
    );
    report_fn!(
        update_export_status,
        update_export_status,
        ContainerExportProgress
    );
    report_fn!(
        update_import_status,
        update_import_status,
        ContainerImportProgress
    );
    report_fn!(
        container_shutdown,
        container_shutdown,
        ContainerShutdownInfo
    );
    report_fn!(
        update_listening_ports,
        update_listening_ports,
        ListeningPortInfo
    );

    /// `CrashListener.SendFailureReport{failed_process}`; errors are logged only.
    pub async fn send_failure_report(&self, failed_process: &str) {
        let Some((address, client)) = &self.crash else {
            tracing::info!(
                "no crash listener configured; not reporting failure of {failed_process}"
            );
            return;
        };
        let mut client = client.clone();
        let mut request = tonic::Request::new(FailureReport {
            failed_process: failed_process.to_string(),
        });
        request.set_timeout(REPORT_TIMEOUT);
        match tokio::time::timeout(REPORT_TIMEOUT, client.send_failure_report(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(status)) => {
                tracing::warn!("SendFailureReport({failed_process}) to {address} failed: {status}")
            }
            Err(_) => tracing::warn!("SendFailureReport({failed_process}) to {address} timed out"),
        }
    }
}
