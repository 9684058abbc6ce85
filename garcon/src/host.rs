//! Client for the host's `vm_tools.container.ContainerListener` service (cicerone).
//!
//! [`HostClient`] wraps one lazily connecting channel (a down host surfaces as `UNAVAILABLE` on
//! the first call) and the container token, and exposes one method per ContainerListener rpc
//! that garcon sends. Every method fills `token` itself, so callers build the request with
//! `token: String::new()` (or `..Default::default()`).
//!
//! Deadlines (garcon-host.md §3.9): none for ContainerReady and SelectFile (the host may block for
//! a long time by design); [`HostClient::DEFAULT_TIMEOUT`] (30 s) for everything else.
//!
//! Ordering (§3.9): server-originated notifications (UpdateApplicationList,
//! PendingUpdateApplicationListCalls, UpdateMimeTypes, LowDiskSpaceTriggered, FileWatchTriggered,
//! Install/Uninstall/Ansible progress) are serialized through one FIFO lock shared by all clones,
//! so the host sees them one at a time in the order they were issued (upstream makes them
//! synchronously on one thread). ContainerReady/Shutdown, client-mode calls and the D-Bus
//! originated calls (SelectFile, screensaver) do not take that lock.

use std::sync::Arc;
use std::time::Duration;

use crostini_common::{lazy_channel, Address, TransportError};
use crostini_proto::vm_tools::container::{
    container_listener_client::ContainerListenerClient, ApplyAnsiblePlaybookProgressInfo,
    ContainerShutdownInfo, ContainerStartupInfo, FileWatchTriggeredInfo, InhibitScreensaverInfo,
    InstallLinuxPackageProgressInfo, InstallShaderCacheRequest, LowDiskSpaceTriggeredInfo,
    OpenTerminalRequest, OpenUrlRequest, PendingAppListUpdateCount, ReportMetricsRequest,
    ReportMetricsResponse, SelectFileRequest, SelectFileResponse, UninhibitScreensaverInfo,
    UninstallPackageProgressInfo, UninstallShaderCacheRequest, UnmountShaderCacheRequest,
    UpdateApplicationListRequest, UpdateMimeTypesRequest,
};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Time allowed to establish the connection to the host on each (re)connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle for calling the host's ContainerListener with the container token.
#[derive(Clone, Debug)]
pub struct HostClient {
    client: ContainerListenerClient<Channel>,
    token: String,
    address: Address,
    timeout: Duration,
    /// FIFO (tokio mutexes are fair) serialization of server-originated notifications.
    notify_order: Arc<tokio::sync::Mutex<()>>,
}

impl HostClient {
    /// Deadline of every call except ContainerReady and SelectFile.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Builds the lazy channel; nothing is dialed until the first call.
    pub fn new(address: &Address, token: impl Into<String>) -> Result<Self, TransportError> {
        let channel = lazy_channel(address, CONNECT_TIMEOUT)?;
        Ok(Self {
            client: ContainerListenerClient::new(channel),
            token: token.into(),
            address: address.clone(),
            timeout: Self::DEFAULT_TIMEOUT,
            notify_order: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Overrides the deadline used for the bounded calls (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    fn bounded<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// No deadline when the caller asked the host to wait for a long operation.
    fn maybe_unbounded<T>(&self, message: T, unbounded: bool) -> Request<T> {
        if unbounded {
            Request::new(message)
        } else {
            self.bounded(message)
        }
    }

    /// ContainerReady (no deadline: the host may take seconds before answering).
    pub async fn container_ready(&self, garcon_port: u32, sftp_port: u32) -> Result<(), Status> {
        let message = ContainerStartupInfo {
            token: self.token.clone(),
            garcon_port,
            sftp_port,
        };
        self.client.clone().container_ready(message).await?;
        Ok(())
    }

    pub async fn container_shutdown(&self) -> Result<(), Status> {
        let message = ContainerShutdownInfo {
            token: self.token.clone(),
        };
        self.client
            .clone()
            .container_shutdown(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn update_application_list(
        &self,
        mut message: UpdateApplicationListRequest,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .update_application_list(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn pending_update_application_list_calls(&self, count: u32) -> Result<(), Status> {
        let message = PendingAppListUpdateCount {
            token: self.token.clone(),
            count,
        };
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .pending_update_application_list_calls(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn open_url(&self, url: impl Into<String>) -> Result<(), Status> {
        let message = OpenUrlRequest {
            url: url.into(),
            token: self.token.clone(),
        };
        self.client.clone().open_url(self.bounded(message)).await?;
        Ok(())
    }

    pub async fn install_linux_package_progress(
        &self,
        mut message: InstallLinuxPackageProgressInfo,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .install_linux_package_progress(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn uninstall_package_progress(
        &self,
        mut message: UninstallPackageProgressInfo,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .uninstall_package_progress(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn apply_ansible_playbook_progress(
        &self,
        mut message: ApplyAnsiblePlaybookProgressInfo,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .apply_ansible_playbook_progress(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn open_terminal(&self, params: Vec<String>) -> Result<(), Status> {
        let message = OpenTerminalRequest {
            token: self.token.clone(),
            params,
        };
        self.client
            .clone()
            .open_terminal(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn update_mime_types(
        &self,
        mut message: UpdateMimeTypesRequest,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .update_mime_types(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn file_watch_triggered(&self, path: impl Into<String>) -> Result<(), Status> {
        let message = FileWatchTriggeredInfo {
            token: self.token.clone(),
            path: path.into(),
        };
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .file_watch_triggered(self.bounded(message))
            .await?;
        Ok(())
    }

    pub async fn low_disk_space_triggered(&self, free_bytes: u64) -> Result<(), Status> {
        let message = LowDiskSpaceTriggeredInfo {
            token: self.token.clone(),
            free_bytes,
        };
        let _order = self.notify_order.lock().await;
        self.client
            .clone()
            .low_disk_space_triggered(self.bounded(message))
            .await?;
        Ok(())
    }

    /// SelectFile (no deadline: the host blocks until the user picks, possibly forever).
    pub async fn select_file(
        &self,
        mut message: SelectFileRequest,
    ) -> Result<SelectFileResponse, Status> {
        message.token = self.token.clone();
        Ok(self.client.clone().select_file(message).await?.into_inner())
    }

    pub async fn report_metrics(
        &self,
        mut message: ReportMetricsRequest,
    ) -> Result<ReportMetricsResponse, Status> {
        message.token = self.token.clone();
        Ok(self
            .client
            .clone()
            .report_metrics(self.bounded(message))
            .await?
            .into_inner())
    }

    /// InhibitScreensaver; `cookie` is the D-Bus uint32 cookie, cast (never rejected) to int32.
    pub async fn inhibit_screensaver(
        &self,
        cookie: u32,
        client: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<(), Status> {
        let message = InhibitScreensaverInfo {
            token: self.token.clone(),
            cookie: cookie as i32,
            client: client.into(),
            reason: reason.into(),
        };
        self.client
            .clone()
            .inhibit_screensaver(self.bounded(message))
            .await?;
        Ok(())
    }

    /// UninhibitScreensaver; `cookie` cast to int32 as upstream does.
    pub async fn uninhibit_screensaver(&self, cookie: u32) -> Result<(), Status> {
        let message = UninhibitScreensaverInfo {
            token: self.token.clone(),
            cookie: cookie as i32,
        };
        self.client
            .clone()
            .uninhibit_screensaver(self.bounded(message))
            .await?;
        Ok(())
    }

    /// InstallShaderCache (Borealis only; client `--borealis-shader-cache --install`).
    pub async fn install_shader_cache(
        &self,
        steam_app_id: u64,
        mount: bool,
        wait: bool,
    ) -> Result<(), Status> {
        let message = InstallShaderCacheRequest {
            token: self.token.clone(),
            steam_app_id,
            mount,
            wait,
        };
        self.client
            .clone()
            .install_shader_cache(self.maybe_unbounded(message, wait))
            .await?;
        Ok(())
    }

    /// UninstallShaderCache (Borealis only).
    pub async fn uninstall_shader_cache(&self, steam_app_id: u64) -> Result<(), Status> {
        let message = UninstallShaderCacheRequest {
            token: self.token.clone(),
            steam_app_id,
        };
        self.client
            .clone()
            .uninstall_shader_cache(self.bounded(message))
            .await?;
        Ok(())
    }

    /// UnmountShaderCache (Borealis only).
    pub async fn unmount_shader_cache(&self, steam_app_id: u64, wait: bool) -> Result<(), Status> {
        let message = UnmountShaderCacheRequest {
            token: self.token.clone(),
            steam_app_id,
            wait,
        };
        self.client
            .clone()
            .unmount_shader_cache(self.maybe_unbounded(message, wait))
            .await?;
        Ok(())
    }
}
