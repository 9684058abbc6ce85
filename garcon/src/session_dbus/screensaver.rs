//! `org.freedesktop.ScreenSaver` (garcon-host.md §9): only Inhibit and UnInhibit.
//!
//! The cookie counter starts at 1 and increments on every Inhibit, whether or not the host call
//! succeeds; Inhibit always returns the cookie, and host failures are only logged. Cookies are
//! cast to the proto's int32, never rejected.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::SessionHost;

pub struct ScreenSaver {
    host: Arc<dyn SessionHost>,
    next_cookie: AtomicU32,
}

impl ScreenSaver {
    pub fn new(host: Arc<dyn SessionHost>) -> Self {
        Self {
            host,
            next_cookie: AtomicU32::new(1),
        }
    }
}

#[zbus::interface(name = "org.freedesktop.ScreenSaver")]
impl ScreenSaver {
    #[zbus(name = "Inhibit")]
    async fn inhibit(&self, application_name: String, reason: String) -> u32 {
        let cookie = self.next_cookie.fetch_add(1, Ordering::SeqCst);
        if let Err(status) = self
            .host
            .inhibit(cookie, application_name.clone(), reason)
            .await
        {
            tracing::warn!(
                cookie,
                application_name,
                code = ?status.code(),
                "InhibitScreensaver failed: {}",
                status.message()
            );
        }
        cookie
    }

    #[zbus(name = "UnInhibit")]
    async fn un_inhibit(&self, cookie: u32) {
        if let Err(status) = self.host.uninhibit(cookie).await {
            tracing::warn!(
                cookie,
                code = ?status.code(),
                "UninhibitScreensaver failed: {}",
                status.message()
            );
        }
    }
}
