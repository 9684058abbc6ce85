//! ConfigureForArcSideload (garcon-service.md §5.11): forward local port 5555 to ARC's adb
//! through the `arc` bridge address, once per garcon process.
//!
//! Deviation recommended by the spec: the exit codes of the three `sudo` commands are checked; a
//! failing command answers FAILED with its output (upstream always reports success).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Mutex;

pub const INTERFACE: &str = "eth0";
pub const ARC_HOST: &str = "arc";
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment the configuration talks to; injectable for tests.
pub trait ArcEnvironment: Send + Sync {
    /// First IPv4 address of `interface`.
    fn interface_ipv4(&self, interface: &str) -> Result<Ipv4Addr, String>;
    /// All IPv4 addresses `host` resolves to.
    fn resolve_ipv4(&self, host: &str) -> BoxFuture<'_, Result<Vec<Ipv4Addr>, String>>;
    /// Runs a command; `Err(text)` when it could not run or exited non-zero.
    fn run(&self, argv: Vec<String>) -> BoxFuture<'_, Result<(), String>>;
}

/// The real system: getifaddrs, the resolver and `sudo`.
pub struct SystemArcEnvironment;

impl ArcEnvironment for SystemArcEnvironment {
    fn interface_ipv4(&self, interface: &str) -> Result<Ipv4Addr, String> {
        let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))?;
        addrs
            .filter(|a| a.interface_name == interface)
            .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|v4| v4.ip())))
            .next()
            .ok_or_else(|| format!("no IPv4 address on {interface}"))
    }

    fn resolve_ipv4(&self, host: &str) -> BoxFuture<'_, Result<Vec<Ipv4Addr>, String>> {
        let host = host.to_string();
        Box::pin(async move {
            let lookup = tokio::net::lookup_host((host.as_str(), 0));
            let addrs = tokio::time::timeout(COMMAND_TIMEOUT, lookup)
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|e| e.to_string())?;
            let mut v4: Vec<Ipv4Addr> = Vec::new();
            for addr in addrs {
                if let std::net::IpAddr::V4(ip) = addr.ip() {
                    if !v4.contains(&ip) {
                        v4.push(ip);
                    }
                }
            }
            Ok(v4)
        })
    }

    fn run(&self, argv: Vec<String>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let Some((program, args)) = argv.split_first() else {
                return Err("empty command".to_string());
            };
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
                .await
                .map_err(|_| format!("{} timed out", argv.join(" ")))?
                .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{} failed ({}): {}{}",
                    argv.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        })
    }
}

/// The three commands, in order.
pub fn commands(eth0: Ipv4Addr, arc: Ipv4Addr) -> Vec<Vec<String>> {
    let split = |s: String| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    vec![
        split(format!(
            "sudo -- sysctl -w net.ipv4.conf.{INTERFACE}.route_localnet=1"
        )),
        split(format!(
            "sudo -- iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 5555 -j DNAT --to {arc}:5555"
        )),
        split(format!(
            "sudo -- iptables -t nat -A POSTROUTING -p tcp -s 127.0.0.1 -d {arc} --dport 5555 -j SNAT --to {eth0}"
        )),
    ]
}

/// Once-per-process configuration state.
#[derive(Default)]
pub struct ArcSideload {
    done: AtomicBool,
    running: Mutex<()>,
}

impl ArcSideload {
    /// Configures forwarding; `Err(reason)` is the FAILED reason.
    pub async fn configure(&self, env: &dyn ArcEnvironment) -> Result<(), String> {
        let _one_at_a_time = self.running.lock().await;
        if self.done.load(Ordering::SeqCst) {
            return Ok(());
        }
        let eth0 = env
            .interface_ipv4(INTERFACE)
            .map_err(|detail| format!("Failed to determine ipv4 address: {detail}"))?;
        let arc = env
            .resolve_ipv4(ARC_HOST)
            .await
            .and_then(|addrs| match addrs.as_slice() {
                [one] => Ok(*one),
                [] => Err(format!("No addresses found for {ARC_HOST}")),
                _ => Err(format!("Multiple addresses found for {ARC_HOST}")),
            })
            .map_err(|detail| format!("Failed to determine bridge address: {detail}"))?;
        for argv in commands(eth0, arc) {
            env.run(argv).await?;
        }
        self.done.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    struct Fake {
        eth0: Result<Ipv4Addr, String>,
        arc: Vec<Ipv4Addr>,
        fail_command: Option<usize>,
        ran: StdMutex<Vec<String>>,
    }

    impl ArcEnvironment for Fake {
        fn interface_ipv4(&self, _interface: &str) -> Result<Ipv4Addr, String> {
            self.eth0.clone()
        }
        fn resolve_ipv4(&self, _host: &str) -> BoxFuture<'_, Result<Vec<Ipv4Addr>, String>> {
            let arc = self.arc.clone();
            Box::pin(async move { Ok(arc) })
        }
        fn run(&self, argv: Vec<String>) -> BoxFuture<'_, Result<(), String>> {
            let mut ran = self.ran.lock().unwrap();
            ran.push(argv.join(" "));
            let result = if Some(ran.len()) == self.fail_command {
                Err("iptables: Permission denied".to_string())
            } else {
                Ok(())
            };
            Box::pin(async move { result })
        }
    }

    fn fake(arc: Vec<Ipv4Addr>) -> Fake {
        Fake {
            eth0: Ok(Ipv4Addr::new(100, 115, 92, 5)),
            arc,
            fail_command: None,
            ran: StdMutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn runs_the_three_commands_once_per_process() {
        let env = fake(vec![Ipv4Addr::new(100, 115, 92, 2)]);
        let state = ArcSideload::default();
        state.configure(&env).await.expect("configured");
        state
            .configure(&env)
            .await
            .expect("second call succeeds at once");
        assert_eq!(
            *env.ran.lock().unwrap(),
            [
                "sudo -- sysctl -w net.ipv4.conf.eth0.route_localnet=1",
                "sudo -- iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 5555 -j DNAT --to 100.115.92.2:5555",
                "sudo -- iptables -t nat -A POSTROUTING -p tcp -s 127.0.0.1 -d 100.115.92.2 --dport 5555 -j SNAT --to 100.115.92.5",
            ]
        );
    }

    #[tokio::test]
    async fn address_failures_have_upstream_reasons() {
        let state = ArcSideload::default();
        let mut env = fake(vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)]);
        assert_eq!(
            state.configure(&env).await,
            Err("Failed to determine bridge address: Multiple addresses found for arc".into())
        );
        env.eth0 = Err("no IPv4 address on eth0".into());
        assert_eq!(
            state.configure(&env).await,
            Err("Failed to determine ipv4 address: no IPv4 address on eth0".into())
        );
        assert!(env.ran.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn failing_command_fails_and_allows_a_retry() {
        let state = ArcSideload::default();
        let mut env = fake(vec![Ipv4Addr::new(100, 115, 92, 2)]);
        env.fail_command = Some(2);
        let err = state.configure(&env).await.expect_err("fails");
        assert!(err.contains("Permission denied"));
        env.fail_command = None;
        env.ran.lock().unwrap().clear();
        state.configure(&env).await.expect("retry works");
        assert_eq!(env.ran.lock().unwrap().len(), 3);
    }

    #[test]
    fn loopback_interface_has_an_address_and_unknown_has_none() {
        let env = SystemArcEnvironment;
        assert_eq!(
            env.interface_ipv4("lo").expect("lo has 127.0.0.1"),
            Ipv4Addr::LOCALHOST
        );
        assert!(env.interface_ipv4("no-such-if0").is_err());
    }
}
