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
        // Both at once: a slow LXD costs one request timeout, not two.
        let (log, instance) = tokio::join!(
            client.instance_log(DEFAULT_CONTAINER, "lxc.log"),
            client.instance(DEFAULT_CONTAINER)
        );
        let log = log.map_err(|e| e.to_string());
        let instance = instance.map(|(i, _)| i).map_err(|e| e.to_string());
        let last_event = self.last_lifecycle.get(DEFAULT_CONTAINER);
        pb::GetDebugInfoResponse {
            debug_information: debug_text(
                DEFAULT_CONTAINER,
                instance.as_ref().map_err(String::as_str),
                last_event.as_deref(),
                log.as_deref().map_err(String::as_str),
            ),
        }
    }
}

/// Longest log tail GetDebugInfo returns (the host's message limit is 4 MiB).
pub const MAX_DEBUG_LOG: usize = 1024 * 1024;

/// GetDebugInfo's text (§8.12). A running container with a non-empty `lxc.log` gets the log
/// as the spec says. [deviation, issue 9 #13] Otherwise (a stopped container, whose log LXD
/// serves empty, or any empty log or error) a summary comes first: the container's state and
/// status code, when it was last used, the last lifecycle event tremplin saw, and
/// "log empty" said explicitly, so the text is never empty.
pub fn debug_text(
    name: &str,
    instance: Result<&crostini_lxd::Instance, &str>,
    last_event: Option<&str>,
    log: Result<&[u8], &str>,
) -> String {
    let log_text = match log {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(MAX_DEBUG_LOG);
            let mut text = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if start > 0 {
                text.insert_str(0, &format!("[first {start} bytes of lxc.log omitted]\n"));
            }
            Ok(text)
        }
        Err(e) => Err(format!("Error getting container log: {e}")),
    };
    let running = instance.is_ok_and(|i| i.is_running());
    if let (true, Ok(text)) = (running, &log_text) {
        if !text.trim().is_empty() {
            return text.clone();
        }
    }
    let mut out = match instance {
        Ok(i) => {
            let last_used = if i.last_used_at.is_empty() {
                "never"
            } else {
                &i.last_used_at
            };
            format!(
                "Container {name}: state {} (status code {}), last used {last_used}\n",
                if i.status.is_empty() {
                    "unknown"
                } else {
                    &i.status
                },
                i.status_code,
            )
        }
        Err(e) => format!("Container {name}: state unknown ({e})\n"),
    };
    out.push_str(&format!(
        "Last lifecycle event: {}\n",
        last_event.unwrap_or("none seen since tremplin started")
    ));
    match log_text {
        Ok(text) if text.trim().is_empty() => {
            out.push_str("lxc.log: log empty");
            if !running {
                out.push_str(" (LXD serves it empty while the container is stopped)");
            }
            out.push('\n');
        }
        Ok(text) => {
            out.push_str("lxc.log:\n");
            out.push_str(&text);
        }
        Err(e) => {
            out.push_str(&e);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(status: &str, code: i64) -> crostini_lxd::Instance {
        crostini_lxd::Instance {
            name: "penguin".into(),
            status: status.into(),
            status_code: code,
            last_used_at: "2026-12-04T10:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn running_container_with_a_log_gets_the_log() {
        let i = instance("Running", 103);
        assert_eq!(
            debug_text("penguin", Ok(&i), None, Ok(b"lxc line\n")),
            "lxc line\n"
        );
    }

    #[test]
    fn stopped_container_with_an_empty_log_says_so() {
        let i = instance("Stopped", 102);
        let text = debug_text(
            "penguin",
            Ok(&i),
            Some("instance-stopped at 2026-12-04T11:00:00Z"),
            Ok(b""),
        );
        assert!(text.contains("state Stopped (status code 102)"), "{text}");
        assert!(text.contains("last used 2026-12-04T10:00:00Z"), "{text}");
        assert!(
            text.contains("instance-stopped at 2026-12-04T11:00:00Z"),
            "{text}"
        );
        assert!(text.contains("log empty"), "{text}");
    }

    #[test]
    fn running_container_with_an_empty_log_and_no_event_is_not_empty() {
        let i = instance("Running", 103);
        let text = debug_text("penguin", Ok(&i), None, Ok(b"  \n"));
        assert!(text.contains("state Running (status code 103)"), "{text}");
        assert!(text.contains("none seen since tremplin started"), "{text}");
        assert!(text.contains("log empty"), "{text}");
        assert!(!text.contains("stopped"), "{text}");
    }

    #[test]
    fn stopped_container_keeps_a_non_empty_log_after_the_summary() {
        let i = instance("Stopped", 102);
        let text = debug_text("penguin", Ok(&i), None, Ok(b"old line\n"));
        assert!(
            text.starts_with("Container penguin: state Stopped"),
            "{text}"
        );
        assert!(text.ends_with("lxc.log:\nold line\n"), "{text}");
    }

    #[test]
    fn missing_container_and_log_errors_are_reported() {
        let text = debug_text("penguin", Err("not found"), None, Err("LXD error 404"));
        assert!(text.contains("state unknown (not found)"), "{text}");
        assert!(
            text.contains("Error getting container log: LXD error 404"),
            "{text}"
        );
    }

    #[test]
    fn huge_log_keeps_its_tail() {
        let i = instance("Running", 103);
        let mut log = vec![b'a'; MAX_DEBUG_LOG + 10];
        log.extend_from_slice(b"END");
        let text = debug_text("penguin", Ok(&i), None, Ok(&log));
        assert!(
            text.starts_with("[first 13 bytes of lxc.log omitted]"),
            "{}",
            &text[..60]
        );
        assert!(text.ends_with("END"));
        assert!(text.len() <= MAX_DEBUG_LOG + 64);
    }

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
