//! Paths and constants garcon uses; every external path is injectable for tests.

use std::path::PathBuf;
use std::time::Duration;

/// Token file bind-mounted by tremplin (garcon-host.md §1).
pub const DEFAULT_TOKEN_FILE: &str = "/dev/.container_token";
/// Host ContainerListener address (CID 2 = VMADDR_CID_HOST, port 8889).
pub const DEFAULT_HOST_ADDRESS: &str = "vsock://2:8889";
/// sftp server spawned per sftp connection.
pub const DEFAULT_SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
pub const DEFAULT_VSHD: &str = "/opt/google/cros-containers/bin/vshd";
pub const DEFAULT_CHUNNEL: &str = "/opt/google/cros-containers/bin/chunnel";
pub const DEFAULT_ANSIBLE_PLAYBOOK: &str = "ansible-playbook";
/// The default container user; server mode refuses other uids without `--allow_any_user`.
pub const DEFAULT_UID: u32 = 1000;
/// First and last vsock port probed for garcon's own gRPC server (§3.3).
pub const GARCON_PORT_FIRST: u32 = 10000;
pub const GARCON_PORT_LAST: u32 = 19999;
/// Server mode polls for the token this often, for at most [`TOKEN_WAIT`] (§3.2).
pub const TOKEN_POLL_INTERVAL: Duration = Duration::from_millis(100);
pub const TOKEN_WAIT: Duration = Duration::from_secs(60);
/// Low-disk check period and threshold (§10).
pub const LOW_DISK_PERIOD: Duration = Duration::from_secs(120);
pub const LOW_DISK_THRESHOLD: u64 = 1 << 30;
/// Per-path FileWatchTriggered throttle window (§11).
pub const FILE_WATCH_WINDOW: Duration = Duration::from_secs(3);

/// External programs and directories used by the rpc handlers.
#[derive(Clone, Debug)]
pub struct Paths {
    pub sftp_server: PathBuf,
    pub vshd: PathBuf,
    pub chunnel: PathBuf,
    /// Program name or path of `ansible-playbook` (looked up in `PATH` when bare).
    pub ansible_playbook: PathBuf,
    /// `$HOME` (None when unset or empty).
    pub home: Option<PathBuf>,
    /// `$USER` (None when unset or empty).
    pub user: Option<String>,
    /// Directory for temporary files (`$TMPDIR` or `/tmp`).
    pub temp_dir: PathBuf,
}

impl Paths {
    /// Production defaults, with `HOME`, `USER` and `TMPDIR` from the environment.
    pub fn from_env() -> Self {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Self {
            sftp_server: DEFAULT_SFTP_SERVER.into(),
            vshd: DEFAULT_VSHD.into(),
            chunnel: DEFAULT_CHUNNEL.into(),
            ansible_playbook: DEFAULT_ANSIBLE_PLAYBOOK.into(),
            home: non_empty("HOME").map(PathBuf::from),
            user: non_empty("USER").and_then(|u| u.into_string().ok()),
            temp_dir: non_empty("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp")),
        }
    }
}
