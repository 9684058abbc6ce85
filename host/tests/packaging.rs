//! Packaging (garcon-host.md §17, §19 items 50–54): builds the container package and the VM tree
//! with the one-command scripts in `packaging/` and runs one check of
//! `packaging/check-package.sh` / `packaging/check-vm-image.sh` per test.
//!
//! Every test builds into its own temporary directory (nextest runs tests as separate processes,
//! in parallel). The .deb build takes a second. The VM tree needs statically linked release
//! binaries in `target/static`: they are reused when present (set `CROSTINI_PACKAGING_REBUILD=1`
//! to rebuild them first) and built otherwise, which takes minutes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for `build-vm-image.sh` when it has to compile (a cold release build on 2 cores).
const VM_BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// Upper bound for the quick scripts (packaging an existing tree, one check).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_path_buf()
}

fn script(name: &str) -> PathBuf {
    repo_root().join("packaging").join(name)
}

/// Runs a command with a deadline, killing it when the deadline passes.
fn run(command: &mut Command, timeout: Duration) -> Output {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {description}: {e}"));
    // Drain both pipes on threads so a chatty build cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a packaging script and returns its stdout, failing the test with its output otherwise.
fn run_script(command: &mut Command, timeout: Duration) -> String {
    let output = run(command, timeout);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Builds the package into `dir` and returns the .deb's path.
fn build_deb_with(dir: &Path, envs: &[(&str, &str)]) -> PathBuf {
    let mut command = Command::new(script("build-deb.sh"));
    command.env("OUT_DIR", dir);
    for (key, value) in envs {
        command.env(key, value);
    }
    let stdout = run_script(&mut command, SCRIPT_TIMEOUT);
    let deb = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build-deb.sh prints the .deb path"),
    );
    assert!(deb.is_file(), "{} was not written", deb.display());
    deb
}

fn build_deb(dir: &Path) -> PathBuf {
    build_deb_with(dir, &[])
}

/// Runs one named check of check-package.sh against a freshly built package.
fn check_deb(check: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(dir.path());
    let stdout = run_script(
        Command::new(script("check-package.sh"))
            .arg(&deb)
            .arg(check),
        SCRIPT_TIMEOUT,
    );
    report(&stdout, check);
}

/// Prints skips (so they are visible in the test log) and asserts the check reported success.
fn report(stdout: &str, check: &str) {
    for line in stdout.lines().filter(|l| l.starts_with("skip ")) {
        eprintln!("{line}");
    }
    assert!(
        stdout.lines().any(|l| l == format!("ok {check}")),
        "check {check} did not report ok:\n{stdout}"
    );
}

/// Assembles the VM tree in `dir`, compiling the static binaries only when they are missing or a
/// rebuild was asked for. Returns the tree's path.
fn build_vm_image(dir: &Path) -> PathBuf {
    let release = repo_root()
        .join("target/static")
        .join(STATIC_TARGET)
        .join("release");
    let present = ["garcon", "tremplin"]
        .iter()
        .all(|name| release.join(name).is_file());
    let rebuild = std::env::var_os("CROSTINI_PACKAGING_REBUILD").is_some_and(|v| v == "1");
    let mut command = Command::new(script("build-vm-image.sh"));
    command.env("OUT_DIR", dir).env("TARGET", STATIC_TARGET);
    let timeout = if present && !rebuild {
        command.env("SKIP_BUILD", "1");
        SCRIPT_TIMEOUT
    } else {
        eprintln!(
            "building static release binaries in target/static (missing: {}, rebuild asked: {rebuild}); this takes minutes",
            !present
        );
        VM_BUILD_TIMEOUT
    };
    let stdout = run_script(&mut command, timeout);
    let vm = PathBuf::from(
        stdout
            .lines()
            .find(|l| l.ends_with("/vm"))
            .expect("build-vm-image.sh prints the tree path"),
    );
    assert!(vm.is_dir(), "{} was not written", vm.display());
    vm
}

/// Runs one named check of check-vm-image.sh against a freshly assembled VM tree.
fn check_vm(check: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vm = build_vm_image(dir.path());
    let stdout = run_script(
        Command::new(script("check-vm-image.sh"))
            .arg(&vm)
            .arg(check),
        SCRIPT_TIMEOUT,
    );
    report(&stdout, check);
}

// ---- container package (cros-garcon) ----

#[test]
fn deb_control_fields_match_upstream() {
    check_deb("control");
}

#[test]
fn deb_ships_every_upstream_file_and_the_wants_symlink() {
    check_deb("files");
}

#[test]
fn deb_file_modes_are_0644_except_the_handlers() {
    check_deb("modes");
}

#[test]
fn deb_conffiles_list_every_file_under_etc() {
    check_deb("conffiles");
}

#[test]
fn deb_user_unit_runs_garcon_server_with_upstream_environment() {
    check_deb("unit");
}

#[test]
fn deb_user_unit_passes_systemd_analyze_verify() {
    check_deb("unit-verify");
}

#[test]
fn deb_handlers_forward_arguments_to_garcon_client() {
    check_deb("handlers");
}

#[test]
fn deb_maintainer_scripts_register_and_remove_alternatives() {
    check_deb("maintscripts");
}

#[test]
fn deb_polkit_rules_let_group_sudo_manage_software() {
    check_deb("polkit");
}

#[test]
fn deb_portal_backend_files_name_the_cros_file_chooser() {
    check_deb("portal");
}

#[test]
fn deb_host_browser_desktop_entry_and_skel_conf() {
    check_deb("desktop");
}

#[test]
fn deb_dpkg_hook_touches_the_garcon_trigger() {
    check_deb("hook");
}

#[test]
fn deb_browser_is_exported_to_sessions_and_login_shells() {
    check_deb("environment");
}

#[test]
fn deb_ansible_callback_is_named_garcon_and_parses() {
    check_deb("ansible");
}

#[test]
fn deb_passes_lintian() {
    check_deb("lintian");
}

#[test]
fn deb_build_is_reproducible() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let a = std::fs::read(build_deb_with(first.path(), &epoch)).expect("first .deb");
    let b = std::fs::read(build_deb_with(second.path(), &epoch)).expect("second .deb");
    assert!(a == b, "two builds from the same tree differ");
}

#[test]
fn deb_check_rejects_a_version_older_than_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = build_deb_with(dir.path(), &[("DEB_VERSION", "0.28")]);
    let output = run(
        Command::new(script("check-package.sh"))
            .arg(&deb)
            .arg("control"),
        SCRIPT_TIMEOUT,
    );
    assert!(
        !output.status.success(),
        "check-package.sh accepted version 0.28"
    );
    assert!(
        text(&output.stderr).contains("FAIL control: Version 0.28"),
        "unexpected failure text: {}",
        text(&output.stderr)
    );
}

// ---- VM side (Termina layout, static binaries, tremplin init) ----

#[test]
fn vm_tree_has_the_termina_layout() {
    check_vm("layout");
}

#[test]
fn vm_binaries_are_statically_linked() {
    check_vm("static");
}

#[test]
fn vm_binaries_answer_help() {
    check_vm("help");
}

#[test]
fn vm_binaries_run_alone_in_an_empty_root() {
    check_vm("isolated");
}

#[test]
fn vm_tremplin_init_passes_subnet_and_lxd_environment() {
    check_vm("init");
}

#[test]
fn vm_tarball_mirrors_the_tree_with_root_ownership() {
    check_vm("tarball");
}

#[test]
fn vm_dev_overlay_profile_adds_the_guest_devices() {
    check_vm("overlay");
}
