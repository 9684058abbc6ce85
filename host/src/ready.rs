//! ContainerReady as cicerone's ContainerStartupCompleted does it (garcon-host §3.5, §16.2;
//! tremplin §7, §13.1): the token must be pending or active in the caller's VM, and tremplin must
//! answer GetContainerInfo with RUNNING and an IPv4 address; then the container's username and
//! home directory are fetched (GetContainerUsername, best effort) and it is registered.
//!
//! Tremplin is asked at the address configured for the VM ([`crate::HostConfig`]'s
//! `tremplin_address`, or the one `crostini-host tremplin start` recorded in the state
//! directory), or at `vsock:<cid>:8890` for a vsock VM, as cicerone dials it. Tokens registered
//! directly by a test harness ([`crate::RunningHost::register_container`]) are taken as running
//! at the address they were registered with, without asking tremplin.
//!
//! Every refusal is FAILED_PRECONDITION "Cannot find VM for ContainerListener" (cicerone's one
//! message for all of them); the reason is logged.

use std::net::Ipv4Addr;
use std::time::Duration;

use crostini_common::{Address, Peer};
use crostini_proto::vm_tools::container as ct;
use crostini_proto::vm_tools::tremplin as tp;
use crostini_proto::vm_tools::EmptyMessage;
use tonic::Status;

use crate::clients::{self, with_deadline, DEFAULT_DEADLINE};
use crate::registry::{ContainerRecord, LOCAL_VM_CID};
use crate::state::HostState;

/// Tremplin's port in the VM, where cicerone dials it.
pub const TREMPLIN_VSOCK_PORT: u32 = 8890;
/// How long a RUNNING container without an address yet (DHCP not done) is asked again.
const ADDRESS_WAIT: Duration = Duration::from_secs(5);
const ADDRESS_POLL: Duration = Duration::from_millis(250);

fn refuse(reason: impl std::fmt::Display) -> Status {
    tracing::warn!("ContainerReady refused: {reason}");
    Status::failed_precondition("Cannot find VM for ContainerListener")
}

/// What GetContainerInfo and GetContainerUsername told about a container.
struct Verified {
    ipv4: Ipv4Addr,
    username: String,
    homedir: String,
}

pub async fn container_ready(
    state: &HostState,
    peer: &Peer,
    info: &ct::ContainerStartupInfo,
) -> Result<EmptyMessage, Status> {
    let cid = state
        .registry
        .vm_cid(peer)
        .ok_or_else(|| refuse(format!("no VM for peer {peer:?}")))?;
    let token = &info.token;
    if state.registry.container_of(cid, token).is_none() {
        if let Some(container) = state.external_token(token) {
            state.registry.add_pending(cid, token, &container);
        }
    }
    let name = state
        .registry
        .container_of(cid, token)
        .ok_or_else(|| refuse("the token is not one this host handed out"))?;
    let verified = match state.registry.trusted_address(cid, token) {
        Some(ipv4) => Verified {
            ipv4,
            username: String::new(),
            homedir: String::new(),
        },
        None => {
            let tremplin = tremplin_address(state, cid).ok_or_else(|| {
                refuse(format!(
                    "no tremplin address known to ask whether {name} runs (serve --tremplin-address)"
                ))
            })?;
            verify(&tremplin, &name).await.map_err(refuse)?
        }
    };
    let garcon_address = match peer {
        Peer::Vsock { cid, .. } => Some(Address::vsock(*cid, info.garcon_port)),
        Peer::Tcp(addr) => u16::try_from(info.garcon_port)
            .ok()
            .filter(|p| *p != 0)
            .map(|p| Address::tcp(addr.ip().to_string(), p)),
        _ => None,
    };
    let record = ContainerRecord {
        name: String::new(),
        token: token.clone(),
        garcon_port: info.garcon_port,
        sftp_port: info.sftp_port,
        garcon_address,
    };
    state
        .registry
        .activate(cid, record)
        .ok_or_else(|| refuse("the token was withdrawn meanwhile"))?;
    state.registry.update_facts(cid, &name, |facts| {
        facts.state = "ready".into();
        facts.ipv4 = Some(verified.ipv4);
        if !verified.username.is_empty() {
            facts.username = verified.username;
            facts.homedir = verified.homedir;
        }
    });
    Ok(EmptyMessage {})
}

fn tremplin_address(state: &HostState, cid: u32) -> Option<Address> {
    state
        .registry
        .tremplin(cid)
        .or_else(|| (cid != LOCAL_VM_CID).then(|| Address::vsock(cid, TREMPLIN_VSOCK_PORT)))
        .or_else(|| state.external_tremplin_address())
}

/// GetContainerInfo must say RUNNING with a non-zero address (asked again for a few seconds
/// while the address is still 0); GetContainerUsername is best effort.
async fn verify(tremplin: &Address, name: &str) -> Result<Verified, String> {
    let mut client =
        clients::tremplin(tremplin).map_err(|e| format!("tremplin at {tremplin}: {e}"))?;
    let deadline = tokio::time::Instant::now() + ADDRESS_WAIT;
    let ipv4 = loop {
        let reply = client
            .get_container_info(with_deadline(
                tp::GetContainerInfoRequest {
                    container_name: name.to_string(),
                },
                DEFAULT_DEADLINE,
            ))
            .await
            .map_err(|e| format!("GetContainerInfo({name}) at {tremplin}: {}", e.message()))?
            .into_inner();
        if reply.status() != tp::get_container_info_response::Status::Running {
            return Err(format!(
                "tremplin says {name} is {:?}: {}",
                reply.status(),
                reply.failure_reason
            ));
        }
        // The network-order address read as a little-endian integer (tremplin §2.5).
        let ipv4 = Ipv4Addr::from(reply.ipv4_address.to_le_bytes());
        if !ipv4.is_unspecified() {
            break ipv4;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{name} runs but has no IPv4 address yet"));
        }
        tokio::time::sleep(ADDRESS_POLL).await;
    };
    let (username, homedir) = match client
        .get_container_username(with_deadline(
            tp::GetContainerUsernameRequest {
                container_name: name.to_string(),
            },
            DEFAULT_DEADLINE,
        ))
        .await
    {
        Ok(reply) => {
            let reply = reply.into_inner();
            (reply.username, reply.homedir)
        }
        Err(e) => {
            tracing::info!(container = name, error = %e.message(), "GetContainerUsername");
            (String::new(), String::new())
        }
    };
    Ok(Verified {
        ipv4,
        username,
        homedir,
    })
}
