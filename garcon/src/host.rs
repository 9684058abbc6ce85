//! Client for the host's `vm_tools.container.ContainerListener` service (cicerone).
//!
//! [`HostClient`] wraps one lazily connecting channel (a down host surfaces as `UNAVAILABLE` on
//! the first call) and the container token, and exposes one method per ContainerListener rpc
//! that garcon sends. Every method fills `token` itself, so callers build the request with
//! `token: String::new()` (or `..Default::default()`).
//!
//! Host link (deviation, our issue: "resend the full list whenever the host reconnects"): the
//! ContainerListener protocol has no ping, so reachability is inferred from what happens anyway.
//! A call failing with `UNAVAILABLE`, or the connection to the host closing, marks the link down;
//! the next call the host answers marks it up again and counts a reconnect. [`HostClient::link`]
//! publishes that [`LinkStatus`]; the app publisher resends its list on every reconnect and, while
//! the link is down, retries the send with backoff so a restarted host gets the list even when
//! nothing changes in the container.
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

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crostini_common::transport::{connect, Stream};
use crostini_common::{Address, TransportError};
use crostini_proto::vm_tools::container::{
    container_listener_client::ContainerListenerClient, ApplyAnsiblePlaybookProgressInfo,
    ContainerShutdownInfo, ContainerStartupInfo, FileWatchTriggeredInfo, InhibitScreensaverInfo,
    InstallLinuxPackageProgressInfo, InstallShaderCacheRequest, LowDiskSpaceTriggeredInfo,
    OpenTerminalRequest, OpenUrlRequest, PendingAppListUpdateCount, ReportMetricsRequest,
    ReportMetricsResponse, SelectFileRequest, SelectFileResponse, UninhibitScreensaverInfo,
    UninstallPackageProgressInfo, UninstallShaderCacheRequest, UnmountShaderCacheRequest,
    UpdateApplicationListRequest, UpdateMimeTypesRequest,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// Time allowed to establish the connection to the host on each (re)connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What garcon currently knows about its link to the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// A call failed with `UNAVAILABLE` or the connection closed, and the host has not answered
    /// any call since.
    pub down: bool,
    /// How many times the host answered again after the link was down.
    pub reconnects: u64,
}

/// Shared link state of all clones of one [`HostClient`] (and of its connections).
#[derive(Debug)]
struct Link {
    status: watch::Sender<LinkStatus>,
    address: Address,
}

impl Link {
    fn new(address: Address) -> Self {
        Self {
            status: watch::Sender::new(LinkStatus::default()),
            address,
        }
    }

    fn mark_down(&self, why: &str) {
        self.status.send_if_modified(|status| {
            if status.down {
                return false;
            }
            status.down = true;
            tracing::info!(host = %self.address, "host link down: {why}");
            true
        });
    }

    fn mark_up(&self) {
        self.status.send_if_modified(|status| {
            if !status.down {
                return false;
            }
            status.down = false;
            status.reconnects += 1;
            tracing::info!(host = %self.address, reconnects = status.reconnects, "host reachable again");
            true
        });
    }

    /// Updates the link from a call's outcome. Only an answer from the host proves it is there;
    /// `UNAVAILABLE` is what a refused or broken connection gives; other failures (deadline,
    /// transport errors mid-call) prove nothing either way.
    fn observe<T>(&self, result: &Result<T, Status>) {
        match result {
            Ok(_) => self.mark_up(),
            Err(status) if status.code() == Code::Unavailable => {
                self.mark_down(&format!("call failed: {}", status.message()))
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Internal
                ) => {}
            Err(_) => self.mark_up(),
        }
    }
}

/// A connection to the host that reports its end (EOF, read error or drop) to the [`Link`].
struct WatchedStream {
    inner: Stream,
    link: Arc<Link>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) if room && buf.filled().len() == before => {
                self.link.mark_down("the host closed the connection")
            }
            Poll::Ready(Err(error)) => self
                .link
                .mark_down(&format!("reading from the host failed: {error}")),
            _ => {}
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for WatchedStream {
    /// The channel drops a connection when the host ends it (GOAWAY on a graceful stop).
    fn drop(&mut self) {
        self.link.mark_down("the connection to the host ended");
    }
}

/// A lazily connecting channel (as [`crostini_common::lazy_channel`]) whose connections report
/// to `link`.
fn watched_channel(address: &Address, link: Arc<Link>) -> Channel {
    // The URI is a placeholder: the connector decides where bytes go.
    let endpoint = Endpoint::from_static("http://crostini.invalid")
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let target = address.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let target = target.clone();
        let link = link.clone();
        async move {
            let inner = connect(&target, CONNECT_TIMEOUT).await?;
            Ok::<_, TransportError>(TokioIo::new(WatchedStream { inner, link }))
        }
    });
    endpoint.connect_with_connector_lazy(connector)
}

/// A cheap-to-clone handle for calling the host's ContainerListener with the container token.
#[derive(Clone, Debug)]
pub struct HostClient {
    client: ContainerListenerClient<Channel>,
    token: String,
    address: Address,
    timeout: Duration,
    /// FIFO (tokio mutexes are fair) serialization of server-originated notifications.
    notify_order: Arc<tokio::sync::Mutex<()>>,
    link: Arc<Link>,
}

impl HostClient {
    /// Deadline of every call except ContainerReady and SelectFile.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Builds the lazy channel; nothing is dialed until the first call.
    pub fn new(address: &Address, token: impl Into<String>) -> Result<Self, TransportError> {
        let link = Arc::new(Link::new(address.clone()));
        let channel = watched_channel(address, link.clone());
        Ok(Self {
            client: ContainerListenerClient::new(channel),
            token: token.into(),
            address: address.clone(),
            timeout: Self::DEFAULT_TIMEOUT,
            notify_order: Arc::new(tokio::sync::Mutex::new(())),
            link,
        })
    }

    /// Follows the link to the host (see the module documentation). The current value counts
    /// as seen.
    pub fn link(&self) -> watch::Receiver<LinkStatus> {
        self.link.status.subscribe()
    }

    /// Records a call's outcome in the link state and passes it on.
    fn observed<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        self.link.observe(&result);
        result
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
        self.observed(self.client.clone().container_ready(message).await)?;
        Ok(())
    }

    pub async fn container_shutdown(&self) -> Result<(), Status> {
        let message = ContainerShutdownInfo {
            token: self.token.clone(),
        };
        self.observed(
            self.client
                .clone()
                .container_shutdown(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn update_application_list(
        &self,
        mut message: UpdateApplicationListRequest,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .update_application_list(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn pending_update_application_list_calls(&self, count: u32) -> Result<(), Status> {
        let message = PendingAppListUpdateCount {
            token: self.token.clone(),
            count,
        };
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .pending_update_application_list_calls(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn open_url(&self, url: impl Into<String>) -> Result<(), Status> {
        let message = OpenUrlRequest {
            url: url.into(),
            token: self.token.clone(),
        };
        self.observed(self.client.clone().open_url(self.bounded(message)).await)?;
        Ok(())
    }

    pub async fn install_linux_package_progress(
        &self,
        mut message: InstallLinuxPackageProgressInfo,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .install_linux_package_progress(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn uninstall_package_progress(
        &self,
        mut message: UninstallPackageProgressInfo,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .uninstall_package_progress(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn apply_ansible_playbook_progress(
        &self,
        mut message: ApplyAnsiblePlaybookProgressInfo,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .apply_ansible_playbook_progress(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn open_terminal(&self, params: Vec<String>) -> Result<(), Status> {
        let message = OpenTerminalRequest {
            token: self.token.clone(),
            params,
        };
        self.observed(
            self.client
                .clone()
                .open_terminal(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn update_mime_types(
        &self,
        mut message: UpdateMimeTypesRequest,
    ) -> Result<(), Status> {
        message.token = self.token.clone();
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .update_mime_types(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn file_watch_triggered(&self, path: impl Into<String>) -> Result<(), Status> {
        let message = FileWatchTriggeredInfo {
            token: self.token.clone(),
            path: path.into(),
        };
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .file_watch_triggered(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    pub async fn low_disk_space_triggered(&self, free_bytes: u64) -> Result<(), Status> {
        let message = LowDiskSpaceTriggeredInfo {
            token: self.token.clone(),
            free_bytes,
        };
        let _order = self.notify_order.lock().await;
        self.observed(
            self.client
                .clone()
                .low_disk_space_triggered(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    /// SelectFile (no deadline: the host blocks until the user picks, possibly forever).
    pub async fn select_file(
        &self,
        mut message: SelectFileRequest,
    ) -> Result<SelectFileResponse, Status> {
        message.token = self.token.clone();
        Ok(self
            .observed(self.client.clone().select_file(message).await)?
            .into_inner())
    }

    pub async fn report_metrics(
        &self,
        mut message: ReportMetricsRequest,
    ) -> Result<ReportMetricsResponse, Status> {
        message.token = self.token.clone();
        Ok(self
            .observed(
                self.client
                    .clone()
                    .report_metrics(self.bounded(message))
                    .await,
            )?
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
        self.observed(
            self.client
                .clone()
                .inhibit_screensaver(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    /// UninhibitScreensaver; `cookie` cast to int32 as upstream does.
    pub async fn uninhibit_screensaver(&self, cookie: u32) -> Result<(), Status> {
        let message = UninhibitScreensaverInfo {
            token: self.token.clone(),
            cookie: cookie as i32,
        };
        self.observed(
            self.client
                .clone()
                .uninhibit_screensaver(self.bounded(message))
                .await,
        )?;
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
        self.observed(
            self.client
                .clone()
                .install_shader_cache(self.maybe_unbounded(message, wait))
                .await,
        )?;
        Ok(())
    }

    /// UninstallShaderCache (Borealis only).
    pub async fn uninstall_shader_cache(&self, steam_app_id: u64) -> Result<(), Status> {
        let message = UninstallShaderCacheRequest {
            token: self.token.clone(),
            steam_app_id,
        };
        self.observed(
            self.client
                .clone()
                .uninstall_shader_cache(self.bounded(message))
                .await,
        )?;
        Ok(())
    }

    /// UnmountShaderCache (Borealis only).
    pub async fn unmount_shader_cache(&self, steam_app_id: u64, wait: bool) -> Result<(), Status> {
        let message = UnmountShaderCacheRequest {
            token: self.token.clone(),
            steam_app_id,
            wait,
        };
        self.observed(
            self.client
                .clone()
                .unmount_shader_cache(self.maybe_unbounded(message, wait))
                .await,
        )?;
        Ok(())
    }
}
