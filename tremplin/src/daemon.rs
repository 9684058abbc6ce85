//! The daemon's shared state: configuration, the host listener, the LXD client (once LXD
//! runs), the export/import transaction map and the creation guard. The RPC behaviour lives
//! in `impl Daemon` blocks of the feature modules (`lxd_setup`, `containers::*`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crostini_lxd::Client;

use crate::config::Config;
use crate::listener::HostListener;
use crate::lxd_setup::LxdState;
use crate::transactions::Transactions;

/// Reason given for every RPC that needs LXD before `StartLxd` succeeded (§14).
pub const LXD_NOT_RUNNING: &str = "LXD is not running";

/// Everything the RPCs share.
pub struct Daemon {
    pub config: Config,
    pub milestone: Option<u32>,
    pub listener: HostListener,
    pub(crate) lxd: Mutex<LxdState>,
    pub(crate) transactions: Transactions,
    creating: AtomicBool,
    pub(crate) background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Serializes listening-port updates (§9.3).
    pub(crate) ports_lock: tokio::sync::Mutex<()>,
    /// Last port list sent, to avoid re-sending identical updates between polls.
    pub(crate) last_ports: Mutex<Option<std::collections::BTreeMap<String, Vec<u32>>>>,
    /// What the listening-port audit trigger changed on the machine; dropped (undone) when
    /// the background loops stop.
    pub(crate) audit_armed: Mutex<Option<crate::ports::audit::Armed>>,
    /// Ids identity-mapped by the profile's raw.idmap (all four of the spec unless the host
    /// cannot delegate them).
    pub(crate) identity_ids: Mutex<Vec<u32>>,
    /// The USB manager (§9.2), created when LXD starts on a machine with an xHCI controller.
    pub(crate) usb: std::sync::OnceLock<Arc<crate::usb::UsbManager>>,
    /// Last lifecycle event seen per container (for GetDebugInfo).
    pub(crate) last_lifecycle: crate::events::LastLifecycle,
}

impl Daemon {
    pub fn new(config: Config, milestone: Option<u32>, listener: HostListener) -> Arc<Self> {
        Arc::new(Daemon {
            config,
            milestone,
            listener,
            lxd: Mutex::new(LxdState::NotStarted),
            transactions: Transactions::default(),
            creating: AtomicBool::new(false),
            background: Mutex::new(Vec::new()),
            ports_lock: tokio::sync::Mutex::new(()),
            last_ports: Mutex::new(None),
            audit_armed: Mutex::new(None),
            identity_ids: Mutex::new(crate::profile::RAW_IDMAP_IDS.to_vec()),
            usb: std::sync::OnceLock::new(),
            last_lifecycle: Default::default(),
        })
    }

    pub(crate) fn lxd_state(&self) -> MutexGuard<'_, LxdState> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // itself (an enum) is always valid.
        self.lxd.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The LXD client once `StartLxd` succeeded; `None` means "LXD is not running".
    pub fn lxd(&self) -> Option<Client> {
        match &*self.lxd_state() {
            LxdState::Running(running) => Some(running.client.clone()),
            _ => None,
        }
    }

    /// The root file system of container `name` with this host's id mapping.
    pub fn container_fs(
        &self,
        name: &str,
    ) -> Result<crate::container_fs::ContainerFs, crate::container_fs::FsError> {
        let identity = self
            .identity_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        crate::container_fs::ContainerFs::open(&self.config.paths.lxd_dir, name, identity)
    }

    /// Marks a creation as in flight; `None` when one already is (§12: serialize creates).
    pub(crate) fn begin_create(self: &Arc<Self>) -> Option<CreateGuard> {
        if self
            .creating
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            Some(CreateGuard(self.clone()))
        } else {
            None
        }
    }

    /// Remembers a background task so shutdown can stop it.
    pub(crate) fn keep_task(&self, handle: tokio::task::JoinHandle<()>) {
        let mut tasks = self.background.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// Stops background loops (events, ports). Running operations finish on their own.
    pub fn stop_background(&self) {
        let tasks = std::mem::take(&mut *self.background.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
        // Audit rules and the enabled flag go back to how tremplin found them.
        drop(
            self.audit_armed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

/// Held while a CreateContainer runs; releases the creation slot when dropped.
pub(crate) struct CreateGuard(Arc<Daemon>);

impl Drop for CreateGuard {
    fn drop(&mut self) {
        self.0.creating.store(false, Ordering::SeqCst);
    }
}
