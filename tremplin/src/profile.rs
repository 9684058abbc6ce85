//! The LXD objects tremplin writes at StartLxd (§5.4, §6): the bridge network config and the
//! container profile. Pure functions of the configured paths and the devices found.

use std::path::Path;

use crostini_lxd::types::{Config as LxdConfig, Devices};

use crate::config::Paths;
use crate::devices::CharDevice;

/// Network name (§1.1).
pub const NETWORK: &str = "lxdbr0";
/// Storage pool name (§1.1).
pub const POOL: &str = "default";

/// `raw.idmap` of the profile: the four identity-mapped ids.
pub const RAW_IDMAP: &str =
    "both 1000 1000\nboth 655360 655360\nboth 665357 665357\nboth 1001 1001";
/// The ids of [`RAW_IDMAP`], in its order.
pub const RAW_IDMAP_IDS: [u32; 4] = [1000, 655360, 665357, 1001];

/// Sub-id ranges (`start`, `count`) of `user` in an `/etc/subuid`-style file.
pub fn subid_ranges(text: &str, user: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (name, start, count) = (f.next()?, f.next()?, f.next()?);
            if name != user {
                return None;
            }
            Some((start.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

/// LXD's allocation range when root has no sub-ids at all (its built-in default).
const LXD_DEFAULT_RANGE: (u64, u64) = (1_000_000, 1_000_000_000);

fn allowed_by(ranges: &[(u64, u64)], id: u32) -> bool {
    let id = u64::from(id);
    let contains = |(start, count): &(u64, u64)| id >= *start && id < start.saturating_add(*count);
    if ranges.is_empty() {
        // No delegation: LXD writes the maps itself; only its own range is off limits.
        return !contains(&LXD_DEFAULT_RANGE);
    }
    // LXD allocates containers from root's largest range and refuses raw.idmap host ids in
    // it ("Host id is in the range of subids"); newuidmap only maps ids delegated to root. So an
    // id is usable when a smaller delegated range (e.g. `root:1000:1`) contains it.
    let largest = ranges.iter().max_by_key(|(_, count)| *count).copied();
    ranges.iter().any(|r| contains(r) && Some(*r) != largest)
}

/// Which of [`RAW_IDMAP_IDS`] this host can identity-map, given root's entries of
/// `/etc/subuid` and `/etc/subgid` (`None`: file absent). Returns (kept, dropped). On Termina
/// all four are kept; on a stock Debian host (`root:100000:10000001` only) none are.
pub fn usable_identity_ids(subuid: Option<&str>, subgid: Option<&str>) -> (Vec<u32>, Vec<u32>) {
    let uids = subuid.map(|t| subid_ranges(t, "root")).unwrap_or_default();
    let gids = subgid.map(|t| subid_ranges(t, "root")).unwrap_or_default();
    RAW_IDMAP_IDS
        .iter()
        .partition(|id| allowed_by(&uids, **id) && allowed_by(&gids, **id))
}

/// The `raw.idmap` value for `ids` (`both <id> <id>` lines).
pub fn raw_idmap(ids: &[u32]) -> String {
    ids.iter()
        .map(|id| format!("both {id} {id}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `lxdbr0` config (§5.4 step 6).
pub fn network_config(subnet: &str, paths: &Paths) -> LxdConfig {
    LxdConfig::from([
        ("ipv4.address".to_string(), subnet.to_string()),
        ("ipv4.dhcp.expiry".to_string(), "infinite".to_string()),
        ("ipv6.address".to_string(), "none".to_string()),
        (
            "raw.dnsmasq".to_string(),
            format!(
                "resolv-file={}\ndhcp-authoritative\nno-ping\naddn-hosts={}",
                paths.resolv_conf.display(),
                paths.arc_hosts.display()
            ),
        ),
    ])
}

/// Profile config (§6) with the given `raw.idmap` value (left out when empty).
pub fn profile_config(raw_idmap: &str) -> LxdConfig {
    let mut c = LxdConfig::from([
        ("boot.autostart".to_string(), "false".to_string()),
        ("boot.host_shutdown_timeout".to_string(), "9".to_string()),
        ("security.nesting".to_string(), "true".to_string()),
    ]);
    if !raw_idmap.is_empty() {
        c.insert("raw.idmap".to_string(), raw_idmap.to_string());
    }
    c
}

fn device(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// What the profile could not include, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Omitted {
    pub device: &'static str,
    pub source: String,
}

/// Profile devices (§6). A bind-mount whose source does not exist on this machine (an
/// ordinary Linux host has no /opt/google/cros-containers, /mnt/fonts, ...) is left out and
/// returned in `omitted` — LXD would otherwise refuse to start every container.
/// `milestone_written` tells whether the milestone file exists.
pub fn profile_devices(paths: &Paths, vm_devices: &[CharDevice]) -> (Devices, Vec<Omitted>) {
    let mut devices = Devices::new();
    let mut omitted = Vec::new();
    let mut disk = |name: &'static str, source: &Path, path: &str| {
        if source.exists() {
            devices.insert(
                name.to_string(),
                device(&[
                    ("type", "disk"),
                    ("source", &path_str(source)),
                    ("path", path),
                ]),
            );
        } else {
            omitted.push(Omitted {
                device: name,
                source: path_str(source),
            });
        }
    };
    disk(
        "cros_containers",
        &paths.guest_tools_dir,
        "/opt/google/cros-containers",
    );
    disk(
        "cros_milestone",
        &paths.milestone_file,
        "/dev/.cros_milestone",
    );
    disk("external", &paths.external_dir, "/mnt/external");
    disk("fonts", &paths.fonts_dir, "/usr/share/fonts/chromeos");
    disk("shared", &paths.shared_dir, "/mnt/chromeos");
    let mut chr = |name: &'static str, source: &Path| {
        if source.exists() {
            devices.insert(
                name.to_string(),
                device(&[
                    ("type", "unix-char"),
                    ("source", &path_str(source)),
                    ("mode", "0666"),
                ]),
            );
        } else {
            omitted.push(Omitted {
                device: name,
                source: path_str(source),
            });
        }
    };
    chr("fuse", &paths.dev_dir.join("fuse"));
    chr("tun", &paths.dev_dir.join("net/tun"));
    devices.insert(
        "eth0".to_string(),
        device(&[("type", "nic"), ("nictype", "bridged"), ("parent", NETWORK)]),
    );
    devices.insert(
        "root".to_string(),
        device(&[("type", "disk"), ("path", "/"), ("pool", POOL)]),
    );
    for d in vm_devices {
        let (key, entry) = d.lxd_entry();
        devices.insert(key, entry);
    }
    (devices, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn paths(root: &Path) -> Paths {
        Paths {
            lxd_dir: root.join("lxd"),
            lsb_release: root.join("lsb-release"),
            milestone_file: root.join("cros_milestone"),
            tokens_dir: root.join("tokens"),
            shared_dir: root.join("shared"),
            stateful_dir: root.to_path_buf(),
            lxd_conf_dir: root.join("lxd_conf"),
            guest_tools_dir: root.join("cros-containers"),
            fonts_dir: root.join("fonts"),
            external_dir: root.join("external"),
            dev_dir: PathBuf::from("/dev"),
            resolv_conf: PathBuf::from("/run/resolv.conf"),
            arc_hosts: PathBuf::from("/etc/arc_host.conf"),
        }
    }

    #[test]
    fn network_config_matches_spec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = network_config("100.115.92.193/28", &paths(dir.path()));
        assert_eq!(c["ipv4.address"], "100.115.92.193/28");
        assert_eq!(c["ipv4.dhcp.expiry"], "infinite");
        assert_eq!(c["ipv6.address"], "none");
        assert_eq!(
            c["raw.dnsmasq"],
            "resolv-file=/run/resolv.conf\ndhcp-authoritative\nno-ping\naddn-hosts=/etc/arc_host.conf"
        );
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn profile_config_matches_spec() {
        let c = profile_config(&raw_idmap(&RAW_IDMAP_IDS));
        assert_eq!(c["boot.autostart"], "false");
        assert_eq!(c["boot.host_shutdown_timeout"], "9");
        assert_eq!(
            c["raw.idmap"].lines().collect::<Vec<_>>(),
            vec![
                "both 1000 1000",
                "both 655360 655360",
                "both 665357 665357",
                "both 1001 1001"
            ]
        );
        assert_eq!(c["security.nesting"], "true");
    }

    #[test]
    fn identity_ids_follow_subid_delegation() {
        let all = RAW_IDMAP_IDS.to_vec();
        assert_eq!(
            usable_identity_ids(None, None),
            (all.clone(), vec![]),
            "no sub-ids at all"
        );
        let termina =
            "root:1000:1\nroot:1001:1\nroot:655360:1\nroot:665357:1\nroot:1000000:1000000000\n";
        assert_eq!(usable_identity_ids(Some(termina), Some(termina)).0, all);
        let debian = "_lxd:100000:10000001\nroot:100000:10000001\n";
        assert_eq!(
            usable_identity_ids(Some(debian), Some(debian)),
            (vec![], all.clone())
        );
        let dev = "root:100000:10000001\nroot:1000:2\n";
        assert_eq!(
            usable_identity_ids(Some(dev), Some(dev)),
            (vec![1000, 1001], vec![655360, 665357])
        );
        assert_eq!(
            usable_identity_ids(Some(dev), Some(debian)).0,
            Vec::<u32>::new(),
            "both files must delegate"
        );
        assert_eq!(raw_idmap(&all), RAW_IDMAP);
        assert_eq!(raw_idmap(&[]), "");
        assert!(!profile_config("").contains_key("raw.idmap"));
    }

    #[test]
    fn all_devices_present_when_sources_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = paths(dir.path());
        for d in [
            &p.shared_dir,
            &p.guest_tools_dir,
            &p.fonts_dir,
            &p.external_dir,
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(&p.milestone_file, "120").expect("write");
        let kvm = CharDevice {
            relative: "kvm".into(),
            major: 10,
            minor: 232,
        };
        let (devices, omitted) = profile_devices(&p, &[kvm]);
        assert!(omitted.is_empty(), "{omitted:?}");
        let mut names: Vec<&str> = devices.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "/dev/kvm",
                "cros_containers",
                "cros_milestone",
                "eth0",
                "external",
                "fonts",
                "fuse",
                "root",
                "shared",
                "tun"
            ]
        );
        assert_eq!(devices["shared"]["path"], "/mnt/chromeos");
        assert_eq!(devices["fonts"]["path"], "/usr/share/fonts/chromeos");
        assert_eq!(devices["cros_milestone"]["path"], "/dev/.cros_milestone");
        assert_eq!(devices["eth0"]["nictype"], "bridged");
        assert_eq!(devices["eth0"]["parent"], "lxdbr0");
        assert_eq!(devices["root"]["pool"], "default");
        assert_eq!(devices["fuse"]["mode"], "0666");
        assert_eq!(devices["/dev/kvm"]["minor"], "232");
    }

    #[test]
    fn missing_sources_are_omitted_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (devices, omitted) = profile_devices(&paths(dir.path()), &[]);
        let names: Vec<&str> = omitted.iter().map(|o| o.device).collect();
        assert_eq!(
            names,
            vec![
                "cros_containers",
                "cros_milestone",
                "external",
                "fonts",
                "shared"
            ]
        );
        assert!(devices.contains_key("root") && devices.contains_key("eth0"));
    }
}
