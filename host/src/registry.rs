//! Which VMs and containers the host knows, keyed the way cicerone keys them: VM by the peer's
//! vsock CID, container by its token (pending until ContainerReady, then active).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crostini_common::{Address, Peer};
use serde::Serialize;

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

/// What the host learned about a container (from tremplin's reports, GetContainerInfo and
/// GetContainerUsername), by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerFacts {
    /// The latest state: `starting`, `started`, `ready` (garcon registered), `stopping`,
    /// `stopped`, `shutdown` (garcon said goodbye), `failed`.
    pub state: String,
    pub ipv4: Option<Ipv4Addr>,
    pub username: String,
    pub homedir: String,
}

/// One container in [`VmStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(flatten)]
    pub facts: ContainerFacts,
    /// Where the host reaches garcon, when registered and known.
    pub garcon_endpoint: Option<String>,
}

/// One VM and its containers, for `crostini-host status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmStatus {
    pub vm: String,
    /// The vsock CID, or none for the local VM (unix and tcp peers).
    pub cid: Option<u32>,
    pub containers: Vec<ContainerStatus>,
}

#[derive(Debug, Default)]
struct Vm {
    name: String,
    /// Where this VM's tremplin serves, when known.
    tremplin: Option<Address>,
    facts: HashMap<String, ContainerFacts>,
    /// Tokens registered directly by a test harness, taken as running at this address without
    /// asking tremplin.
    trusted: HashMap<String, Ipv4Addr>,
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

    /// Records a token for a container taken as running at `ipv4` without asking tremplin (test
    /// harnesses, which register containers directly).
    pub fn add_trusted(&self, cid: u32, token: &str, container: &str, ipv4: Ipv4Addr) {
        self.add_pending(cid, token, container);
        if let Some(vm) = self.lock().get_mut(&cid) {
            vm.trusted.insert(token.to_string(), ipv4);
        }
    }

    /// The address a trusted token's container was registered with.
    pub fn trusted_address(&self, cid: u32, token: &str) -> Option<Ipv4Addr> {
        self.lock().get(&cid)?.trusted.get(token).copied()
    }

    /// The container a pending or active token of this VM belongs to.
    pub fn container_of(&self, cid: u32, token: &str) -> Option<String> {
        let vms = self.lock();
        let vm = vms.get(&cid)?;
        vm.pending
            .get(token)
            .cloned()
            .or_else(|| vm.active.get(token).map(|c| c.name.clone()))
    }

    pub fn set_tremplin(&self, cid: u32, address: Address) {
        if let Some(vm) = self.lock().get_mut(&cid) {
            vm.tremplin = Some(address);
        }
    }

    /// Where this VM's tremplin serves, when known.
    pub fn tremplin(&self, cid: u32) -> Option<Address> {
        self.lock().get(&cid)?.tremplin.clone()
    }

    /// Updates what is known about container `name` of the VM.
    pub fn update_facts(&self, cid: u32, name: &str, update: impl FnOnce(&mut ContainerFacts)) {
        if let Some(vm) = self.lock().get_mut(&cid) {
            update(vm.facts.entry(name.to_string()).or_default());
        }
    }

    pub fn facts(&self, cid: u32, name: &str) -> Option<ContainerFacts> {
        self.lock().get(&cid)?.facts.get(name).cloned()
    }

    /// Every VM and the containers the host heard of, sorted by name.
    pub fn snapshot(&self) -> Vec<VmStatus> {
        let vms = self.lock();
        let mut out: Vec<VmStatus> = vms
            .iter()
            .map(|(cid, vm)| {
                let mut containers: Vec<ContainerStatus> = vm
                    .facts
                    .iter()
                    .map(|(name, facts)| ContainerStatus {
                        name: name.clone(),
                        facts: facts.clone(),
                        garcon_endpoint: vm
                            .active
                            .values()
                            .find(|c| &c.name == name)
                            .and_then(|c| c.garcon_address.as_ref())
                            .map(ToString::to_string),
                    })
                    .collect();
                containers.sort_by(|a, b| a.name.cmp(&b.name));
                VmStatus {
                    vm: vm.name.clone(),
                    cid: (*cid != LOCAL_VM_CID).then_some(*cid),
                    containers,
                }
            })
            .collect();
        out.sort_by(|a, b| a.vm.cmp(&b.vm));
        out
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
