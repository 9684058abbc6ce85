//! Which VMs and containers the host knows, keyed the way cicerone keys them: VM by the peer's
//! vsock CID, container by its token (pending until ContainerReady, then active).

use std::collections::HashMap;
use std::sync::Mutex;

use crostini_common::{Address, Peer};

/// Non-vsock peers (unix and tcp transports, used on machines without vsock) are attributed to the
/// configured local VM. Cicerone would give them CID 0 (Plugin VM); the stand-in serves Termina-style
/// guests over these transports, so it maps them to one VM instead.
pub const LOCAL_VM_CID: u32 = u32::MAX - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    pub name: String,
    pub token: String,
    pub garcon_port: u32,
    pub sftp_port: u32,
    /// Where the host can reach this container's garcon, when it can tell.
    pub garcon_address: Option<Address>,
}

#[derive(Debug, Default)]
struct Vm {
    name: String,
    pending: HashMap<String, String>,
    active: HashMap<String, ContainerRecord>,
    /// Every token ever handed out and its container, so that records of calls made with a
    /// token that is no longer valid still name the container.
    seen: HashMap<String, String>,
}

#[derive(Debug)]
pub struct Registry {
    vms: Mutex<HashMap<u32, Vm>>,
}

impl Registry {
    /// A registry with one VM named `vm_name` that local (non-vsock) peers belong to.
    pub fn new(vm_name: &str) -> Self {
        let mut vms = HashMap::new();
        vms.insert(
            LOCAL_VM_CID,
            Vm {
                name: vm_name.to_string(),
                ..Vm::default()
            },
        );
        Registry {
            vms: Mutex::new(vms),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Vm>> {
        self.vms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CID a peer is identified by, if it maps to a known VM.
    pub fn vm_cid(&self, peer: &Peer) -> Option<u32> {
        let cid = peer.vsock_cid().unwrap_or(LOCAL_VM_CID);
        self.lock().contains_key(&cid).then_some(cid)
    }

    pub fn vm_name(&self, cid: u32) -> Option<String> {
        self.lock().get(&cid).map(|vm| vm.name.clone())
    }

    /// Adds a VM reached over vsock at `cid`.
    pub fn add_vm(&self, cid: u32, name: &str) {
        self.lock().entry(cid).or_default().name = name.to_string();
    }

    /// Records a token the host handed out when starting `container` (as StartContainer does).
    pub fn add_pending(&self, cid: u32, token: &str, container: &str) {
        if let Some(vm) = self.lock().get_mut(&cid) {
            vm.pending.insert(token.to_string(), container.to_string());
            vm.seen.insert(token.to_string(), container.to_string());
        }
    }

    /// ContainerReady: moves a pending token to active (or refreshes an active one).
    pub fn activate(&self, cid: u32, mut record: ContainerRecord) -> Option<ContainerRecord> {
        let mut vms = self.lock();
        let vm = vms.get_mut(&cid)?;
        let name = match vm.pending.remove(&record.token) {
            Some(name) => name,
            None => vm.active.get(&record.token)?.name.clone(),
        };
        record.name = name;
        vm.active.insert(record.token.clone(), record.clone());
        Some(record)
    }

    /// The active container holding `token`.
    pub fn active(&self, cid: u32, token: &str) -> Option<ContainerRecord> {
        self.lock().get(&cid)?.active.get(token).cloned()
    }

    /// The active container named `name`.
    pub fn active_by_name(&self, cid: u32, name: &str) -> Option<ContainerRecord> {
        self.lock()
            .get(&cid)?
            .active
            .values()
            .find(|c| c.name == name)
            .cloned()
    }

    /// The container a token was handed out for, in any VM, whether or not it is still valid.
    pub fn container_for_token(&self, token: &str) -> Option<String> {
        self.lock()
            .values()
            .find_map(|vm| vm.seen.get(token).cloned())
    }

    /// Forgets an active container (ContainerShutdown); returns it.
    pub fn deactivate(&self, cid: u32, token: &str) -> Option<ContainerRecord> {
        self.lock().get_mut(&cid)?.active.remove(token)
    }

    /// Forgets an active container by name (tremplin's ContainerShutdown carries names).
    pub fn deactivate_by_name(&self, cid: u32, name: &str) -> Option<ContainerRecord> {
        let mut vms = self.lock();
        let vm = vms.get_mut(&cid)?;
        let token = vm.active.values().find(|c| c.name == name)?.token.clone();
        vm.active.remove(&token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: &str) -> ContainerRecord {
        ContainerRecord {
            name: String::new(),
            token: token.to_string(),
            garcon_port: 10000,
            sftp_port: 0,
            garcon_address: None,
        }
    }

    #[test]
    fn pending_token_becomes_active_on_ready_and_unknown_token_is_refused() {
        let reg = Registry::new("termina");
        reg.add_pending(LOCAL_VM_CID, "t1", "penguin");
        assert!(reg.activate(LOCAL_VM_CID, record("nope")).is_none());
        let active = reg.activate(LOCAL_VM_CID, record("t1")).expect("activates");
        assert_eq!(active.name, "penguin");
        assert_eq!(
            reg.active(LOCAL_VM_CID, "t1").map(|c| c.name),
            Some("penguin".into())
        );
        // A repeated ContainerReady for an active token is accepted.
        assert!(reg.activate(LOCAL_VM_CID, record("t1")).is_some());
        assert!(reg.deactivate(LOCAL_VM_CID, "t1").is_some());
        assert!(reg.active(LOCAL_VM_CID, "t1").is_none());
    }

    #[test]
    fn unix_peers_map_to_local_vm_and_unknown_vsock_cid_does_not() {
        let reg = Registry::new("termina");
        let unix = Peer::Unix {
            uid: Some(0),
            pid: None,
        };
        assert_eq!(reg.vm_cid(&unix), Some(LOCAL_VM_CID));
        assert_eq!(reg.vm_cid(&Peer::Vsock { cid: 33, port: 1 }), None);
        reg.add_vm(33, "other");
        assert_eq!(reg.vm_cid(&Peer::Vsock { cid: 33, port: 1 }), Some(33));
    }
}
