//! Shared state of a running garcon server, handed to every gRPC handler as `Arc<GarconState>`.
//!
//! Area modules that need their own long-lived state (a PackageKit proxy, a busy flag, caches)
//! keep it in their own type and fetch it with [`GarconState::extension`], so they never have to
//! edit this file:
//!
//! ```ignore
//! #[derive(Default)]
//! struct PackagesState { busy: std::sync::atomic::AtomicBool }
//! let packages = state.extension::<PackagesState>();
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Paths;
use crate::file_watch::FileWatches;
use crate::host::HostClient;

pub struct GarconState {
    /// Client for the host's ContainerListener (token included).
    pub host: HostClient,
    /// External programs and directories used by the handlers (injectable for tests).
    pub paths: Paths,
    /// `--no_startup_notify`: apps launched by the host get no `DESKTOP_STARTUP_ID`.
    pub no_startup_notify: bool,
    /// AddFileWatch / RemoveFileWatch.
    pub file_watches: FileWatches,
    /// The system D-Bus connection made at startup (None when unavailable or not yet made).
    system_bus: std::sync::OnceLock<zbus::Connection>,
    /// 0 until the sftp listener is bound (GetGarconSessionInfo reports FAILED until then).
    sftp_vsock_port: AtomicU32,
    /// Set once startup has published the sftp port (even when it is 0 on a unix listener).
    session_ready: AtomicBool,
    extensions: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl GarconState {
    pub fn new(host: HostClient, paths: Paths, no_startup_notify: bool) -> Self {
        let file_watches = FileWatches::new(paths.home.clone(), Arc::new(host.clone()));
        Self {
            host,
            paths,
            no_startup_notify,
            file_watches,
            system_bus: std::sync::OnceLock::new(),
            sftp_vsock_port: AtomicU32::new(0),
            session_ready: AtomicBool::new(false),
            extensions: Mutex::new(HashMap::new()),
        }
    }

    /// The sftp port once startup published it (`None` before: "container still booting").
    pub fn sftp_vsock_port(&self) -> Option<u32> {
        self.session_ready
            .load(Ordering::SeqCst)
            .then(|| self.sftp_vsock_port.load(Ordering::SeqCst))
    }

    /// Publishes the sftp port (startup, before ContainerReady).
    pub fn set_sftp_vsock_port(&self, port: u32) {
        self.sftp_vsock_port.store(port, Ordering::SeqCst);
        self.session_ready.store(true, Ordering::SeqCst);
    }

    /// The system bus connection, when startup could make one.
    pub fn system_bus(&self) -> Option<&zbus::Connection> {
        self.system_bus.get()
    }

    /// Records the system bus connection (startup; later calls are ignored).
    pub fn set_system_bus(&self, connection: zbus::Connection) {
        let _ = self.system_bus.set(connection);
    }

    /// `$HOME` of the garcon process (from [`Paths::home`]).
    pub fn home(&self) -> Option<&PathBuf> {
        self.paths.home.as_ref()
    }

    /// The per-process instance of `T`, created with `T::default()` on first use.
    pub fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = match self.extensions.lock() {
            Ok(map) => map,
            // A panic while holding this lock cannot leave the map inconsistent (single insert).
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()) as Arc<dyn Any + Send + Sync>)
            .clone();
        match entry.downcast::<T>() {
            Ok(value) => value,
            // The map is keyed by TypeId::of::<T>(), so the stored value is always a T.
            Err(_) => unreachable!("extension map entry has the wrong type"),
        }
    }
}
