//! Services garcon exports on the user's **session** bus (garcon-host.md §8.3, §9), forwarding to
//! the host:
//!
//! * `org.freedesktop.ScreenSaver` at `/org/freedesktop/ScreenSaver`: Inhibit / UnInhibit →
//!   InhibitScreensaver / UninhibitScreensaver.
//! * `org.freedesktop.impl.portal.desktop.cros` at `/org/freedesktop/portal/desktop`, interface
//!   `org.freedesktop.impl.portal.FileChooser`: OpenFile / SaveFile / SaveFiles → SelectFile.
//!
//! The bus or a name being unavailable is logged and ignored (garcon runs on without them). The
//! D-Bus handlers never wait on the host-notification queue (§3.9).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

use crate::host::HostClient;

pub mod file_chooser;
pub mod screensaver;

pub use file_chooser::FileChooser;
pub use screensaver::ScreenSaver;

pub const SCREENSAVER_NAME: &str = "org.freedesktop.ScreenSaver";
pub const SCREENSAVER_PATH: &str = "/org/freedesktop/ScreenSaver";
pub const PORTAL_NAME: &str = "org.freedesktop.impl.portal.desktop.cros";
pub const PORTAL_PATH: &str = "/org/freedesktop/portal/desktop";

/// How long connecting to the session bus and claiming a name may take.
pub const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the session services need from the host (HostClient in production).
pub trait SessionHost: Send + Sync + 'static {
    fn inhibit(
        &self,
        cookie: u32,
        client: String,
        reason: String,
    ) -> BoxFuture<'_, Result<(), Status>>;
    fn uninhibit(&self, cookie: u32) -> BoxFuture<'_, Result<(), Status>>;
    /// SelectFile with `type` and `title` (default path and extensions empty, as upstream).
    fn select_file(
        &self,
        kind: String,
        title: String,
    ) -> BoxFuture<'_, Result<Vec<String>, Status>>;
}

impl SessionHost for HostClient {
    fn inhibit(
        &self,
        cookie: u32,
        client: String,
        reason: String,
    ) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(self.inhibit_screensaver(cookie, client, reason))
    }

    fn uninhibit(&self, cookie: u32) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(self.uninhibit_screensaver(cookie))
    }

    fn select_file(
        &self,
        kind: String,
        title: String,
    ) -> BoxFuture<'_, Result<Vec<String>, Status>> {
        Box::pin(async move {
            let request = crostini_proto::vm_tools::container::SelectFileRequest {
                token: String::new(),
                r#type: kind,
                title,
                default_path: String::new(),
                allowed_extensions: String::new(),
            };
            HostClient::select_file(self, request)
                .await
                .map(|r| r.files)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionBusError {
    #[error("cannot connect to the session D-Bus: {0}")]
    Connect(#[source] zbus::Error),
    #[error("timed out after {0:?} connecting to the session D-Bus")]
    Timeout(Duration),
    #[error("cannot export {path} on the session D-Bus: {source}")]
    Export {
        path: &'static str,
        #[source]
        source: zbus::Error,
    },
}

/// The running session services; dropping it closes the connection.
pub struct SessionServices {
    pub connection: zbus::Connection,
    /// The well-known names actually owned.
    pub owned_names: Vec<&'static str>,
}

/// Connects to the session bus (or to `address`, for tests), exports both objects and claims both
/// names. Failing to claim a name is logged and leaves that service unreachable.
pub async fn start(
    host: Arc<dyn SessionHost>,
    address: Option<&str>,
) -> Result<SessionServices, SessionBusError> {
    let connect = async {
        let builder = match address {
            Some(address) => zbus::connection::Builder::address(address)?,
            None => zbus::connection::Builder::session()?,
        };
        builder.build().await
    };
    let connection = tokio::time::timeout(BUS_TIMEOUT, connect)
        .await
        .map_err(|_| SessionBusError::Timeout(BUS_TIMEOUT))?
        .map_err(SessionBusError::Connect)?;
    let objects = connection.object_server();
    objects
        .at(SCREENSAVER_PATH, ScreenSaver::new(host.clone()))
        .await
        .map_err(|source| SessionBusError::Export {
            path: SCREENSAVER_PATH,
            source,
        })?;
    objects
        .at(PORTAL_PATH, FileChooser::new(host))
        .await
        .map_err(|source| SessionBusError::Export {
            path: PORTAL_PATH,
            source,
        })?;
    let mut owned_names = Vec::new();
    for name in [SCREENSAVER_NAME, PORTAL_NAME] {
        let request = connection.request_name_with_flags(name, RequestNameFlags::DoNotQueue.into());
        match tokio::time::timeout(BUS_TIMEOUT, request).await {
            Ok(Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner)) => {
                owned_names.push(name)
            }
            Ok(Ok(reply)) => {
                tracing::warn!(name, ?reply, "session bus name is owned by someone else")
            }
            Ok(Err(error)) => tracing::warn!(name, "cannot claim session bus name: {error}"),
            Err(_) => tracing::warn!(name, "timed out claiming session bus name"),
        }
    }
    Ok(SessionServices {
        connection,
        owned_names,
    })
}

#[cfg(test)]
mod tests;
