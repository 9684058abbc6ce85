//! HostNetworkChanged (§8.11) and GetDebugInfo (§8.12).

use std::net::Ipv6Addr;
use std::time::Duration;

use crostini_lxd::ExecRequest;
use crostini_proto::vm_tools::tremplin as pb;

use crate::daemon::Daemon;
use crate::lxd_setup::DEFAULT_CONTAINER;

/// Global unicast IPv6 (not unspecified, loopback, link-local, unique-local or multicast).
pub fn is_global_unicast_v6(text: &str) -> bool {
    let Ok(a) = text.parse::<Ipv6Addr>() else {
        return false;
    };
    let first = a.segments()[0];
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (first & 0xffc0) == 0xfe80
        || (first & 0xfe00) == 0xfc00)
}

impl Daemon {
    pub async fn host_network_changed(
        &self,
        _request: pb::HostNetworkChangedRequest,
    ) -> Result<pb::HostNetworkChangedResponse, String> {
        let Some(client) = self.lxd() else {
            return Ok(pb::HostNetworkChangedResponse {});
        };
        let instances = client
            .instances()
            .await
            .map_err(|e| format!("failed to get list of containers: {e}"))?;
        for instance in instances.iter().filter(|i| i.is_running()) {
            let state = match client.instance_state(&instance.name).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("HostNetworkChanged: state of {}: {e}", instance.name);
                    continue;
                }
            };
            for (ifname, net) in state.network.iter().flatten() {
                let global = net
                    .addresses
                    .iter()
                    .any(|a| a.family == "inet6" && is_global_unicast_v6(&a.address));
                if !global {
                    continue;
                }
                for value in ["1", "0"] {
                    let arg = format!("net.ipv6.conf.{ifname}.disable_ipv6={value}");
                    let req = ExecRequest::new(&["sysctl", "-w", arg.as_str()])
                        .timeout(Duration::from_secs(10));
                    match client.exec(&instance.name, &req).await {
                        Ok(out) if out.exit_code == 0 => {}
                        Ok(out) => tracing::warn!(
                            "sysctl -w {arg} in {} exited {}",
                            instance.name,
                            out.exit_code
                        ),
                        Err(e) => tracing::warn!("sysctl -w {arg} in {}: {e}", instance.name),
                    }
                }
            }
        }
        Ok(pb::HostNetworkChangedResponse {})
    }

    pub async fn get_debug_info(
        &self,
        _request: pb::GetDebugInfoRequest,
    ) -> pb::GetDebugInfoResponse {
        let Some(client) = self.lxd() else {
            return pb::GetDebugInfoResponse {
                debug_information: "LXD not running".to_string(),
            };
        };
        let debug_information = match client.instance_log(DEFAULT_CONTAINER, "lxc.log").await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("Error getting container log: {e}"),
        };
        pb::GetDebugInfoResponse { debug_information }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_unicast_detection() {
        assert!(is_global_unicast_v6("2001:db8::1"));
        assert!(is_global_unicast_v6("2a00:1450::5"));
        for no in [
            "fe80::1", "::1", "::", "fd00::1", "ff02::1", "garbage", "10.0.0.1",
        ] {
            assert!(!is_global_unicast_v6(no), "{no}");
        }
    }
}
