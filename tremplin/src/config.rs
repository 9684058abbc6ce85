//! Command line and the settings derived from it (spec §3.2).
//!
//! Upstream parses flags with Go's `flag` package: one or two dashes, value as the next
//! argument or after `=`. [`normalize_go_flags`] rewrites the single-dash forms of our long
//! flags into the double-dash forms clap understands, so `-lxd_subnet X`, `--lxd_subnet X`,
//! `-lxd_subnet=X` and `--lxd_subnet=X` all work.
//!
//! Every Termina path is a default behind a flag so the daemon also runs on an ordinary Linux
//! machine (see [`Paths`]).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use crostini_common::transport::peers::{parse_cid, parse_socket_mode, DEFAULT_SOCKET_MODE};
use crostini_common::transport::{ListenOptions, VsockPeers};
use crostini_common::Address;

/// Default gRPC address of the Tremplin service (`kTremplinPort` on any CID).
pub const DEFAULT_LISTEN: &str = "vsock://any:8890";
/// Default address of cicerone's TremplinListener (`VMADDR_CID_HOST`, `kTremplinListenerPort`).
pub const DEFAULT_HOST_ADDRESS: &str = "vsock://2:7778";
/// Default address of cicerone's CrashListener (`kCrashListenerPort`).
pub const DEFAULT_CRASH_ADDRESS: &str = "vsock://2:7779";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "tremplin",
    about = "Crostini VM agent: starts LXD and manages containers for the host (cicerone)"
)]
pub struct Flags {
    /// Address the Tremplin gRPC service listens on: vsock://CID:PORT or unix:///PATH;
    /// tcp://HOST:PORT is for tests and development only (no peer check: anyone who reaches
    /// the port may call).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: Address,

    /// Also accept vsock connections from this CID (the host, CID 2, always is); repeatable,
    /// or several separated by commas.
    #[arg(
        long = "allow-vsock-cid",
        value_name = "CID",
        value_delimiter = ',',
        value_parser = parse_cid
    )]
    pub allow_vsock_cid: Vec<u32>,

    /// Accept vsock connections from every CID, not only the host's.
    #[arg(long = "vsock-any-peer")]
    pub vsock_any_peer: bool,

    /// Mode of a unix --listen socket file, in octal (default 0600: owner only).
    #[arg(long = "socket-mode", value_name = "MODE", value_parser = parse_socket_mode)]
    pub socket_mode: Option<u32>,

    /// Address of the host's TremplinListener service (tcp for tests and development only).
    #[arg(long = "host-address", default_value = DEFAULT_HOST_ADDRESS)]
    pub host_address: Address,

    /// Address of the host's CrashListener (LXD failure reports); "none" disables them.
    #[arg(long = "crash-address", default_value = DEFAULT_CRASH_ADDRESS)]
    pub crash_address: String,

    /// LXD's unix socket (default `$LXD_DIR/unix.socket`, `LXD_DIR` defaulting to /var/lib/lxd).
    #[arg(long = "lxd-socket")]
    pub lxd_socket: Option<PathBuf>,

    /// IPv4 address/prefix of the `lxdbr0` bridge (required), e.g. 100.115.92.193/28.
    #[arg(long = "lxd_subnet", visible_alias = "lxd-subnet")]
    pub lxd_subnet: Option<String>,

    /// A feature name; repeatable. Stored, no behaviour depends on it.
    #[arg(long = "feature")]
    pub feature: Vec<String>,

    /// Chrome OS milestone; overrides the one read from `--lsb-release`.
    #[arg(long)]
    pub milestone: Option<u32>,

    /// File holding `CHROMEOS_RELEASE_CHROME_MILESTONE=<n>`. Missing file: the milestone is
    /// unknown (logged); malformed file: exit non-zero.
    #[arg(long = "lsb-release", default_value = "/etc/lsb-release")]
    pub lsb_release: PathBuf,

    /// Where the milestone is written for containers (bind-mounted at /dev/.cros_milestone).
    #[arg(long = "milestone-file", default_value = "/run/cros_milestone")]
    pub milestone_file: PathBuf,

    /// Directory of the per-container token files (`<dir>/<container>_token`).
    #[arg(long = "tokens-dir", default_value = "/run/tokens")]
    pub tokens_dir: PathBuf,

    /// Root of export/import paths; mounted in containers at /mnt/chromeos.
    #[arg(long = "shared-dir", default_value = "/mnt/shared")]
    pub shared_dir: PathBuf,

    /// Stateful mount (free-space check of imports).
    #[arg(long = "stateful-dir", default_value = "/mnt/stateful")]
    pub stateful_dir: PathBuf,

    /// LXD client configuration directory, created and chowned to `--lxd-conf-owner`.
    /// Empty string: skip.
    #[arg(long = "lxd-conf-dir", default_value = "/mnt/stateful/lxd_conf", value_parser = path_or_empty)]
    pub lxd_conf_dir: PathBuf,

    /// Owner (user and group name) of `--lxd-conf-dir`.
    #[arg(long = "lxd-conf-owner", default_value = "chronos")]
    pub lxd_conf_owner: String,

    /// Guest tools directory (garcon, sommelier), mounted at /opt/google/cros-containers.
    #[arg(
        long = "guest-tools-dir",
        default_value = "/opt/google/cros-containers"
    )]
    pub guest_tools_dir: PathBuf,

    /// Fonts directory, mounted at /usr/share/fonts/chromeos.
    #[arg(long = "fonts-dir", default_value = "/mnt/fonts")]
    pub fonts_dir: PathBuf,

    /// External storage directory, mounted at /mnt/external.
    #[arg(long = "external-dir", default_value = "/mnt/external")]
    pub external_dir: PathBuf,

    /// Device directory scanned for GPU/sound/kvm nodes.
    #[arg(long = "dev-dir", default_value = "/dev")]
    pub dev_dir: PathBuf,

    /// Sysfs root scanned for the xHCI controller of the USB manager (§9.2).
    #[arg(long = "sysfs-root", default_value = "/sys")]
    pub sysfs_root: PathBuf,

    /// Read uevents from a unix datagram socket bound at this path instead of the kernel's
    /// netlink socket (tests; each datagram is one kernel-format message).
    #[arg(long = "uevent-socket")]
    pub uevent_socket: Option<PathBuf>,

    /// Name of the LXD profile tremplin writes (§6) and creates containers with.
    #[arg(long = "lxd-profile", default_value = "default")]
    pub lxd_profile: String,

    /// Driver of the storage pool `default` when tremplin has to create it.
    #[arg(long = "storage-driver", default_value = "btrfs")]
    pub storage_driver: String,

    /// Source of the storage pool `default` when tremplin has to create it
    /// (default `$LXD_DIR/storage-pools/default`).
    #[arg(long = "storage-source")]
    pub storage_source: Option<PathBuf>,

    /// LXD binary tremplin starts when no LXD answers on the socket.
    #[arg(long = "lxd-binary", default_value = "lxd")]
    pub lxd_binary: PathBuf,

    /// Arguments of the LXD tremplin starts (whitespace separated).
    #[arg(
        long = "lxd-args",
        default_value = "--group lxd --syslog",
        allow_hyphen_values = true
    )]
    pub lxd_args: String,

    /// `resolv-file` given to the bridge's dnsmasq.
    #[arg(long = "resolv-conf", default_value = "/run/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// `addn-hosts` file given to the bridge's dnsmasq.
    #[arg(long = "arc-hosts", default_value = "/etc/arc_host.conf")]
    pub arc_hosts: PathBuf,

    /// Seconds between listening-port polls when the audit trigger is unavailable (§9.3; the
    /// 60 s resend happens regardless).
    #[arg(long = "ports-poll-seconds", default_value_t = 5)]
    pub ports_poll_seconds: u64,

    /// Do not arm the audit `listen()` trigger of the listening-port reports; poll instead.
    #[arg(long = "no-ports-audit")]
    pub no_ports_audit: bool,

    /// Seconds between `STARTING` heartbeats of a slow StartContainer (spec: 30).
    #[arg(long = "start-heartbeat-seconds", default_value_t = 30)]
    pub start_heartbeat_seconds: u64,

    /// Skip the apt key refresh run in containers 60 s after a start (§9.4).
    #[arg(long = "no-apt-key-refresh")]
    pub no_apt_key_refresh: bool,

    /// Log to stderr instead of syslog.
    #[arg(long = "log-stderr")]
    pub log_stderr: bool,
}

/// Why the command line was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Usage(String),
    #[error("-lxd_subnet is required (e.g. -lxd_subnet 100.115.92.193/28)")]
    MissingSubnet,
    #[error("invalid --crash-address {input:?}: {reason}")]
    CrashAddress { input: String, reason: String },
    #[error("invalid --lxd-profile {0:?}: must be a non-empty name without '/'")]
    Profile(String),
}

/// Every file system location tremplin uses; Termina's values are the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub lxd_dir: PathBuf,
    pub lsb_release: PathBuf,
    pub milestone_file: PathBuf,
    pub tokens_dir: PathBuf,
    pub shared_dir: PathBuf,
    pub stateful_dir: PathBuf,
    pub lxd_conf_dir: PathBuf,
    pub guest_tools_dir: PathBuf,
    pub fonts_dir: PathBuf,
    pub external_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub resolv_conf: PathBuf,
    pub arc_hosts: PathBuf,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Address,
    /// Who may connect to `listen` (`--allow-vsock-cid`, `--vsock-any-peer`, `--socket-mode`).
    pub listen_options: ListenOptions,
    pub host_address: Address,
    pub crash_address: Option<Address>,
    pub lxd_socket: PathBuf,
    pub lxd_subnet: String,
    pub features: BTreeSet<String>,
    pub milestone_override: Option<u32>,
    pub paths: Paths,
    pub lxd_conf_owner: String,
    pub lxd_profile: String,
    pub storage_driver: String,
    pub storage_source: PathBuf,
    pub lxd_binary: PathBuf,
    pub lxd_args: Vec<String>,
    /// Fallback poll interval of the listening ports (used only without the audit trigger).
    pub ports_poll: std::time::Duration,
    /// Arm the audit `listen()` trigger (§9.3).
    pub ports_audit: bool,
    pub start_heartbeat: std::time::Duration,
    pub apt_key_refresh: bool,
    pub log_stderr: bool,
    /// `--sysfs-root`.
    pub sysfs_root: PathBuf,
    /// `--uevent-socket`; `None`: the kernel netlink socket.
    pub uevent_socket: Option<PathBuf>,
}

/// Long flag names accepted with a single dash (Go `flag` style).
fn long_flag_names() -> Vec<String> {
    Flags::command()
        .get_arguments()
        .flat_map(|a| {
            let mut names: Vec<String> = a.get_long().map(str::to_string).into_iter().collect();
            names.extend(
                a.get_all_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string),
            );
            names
        })
        .chain(["help".to_string(), "version".to_string()])
        .collect()
}

/// Rewrites `-name`/`-name=v` into `--name`/`--name=v` for known long flags.
pub fn normalize_go_flags<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let names = long_flag_names();
    let mut out = Vec::new();
    let mut after_separator = false;
    for (i, arg) in args.into_iter().enumerate() {
        let arg: OsString = arg.into();
        if i == 0 || after_separator {
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            after_separator = true;
            out.push(arg);
            continue;
        }
        if let Some(rest) = text.strip_prefix('-') {
            if !rest.starts_with('-') {
                let name = rest.split('=').next().unwrap_or("");
                if names.iter().any(|n| n == name) {
                    out.push(OsString::from(format!("-{text}")));
                    continue;
                }
            }
        }
        out.push(arg);
    }
    out
}

impl Config {
    /// Parses argv (Go or GNU flag style) and validates it.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let flags = Flags::try_parse_from(normalize_go_flags(args))
            .map_err(|e| ConfigError::Usage(e.to_string()))?;
        Config::from_flags(flags)
    }

    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        let lxd_subnet = flags
            .lxd_subnet
            .filter(|s| !s.trim().is_empty())
            .ok_or(ConfigError::MissingSubnet)?;
        let crash_address = match flags.crash_address.as_str() {
            "" | "none" => None,
            other => Some(
                other
                    .parse::<Address>()
                    .map_err(|e| ConfigError::CrashAddress {
                        input: other.to_string(),
                        reason: e.to_string(),
                    })?,
            ),
        };
        if flags.lxd_profile.is_empty() || flags.lxd_profile.contains('/') {
            return Err(ConfigError::Profile(flags.lxd_profile));
        }
        let lxd_socket = flags
            .lxd_socket
            .unwrap_or_else(crostini_lxd::default_socket_path);
        let lxd_dir = lxd_dir_for(&lxd_socket);
        let storage_source = flags
            .storage_source
            .unwrap_or_else(|| lxd_dir.join("storage-pools/default"));
        let vsock_peers = if flags.vsock_any_peer {
            VsockPeers::Any
        } else {
            VsockPeers::host_and(flags.allow_vsock_cid)
        };
        let listen_options = ListenOptions {
            vsock_peers,
            socket_mode: flags.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE),
            ..ListenOptions::default()
        };
        Ok(Config {
            listen: flags.listen,
            listen_options,
            host_address: flags.host_address,
            crash_address,
            lxd_socket,
            lxd_subnet,
            features: flags.feature.into_iter().collect(),
            milestone_override: flags.milestone,
            paths: Paths {
                lxd_dir,
                lsb_release: flags.lsb_release,
                milestone_file: flags.milestone_file,
                tokens_dir: flags.tokens_dir,
                shared_dir: flags.shared_dir,
                stateful_dir: flags.stateful_dir,
                lxd_conf_dir: flags.lxd_conf_dir,
                guest_tools_dir: flags.guest_tools_dir,
                fonts_dir: flags.fonts_dir,
                external_dir: flags.external_dir,
                dev_dir: flags.dev_dir,
                resolv_conf: flags.resolv_conf,
                arc_hosts: flags.arc_hosts,
            },
            lxd_conf_owner: flags.lxd_conf_owner,
            lxd_profile: flags.lxd_profile,
            storage_driver: flags.storage_driver,
            storage_source,
            lxd_binary: flags.lxd_binary,
            lxd_args: flags
                .lxd_args
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            ports_poll: std::time::Duration::from_secs(flags.ports_poll_seconds.max(1)),
            ports_audit: !flags.no_ports_audit,
            start_heartbeat: std::time::Duration::from_secs(flags.start_heartbeat_seconds.max(1)),
            apt_key_refresh: !flags.no_apt_key_refresh,
            log_stderr: flags.log_stderr,
            sysfs_root: flags.sysfs_root,
            uevent_socket: flags.uevent_socket,
        })
    }
}

/// The LXD directory: `$LXD_DIR` when set, else the socket's parent directory.
fn lxd_dir_for(socket: &std::path::Path) -> PathBuf {
    match std::env::var_os("LXD_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => socket
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(crostini_lxd::DEFAULT_LXD_DIR)),
    }
}

/// A path flag where the empty string is meaningful ("skip"); clap's own path parser refuses it.
fn path_or_empty(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["tremplin"];
        argv.extend_from_slice(args);
        Config::from_args(argv)
    }

    #[test]
    fn lxd_subnet_accepts_all_go_flag_forms() {
        for args in [
            vec!["-lxd_subnet", "100.115.92.193/28"],
            vec!["--lxd_subnet", "100.115.92.193/28"],
            vec!["-lxd_subnet=100.115.92.193/28"],
            vec!["--lxd_subnet=100.115.92.193/28"],
            vec!["--lxd-subnet", "100.115.92.193/28"],
        ] {
            let config = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(config.lxd_subnet, "100.115.92.193/28", "{args:?}");
        }
    }

    #[test]
    fn missing_or_empty_subnet_is_rejected() {
        assert!(matches!(parse(&[]), Err(ConfigError::MissingSubnet)));
        assert!(matches!(
            parse(&["-lxd_subnet="]),
            Err(ConfigError::MissingSubnet)
        ));
    }

    #[test]
    fn defaults_are_termina_values() {
        let c = parse(&["-lxd_subnet", "10.0.0.1/24"]).expect("parses");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.host_address.to_string(), DEFAULT_HOST_ADDRESS);
        assert_eq!(
            c.crash_address.map(|a| a.to_string()).as_deref(),
            Some(DEFAULT_CRASH_ADDRESS)
        );
        assert_eq!(c.paths.tokens_dir, PathBuf::from("/run/tokens"));
        assert_eq!(c.paths.shared_dir, PathBuf::from("/mnt/shared"));
        assert_eq!(c.lxd_profile, "default");
    }

    #[test]
    fn features_repeat_and_single_dash_flags_work() {
        let c = parse(&[
            "-feature",
            "a",
            "--feature=b",
            "-feature=a",
            "-listen",
            "tcp://127.0.0.1:0",
            "-lxd_subnet",
            "x/1",
        ])
        .expect("parses");
        assert_eq!(
            c.features.into_iter().collect::<Vec<_>>(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(c.listen.to_string(), "tcp://127.0.0.1:0");
    }

    #[test]
    fn unknown_single_dash_flag_is_a_usage_error() {
        assert!(matches!(
            parse(&["-lxd_subnet", "x/1", "-bogus"]),
            Err(ConfigError::Usage(_))
        ));
    }

    #[test]
    fn bad_addresses_are_usage_errors_naming_the_input() {
        let e = parse(&["-lxd_subnet", "x/1", "--listen", "nope"]).expect_err("bad listen");
        assert!(e.to_string().contains("nope"), "{e}");
        let e = parse(&["-lxd_subnet", "x/1", "--crash-address", "bad"]).expect_err("bad crash");
        assert!(e.to_string().contains("bad"), "{e}");
        assert!(parse(&["-lxd_subnet", "x/1", "--crash-address", "none"])
            .expect("none")
            .crash_address
            .is_none());
    }

    #[test]
    fn peer_flags_default_to_the_host_and_0600_and_widen() {
        let c = parse(&["-lxd_subnet", "x/1"]).expect("parses");
        assert_eq!(c.listen_options, ListenOptions::default());
        let c = parse(&[
            "-lxd_subnet",
            "x/1",
            "--allow-vsock-cid",
            "3",
            "-allow-vsock-cid=4,5",
            "--socket-mode",
            "0660",
        ])
        .expect("parses");
        assert_eq!(
            c.listen_options.vsock_peers,
            VsockPeers::host_and([3, 4, 5])
        );
        assert_eq!(c.listen_options.socket_mode, 0o660);
        let c = parse(&["-lxd_subnet", "x/1", "--vsock-any-peer"]).expect("parses");
        assert_eq!(c.listen_options.vsock_peers, VsockPeers::Any);
        assert!(parse(&["-lxd_subnet", "x/1", "--socket-mode", "0999"]).is_err());
        assert!(parse(&["-lxd_subnet", "x/1", "--allow-vsock-cid", "x"]).is_err());
        let help = Flags::command().render_long_help().to_string();
        assert!(help.contains("tests and development only"), "{help}");
    }

    #[test]
    fn values_after_separator_are_left_alone() {
        let v = normalize_go_flags(["tremplin", "-listen", "--", "-listen"]);
        assert_eq!(v, vec!["tremplin", "--listen", "--", "-listen"]);
    }

    #[test]
    fn empty_lxd_conf_dir_means_skip() {
        let flags = parse(&["-lxd_subnet", "x/1", "--lxd-conf-dir", ""]).expect("empty accepted");
        assert!(flags.paths.lxd_conf_dir.as_os_str().is_empty());
    }
}
