//! Every call the host receives, recorded in order, printable as one JSON line, and awaitable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crostini_proto::vm_tools::{container as ct, tremplin as tp};
use serde::Serialize;
use tokio::sync::broadcast;

/// The message a listener rpc carried, tagged with the rpc's name.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "rpc", content = "message")]
pub enum Payload {
    // ContainerListener (garcon → host).
    ContainerReady(ct::ContainerStartupInfo),
    ContainerShutdown(ct::ContainerShutdownInfo),
    UpdateApplicationList(ct::UpdateApplicationListRequest),
    PendingUpdateApplicationListCalls(ct::PendingAppListUpdateCount),
    OpenUrl(ct::OpenUrlRequest),
    InstallLinuxPackageProgress(ct::InstallLinuxPackageProgressInfo),
    UninstallPackageProgress(ct::UninstallPackageProgressInfo),
    ApplyAnsiblePlaybookProgress(ct::ApplyAnsiblePlaybookProgressInfo),
    OpenTerminal(ct::OpenTerminalRequest),
    UpdateMimeTypes(ct::UpdateMimeTypesRequest),
    FileWatchTriggered(ct::FileWatchTriggeredInfo),
    LowDiskSpaceTriggered(ct::LowDiskSpaceTriggeredInfo),
    ForwardSecurityKeyMessage(ct::ForwardSecurityKeyMessageRequest),
    SelectFile(ct::SelectFileRequest),
    ReportMetrics(ct::ReportMetricsRequest),
    InstallShaderCache(ct::InstallShaderCacheRequest),
    UninstallShaderCache(ct::UninstallShaderCacheRequest),
    UnmountShaderCache(ct::UnmountShaderCacheRequest),
    InhibitScreensaver(ct::InhibitScreensaverInfo),
    UninhibitScreensaver(ct::UninhibitScreensaverInfo),
    // TremplinListener (tremplin → host).
    TremplinReady(tp::TremplinStartupInfo),
    UpdateStartLxdStatus(tp::StartLxdProgress),
    UpdateCreateStatus(tp::ContainerCreationProgress),
    UpdateDeletionStatus(tp::ContainerDeletionProgress),
    UpdateStartStatus(tp::ContainerStartProgress),
    UpdateStopStatus(tp::ContainerStopProgress),
    UpdateExportStatus(tp::ContainerExportProgress),
    UpdateImportStatus(tp::ContainerImportProgress),
    TremplinContainerShutdown(tp::ContainerShutdownInfo),
    UpdateListeningPorts(tp::ListeningPortInfo),
}

impl Payload {
    /// The rpc name as on the wire (`ContainerShutdown` for both listeners).
    pub fn rpc(&self) -> &'static str {
        use Payload::*;
        match self {
            ContainerReady(_) => "ContainerReady",
            ContainerShutdown(_) | TremplinContainerShutdown(_) => "ContainerShutdown",
            UpdateApplicationList(_) => "UpdateApplicationList",
            PendingUpdateApplicationListCalls(_) => "PendingUpdateApplicationListCalls",
            OpenUrl(_) => "OpenUrl",
            InstallLinuxPackageProgress(_) => "InstallLinuxPackageProgress",
            UninstallPackageProgress(_) => "UninstallPackageProgress",
            ApplyAnsiblePlaybookProgress(_) => "ApplyAnsiblePlaybookProgress",
            OpenTerminal(_) => "OpenTerminal",
            UpdateMimeTypes(_) => "UpdateMimeTypes",
            FileWatchTriggered(_) => "FileWatchTriggered",
            LowDiskSpaceTriggered(_) => "LowDiskSpaceTriggered",
            ForwardSecurityKeyMessage(_) => "ForwardSecurityKeyMessage",
            SelectFile(_) => "SelectFile",
            ReportMetrics(_) => "ReportMetrics",
            InstallShaderCache(_) => "InstallShaderCache",
            UninstallShaderCache(_) => "UninstallShaderCache",
            UnmountShaderCache(_) => "UnmountShaderCache",
            InhibitScreensaver(_) => "InhibitScreensaver",
            UninhibitScreensaver(_) => "UninhibitScreensaver",
            TremplinReady(_) => "TremplinReady",
            UpdateStartLxdStatus(_) => "UpdateStartLxdStatus",
            UpdateCreateStatus(_) => "UpdateCreateStatus",
            UpdateDeletionStatus(_) => "UpdateDeletionStatus",
            UpdateStartStatus(_) => "UpdateStartStatus",
            UpdateStopStatus(_) => "UpdateStopStatus",
            UpdateExportStatus(_) => "UpdateExportStatus",
            UpdateImportStatus(_) => "UpdateImportStatus",
            UpdateListeningPorts(_) => "UpdateListeningPorts",
        }
    }

    /// The container token the message carries (ContainerListener messages).
    pub fn token(&self) -> Option<&str> {
        use Payload::*;
        Some(match self {
            ContainerReady(m) => &m.token,
            ContainerShutdown(m) => &m.token,
            UpdateApplicationList(m) => &m.token,
            PendingUpdateApplicationListCalls(m) => &m.token,
            OpenUrl(m) => &m.token,
            InstallLinuxPackageProgress(m) => &m.token,
            UninstallPackageProgress(m) => &m.token,
            ApplyAnsiblePlaybookProgress(m) => &m.token,
            OpenTerminal(m) => &m.token,
            UpdateMimeTypes(m) => &m.token,
            FileWatchTriggered(m) => &m.token,
            LowDiskSpaceTriggered(m) => &m.token,
            SelectFile(m) => &m.token,
            ReportMetrics(m) => &m.token,
            InstallShaderCache(m) => &m.token,
            UninstallShaderCache(m) => &m.token,
            UnmountShaderCache(m) => &m.token,
            InhibitScreensaver(m) => &m.token,
            UninhibitScreensaver(m) => &m.token,
            _ => return None,
        })
    }

    /// The container name a tremplin report carries.
    pub fn container_name(&self) -> Option<&str> {
        use Payload::*;
        Some(match self {
            UpdateCreateStatus(m) => &m.container_name,
            UpdateDeletionStatus(m) => &m.container_name,
            UpdateStartStatus(m) => &m.container_name,
            UpdateStopStatus(m) => &m.container_name,
            UpdateExportStatus(m) => &m.container_name,
            UpdateImportStatus(m) => &m.container_name,
            TremplinContainerShutdown(m) => &m.container_name,
            _ => return None,
        })
    }

    /// Which listener service received it.
    pub fn service(&self) -> &'static str {
        use Payload::*;
        match self {
            TremplinReady(_)
            | UpdateStartLxdStatus(_)
            | UpdateCreateStatus(_)
            | UpdateDeletionStatus(_)
            | UpdateStartStatus(_)
            | UpdateStopStatus(_)
            | UpdateExportStatus(_)
            | UpdateImportStatus(_)
            | TremplinContainerShutdown(_)
            | UpdateListeningPorts(_) => "vm_tools.tremplin.TremplinListener",
            _ => "vm_tools.container.ContainerListener",
        }
    }
}

/// One received call and what the host answered.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    pub unix_ms: u128,
    pub service: &'static str,
    pub peer: String,
    /// The container the call concerns, when the host can tell (by token or by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `OK` or the gRPC code the host answered with.
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    #[serde(flatten)]
    pub payload: Payload,
    #[serde(skip)]
    pub at: Instant,
}

impl Event {
    pub fn to_json_line(&self) -> String {
        // Serializing these plain data types cannot fail; fall back to Debug just in case.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no matching host event within {0:?}")]
pub struct WaitTimeout(pub Duration);

/// The ordered record of received calls.
pub struct EventLog {
    history: Mutex<Vec<Event>>,
    tx: broadcast::Sender<Event>,
    seq: AtomicU64,
}

impl Default for EventLog {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventLog {
            history: Mutex::new(Vec::new()),
            tx,
            seq: AtomicU64::new(0),
        }
    }
}

impl EventLog {
    pub fn record(
        &self,
        peer: String,
        container: Option<String>,
        payload: Payload,
        answer: &Result<(), tonic::Status>,
    ) -> Event {
        let (status, status_message) = match answer {
            Ok(()) => ("OK".to_string(), String::new()),
            Err(s) => (format!("{:?}", s.code()), s.message().to_string()),
        };
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            service: payload.service(),
            peer,
            container,
            status,
            status_message,
            payload,
            at: Instant::now(),
        };
        history.push(event.clone());
        // Sent under the lock so that subscribers see events in `seq` order.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Everything received so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A live feed of events recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The first event with `seq >= from_seq` that matches, waiting up to `timeout` for it.
    pub async fn wait_for_from<F>(
        &self,
        from_seq: u64,
        matches: F,
        timeout: Duration,
    ) -> Result<Event, WaitTimeout>
    where
        F: Fn(&Event) -> bool,
    {
        let mut rx = self.subscribe();
        if let Some(found) = self
            .snapshot()
            .into_iter()
            .find(|e| e.seq >= from_seq && matches(e))
        {
            return Ok(found);
        }
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(e) if e.seq >= from_seq && matches(&e) => return Some(e),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(found) = self
                            .snapshot()
                            .into_iter()
                            .find(|e| e.seq >= from_seq && matches(e))
                        {
                            return Some(found);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(e)) => Ok(e),
            _ => Err(WaitTimeout(timeout)),
        }
    }

    /// The first event (from the beginning) that matches, waiting up to `timeout`.
    pub async fn wait_for<F>(&self, matches: F, timeout: Duration) -> Result<Event, WaitTimeout>
    where
        F: Fn(&Event) -> bool,
    {
        self.wait_for_from(0, matches, timeout).await
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }
}
