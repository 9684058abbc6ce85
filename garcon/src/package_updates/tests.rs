use super::*;

fn update(info: u32, package_id: &str) -> Update {
    Update {
        info,
        package_id: package_id.to_owned(),
    }
}

const SECURITY: u32 = crostini_packagekit::enums::INFO_SECURITY;
const NORMAL: u32 = 5;

fn sample() -> Vec<Update> {
    vec![
        update(NORMAL, "cros-garcon;2;amd64;google-stable-main"),
        update(NORMAL, "vim;2;amd64;debian-stable-main"),
        update(SECURITY, "openssl;3;amd64;debian-bookworm-security-main"),
        update(NORMAL, "evil;2;amd64;google-stable-main-not"),
        update(NORMAL, "cros-garcon;2;amd64;google-stable-main"),
    ]
}

#[test]
fn both_switches_pick_cros_and_security_updates_only() {
    assert_eq!(
        select_updates(&sample(), UpdateSwitches::default()),
        [
            "cros-garcon;2;amd64;google-stable-main",
            "openssl;3;amd64;debian-bookworm-security-main"
        ]
    );
}

#[test]
fn security_switch_off_leaves_security_updates() {
    let switches = UpdateSwitches {
        cros: true,
        security: false,
    };
    assert_eq!(
        select_updates(&sample(), switches),
        ["cros-garcon;2;amd64;google-stable-main"]
    );
}

#[test]
fn cros_switch_off_leaves_cros_updates() {
    let switches = UpdateSwitches {
        cros: false,
        security: true,
    };
    assert_eq!(
        select_updates(&sample(), switches),
        ["openssl;3;amd64;debian-bookworm-security-main"]
    );
}

#[test]
fn a_cros_package_that_is_also_a_security_update_is_picked_once() {
    let updates = [update(SECURITY, "cros-x;2;amd64;google-stable-main")];
    assert_eq!(
        select_updates(&updates, UpdateSwitches::default()),
        ["cros-x;2;amd64;google-stable-main"]
    );
}

#[test]
fn both_switches_off_pick_nothing() {
    let off = UpdateSwitches {
        cros: false,
        security: false,
    };
    assert!(select_updates(&sample(), off).is_empty());
    assert!(!off.any());
}

#[test]
fn shipped_configuration_enables_both() {
    let text = "# Disable automatic updates of Crostini packages.\n\
                DisableAutomaticCrosPackageUpdates=false\n\n\
                # Disable automatic security updates.\n\
                DisableAutomaticSecurityUpdates=false\n";
    assert_eq!(UpdateSwitches::parse(text), UpdateSwitches::default());
}

#[test]
fn true_disables_and_other_values_do_not() {
    let parsed = UpdateSwitches::parse(
        " DisableAutomaticCrosPackageUpdates = true \nDisableAutomaticSecurityUpdates=TRUE\n",
    );
    assert_eq!(
        parsed,
        UpdateSwitches {
            cros: false,
            security: true
        }
    );
    let parsed = UpdateSwitches::parse("DisableAutomaticSecurityUpdates=true\n");
    assert_eq!(
        parsed,
        UpdateSwitches {
            cros: true,
            security: false
        }
    );
}

#[test]
fn comments_unknown_keys_and_junk_are_ignored_and_the_last_key_wins() {
    let parsed = UpdateSwitches::parse(
        "#DisableAutomaticCrosPackageUpdates=true\nnonsense\nOther=true\n\
         DisableAutomaticSecurityUpdates=true\nDisableAutomaticSecurityUpdates=false\n",
    );
    assert_eq!(parsed, UpdateSwitches::default());
}

#[test]
fn config_path_prefers_an_absolute_xdg_config_home() {
    let home = Path::new("/home/u");
    assert_eq!(
        config_path(Some("/x/cfg".into()), Some(home)),
        Some(PathBuf::from("/x/cfg/cros-garcon.conf"))
    );
    assert_eq!(
        config_path(Some("relative".into()), Some(home)),
        Some(PathBuf::from("/home/u/.config/cros-garcon.conf"))
    );
    assert_eq!(
        config_path(None, Some(home)),
        Some(PathBuf::from("/home/u/.config/cros-garcon.conf"))
    );
    assert_eq!(config_path(None, None), None);
}

#[test]
fn read_switches_reads_the_file_each_time_and_defaults_when_missing_or_not_regular() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(CONFIG_FILE_NAME);
    assert_eq!(read_switches(Some(&path)), UpdateSwitches::default());
    std::fs::write(&path, "DisableAutomaticCrosPackageUpdates=true\n").expect("write");
    assert!(!read_switches(Some(&path)).cros);
    std::fs::write(&path, "DisableAutomaticCrosPackageUpdates=false\n").expect("write");
    assert!(read_switches(Some(&path)).cros);
    // A FIFO is refused without blocking: defaults.
    let fifo = dir.path().join("fifo.conf");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .expect("mkfifo");
    assert_eq!(read_switches(Some(&fifo)), UpdateSwitches::default());
    assert_eq!(read_switches(None), UpdateSwitches::default());
}
