//! GetContainerInfo (§8.7): running state and eth0's IPv4 address (§2.5 encoding).

use crostini_lxd::types::InstanceState;
use crostini_proto::vm_tools::tremplin as pb;
use pb::get_container_info_response::Status;

use super::check_container_name;
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::ipv4;

fn reply(
    status: Status,
    reason: impl Into<String>,
    ipv4_address: u32,
) -> pb::GetContainerInfoResponse {
    pb::GetContainerInfoResponse {
        status: status as i32,
        failure_reason: reason.into(),
        ipv4_address,
    }
}

/// Decides the reply from an instance state (pure).
pub fn info_from_state(name: &str, state: &InstanceState) -> pb::GetContainerInfoResponse {
    if !state.is_running() {
        return reply(
            Status::Stopped,
            format!("container not running, status is: {}", state.status_code),
            0,
        );
    }
    let Some(eth0) = state.network.as_ref().and_then(|n| n.get("eth0")) else {
        return reply(
            Status::Failed,
            format!("failed to get eth0 for container {name}"),
            0,
        );
    };
    match eth0.addresses.iter().find(|a| a.family == "inet") {
        None => reply(Status::Running, "", 0),
        Some(a) => match ipv4::encode_str(&a.address) {
            Ok(v) => reply(Status::Running, "", v),
            Err(e) => reply(Status::Failed, e, 0),
        },
    }
}

impl Daemon {
    pub async fn get_container_info(
        &self,
        request: pb::GetContainerInfoRequest,
    ) -> pb::GetContainerInfoResponse {
        let name = request.container_name;
        if let Err(e) = check_container_name(&name) {
            return reply(
                Status::NotFound,
                format!("failed to find container: {e}"),
                0,
            );
        }
        let Some(client) = self.lxd() else {
            return reply(Status::NotFound, LXD_NOT_RUNNING, 0);
        };
        match client.instance_state(&name).await {
            Ok(state) => info_from_state(&name, &state),
            Err(e) => reply(
                Status::NotFound,
                format!("failed to find container: {e}"),
                0,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crostini_lxd::types::{InstanceNetworkAddress, InstanceNetworkState};

    fn state(code: i64, addrs: &[(&str, &str)]) -> InstanceState {
        let eth0 = InstanceNetworkState {
            addresses: addrs
                .iter()
                .map(|(family, address)| InstanceNetworkAddress {
                    family: family.to_string(),
                    address: address.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        InstanceState {
            status_code: code,
            network: Some([("eth0".to_string(), eth0)].into()),
            ..Default::default()
        }
    }

    #[test]
    fn running_with_ipv4_is_encoded_little_endian() {
        let r = info_from_state(
            "c",
            &state(103, &[("inet6", "fe80::1"), ("inet", "100.115.92.2")]),
        );
        assert_eq!(r.status, Status::Running as i32);
        assert_eq!(r.ipv4_address, 0x025C_7364);
    }

    #[test]
    fn stopped_no_eth0_no_address() {
        assert_eq!(
            info_from_state("c", &state(102, &[])).status,
            Status::Stopped as i32
        );
        let no_eth0 = InstanceState {
            status_code: 103,
            network: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(info_from_state("c", &no_eth0).status, Status::Failed as i32);
        let r = info_from_state("c", &state(103, &[("inet6", "fe80::1")]));
        assert_eq!((r.status, r.ipv4_address), (Status::Running as i32, 0));
        assert_eq!(
            info_from_state("c", &state(103, &[("inet", "x")])).status,
            Status::Failed as i32
        );
    }
}
