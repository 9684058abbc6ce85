//! Test support (feature `test-env`): a private system bus with polkitd and a real packagekitd
//! (`tests/packagekit/start-env.sh`), the `.deb` fixtures (`tests/packagekit/build-fixtures.sh`),
//! and dpkg checks. Used by this crate's and garcon's integration tests.
//!
//! Every [`TestEnv`] holds an exclusive lock on [`LOCK_FILE`] for its whole life, so tests that
//! install into the machine's dpkg database never overlap (across test processes too, e.g. under
//! cargo-nextest). On drop it stops its daemons and purges every installed `crostini-fixture-*`
//! package. If the test process dies, the environment's guard process stops the daemons.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{PackageKit, Timeouts};

/// Lock file serialising PackageKit test environments machine-wide.
pub const LOCK_FILE: &str = "/tmp/crostini-packagekit-tests.lock";

/// Prefix of every fixture package name.
pub const FIXTURE_PREFIX: &str = "crostini-fixture-";

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/packagekit").join(name)
}

/// Why a test cannot run here, or `None`. Tests print the reason and return early.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "skipped: the PackageKit tests need root (real packagekitd installing into the real \
             dpkg database); run them as root"
                .to_owned(),
        );
    }
    None
}

/// Which daemons to start.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// packagekitd backend; `None` = the default (apt).
    pub backend: Option<String>,
    /// Start polkitd.
    pub polkitd: bool,
    /// Start packagekitd.
    pub packagekitd: bool,
    /// `APT_CONFIG` for packagekitd (e.g. [`UpdateRepo::apt_config`]: its own sources, lists and
    /// cache, so that a refresh neither reaches the network nor touches the machine's apt state).
    pub apt_config: Option<PathBuf>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            backend: None,
            polkitd: true,
            packagekitd: true,
            apt_config: None,
        }
    }
}

/// A running private-bus environment.
pub struct TestEnv {
    dir: tempfile::TempDir,
    address: String,
    _lock: Flock<File>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// Takes the machine-wide lock, purges leftover fixture packages, and starts the environment.
    /// Panics (test helper) when it cannot.
    pub fn start(options: EnvOptions) -> Self {
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .unwrap_or_else(|e| panic!("open {LOCK_FILE}: {e}"));
        let lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("flock {LOCK_FILE}: {e}"));
        purge_fixtures();
        let dir = tempfile::Builder::new()
            .prefix("crostini-pk-env.")
            .tempdir()
            .expect("create the environment directory");
        let mut env = Self {
            address: String::new(),
            dir,
            _lock: lock,
        };
        env.address = env.run_start(&options);
        env
    }

    fn run_start(&self, options: &EnvOptions) -> String {
        let mut cmd = Command::new(script("start-env.sh"));
        cmd.arg("--owner-pid").arg(std::process::id().to_string());
        if let Some(backend) = &options.backend {
            cmd.arg("--backend").arg(backend);
        }
        if !options.polkitd {
            cmd.arg("--no-polkitd");
        }
        if !options.packagekitd {
            cmd.arg("--no-packagekitd");
        }
        if let Some(apt_config) = &options.apt_config {
            cmd.env("APT_CONFIG", apt_config);
        }
        cmd.arg(self.dir.path());
        let output = cmd.output().expect("run tests/packagekit/start-env.sh");
        assert!(
            output.status.success(),
            "start-env.sh failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        self.env_value("DBUS_SYSTEM_BUS_ADDRESS")
            .expect("start-env.sh wrote no DBUS_SYSTEM_BUS_ADDRESS")
    }

    /// The private bus address (`unix:path=...`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The environment directory (configs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client on the private bus.
    pub async fn client(&self, timeouts: Timeouts) -> PackageKit {
        PackageKit::connect(&self.address, timeouts)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.address))
    }

    fn env_value(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("env")).ok()?;
        text.lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .next_back()
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
    }

    fn pid(&self, key: &str) -> Option<Pid> {
        self.env_value(key)?.parse().ok().map(Pid::from_raw)
    }

    /// packagekitd's PID.
    pub fn packagekitd_pid(&self) -> Option<Pid> {
        self.pid("PACKAGEKITD_PID")
    }

    /// Kills packagekitd (SIGKILL, by PID) and waits until it is gone.
    pub fn kill_packagekitd(&self) {
        kill_and_wait(
            self.packagekitd_pid().expect("packagekitd pid"),
            Signal::SIGKILL,
        );
        self.wait_name_gone("org.freedesktop.PackageKit");
    }

    /// Stops polkitd (SIGTERM, by PID) and waits until it is gone, including its bus name.
    pub fn stop_polkitd(&self) {
        kill_and_wait(
            self.pid("POLKITD_PID").expect("polkitd pid"),
            Signal::SIGTERM,
        );
        self.wait_name_gone("org.freedesktop.PolicyKit1");
    }

    /// Whether `name` has an owner on the private bus.
    pub fn has_owner(&self, name: &str) -> bool {
        let output = Command::new("dbus-send")
            .arg(format!("--bus={}", self.address))
            .args([
                "--print-reply",
                "--reply-timeout=2000",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .output()
            .expect("run dbus-send");
        String::from_utf8_lossy(&output.stdout).contains("boolean true")
    }

    /// Waits until the bus has dropped `name` (the owner's exit is noticed asynchronously).
    fn wait_name_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.has_owner(name) {
            assert!(
                Instant::now() < deadline,
                "{name} still owned 10 s after its daemon exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts whatever daemons of `options` are not running (e.g. packagekitd after a kill).
    pub fn restart_missing(&self, options: &EnvOptions) {
        self.run_start(options);
    }

    /// A daemon log (`packagekitd.log`, `polkitd.log`, `dbus-daemon.log`), for failure messages.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let status = Command::new(script("stop-env.sh"))
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("stop-env.sh {}: {status:?}", self.dir.path().display());
        }
        purge_fixtures();
    }
}

fn kill_and_wait(pid: Pid, signal: Signal) {
    let _ = kill(pid, signal);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The daemons are not our children (start-env.sh backgrounded them), so poll for the PID.
    while kill(pid, None).is_ok() && !is_zombie(pid) {
        assert!(
            Instant::now() < deadline,
            "pid {pid} still alive 10 s after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The built fixtures.
#[derive(Debug)]
pub struct Fixtures {
    dir: tempfile::TempDir,
    /// `crostini-fixture-hello_1.2-3_all.deb`: installs cleanly, ships
    /// `/usr/share/applications/crostini-fixture-hello.desktop`.
    pub hello: PathBuf,
    /// `crostini-fixture-unsat_1.0_all.deb`: depends on a package that exists nowhere.
    pub unsat: PathBuf,
    /// `crostini-fixture-corrupt_1.0_all.deb`: a few text bytes.
    pub corrupt: PathBuf,
    /// `not-a-package.txt`: an ordinary text file.
    pub not_a_package: PathBuf,
}

/// Package name of [`Fixtures::hello`].
pub const HELLO: &str = "crostini-fixture-hello";
/// Desktop file shipped by [`HELLO`].
pub const HELLO_DESKTOP: &str = "/usr/share/applications/crostini-fixture-hello.desktop";
/// Package name of [`Fixtures::unsat`].
pub const UNSAT: &str = "crostini-fixture-unsat";

impl Fixtures {
    /// Builds every fixture into a fresh temporary directory.
    pub fn build() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crostini-pk-fixtures.")
            .tempdir()
            .expect("create the fixture directory");
        let output = Command::new(script("build-fixtures.sh"))
            .arg(dir.path())
            .output()
            .expect("run tests/packagekit/build-fixtures.sh");
        assert!(
            output.status.success(),
            "build-fixtures.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = |name: &str| {
            let p = dir.path().join(name);
            assert!(p.is_file(), "fixture {} was not built", p.display());
            p
        };
        Self {
            hello: path("crostini-fixture-hello_1.2-3_all.deb"),
            unsat: path("crostini-fixture-unsat_1.0_all.deb"),
            corrupt: path("crostini-fixture-corrupt_1.0_all.deb"),
            not_a_package: path("not-a-package.txt"),
            dir,
        }
    }

    /// The fixture directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The local apt repositories of the background-update tests
/// (`tests/packagekit/build-update-repo.sh`): version 1 of three packages to install, and
/// repositories with version 2 of each.
#[derive(Debug)]
pub struct UpdateRepo {
    dir: tempfile::TempDir,
}

/// From the repository with Origin `Google`, Suite `stable` (id data `google-stable-main`).
pub const UPD_CROS: &str = "crostini-fixture-upd-cros";
/// From Origin `Debian`, Suite `x-security` (GetUpdates info SECURITY).
pub const UPD_SECURITY: &str = "crostini-fixture-upd-security";
/// From Origin `Example`, Suite `stable` (info NORMAL, data `example-stable-main`).
pub const UPD_OTHER: &str = "crostini-fixture-upd-other";

impl UpdateRepo {
    /// Builds the packages and repositories into a fresh temporary directory.
    pub fn build() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crostini-pk-update-repo.")
            .tempdir()
            .expect("create the repository directory");
        let output = Command::new(script("build-update-repo.sh"))
            .arg(dir.path())
            .output()
            .expect("run tests/packagekit/build-update-repo.sh");
        assert!(
            output.status.success(),
            "build-update-repo.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    /// The `APT_CONFIG` file for packagekitd.
    pub fn apt_config(&self) -> PathBuf {
        self.dir.path().join("apt.conf")
    }

    /// Appends a `deb ...` line to the sources packagekitd reads (e.g. a loopback HTTP source).
    pub fn add_source(&self, line: &str) {
        use std::io::Write;
        let path = self.dir.path().join("sources.list");
        let mut file = File::options()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        writeln!(file, "{line}").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Installs version 1 of `package` with dpkg.
    pub fn install_v1(&self, package: &str) {
        let deb = self.dir.path().join(format!("v1/{package}_1_all.deb"));
        let output = Command::new("dpkg")
            .arg("-i")
            .arg(&deb)
            .output()
            .expect("run dpkg -i");
        assert!(
            output.status.success(),
            "dpkg -i {}: {}",
            deb.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The installed version of `package`, or `None` when it is not installed.
pub fn installed_version(package: &str) -> Option<String> {
    if !is_installed(package) {
        return None;
    }
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .expect("run dpkg-query");
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `dpkg-query`'s `${Status}` for `package` (`install ok installed` when installed), or `None`
/// when dpkg does not know it.
pub fn dpkg_status(package: &str) -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .expect("run dpkg-query");
    let status = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !status.is_empty()).then_some(status)
}

/// Whether `package` is installed (`dpkg -s` reports `install ok installed`).
pub fn is_installed(package: &str) -> bool {
    dpkg_status(package).as_deref() == Some("install ok installed")
}

/// Installed (or half-installed) fixture packages.
pub fn installed_fixtures() -> Vec<String> {
    let output = Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Package} ${db:Status-Abbrev}\n",
            &format!("{FIXTURE_PREFIX}*"),
        ])
        .output()
        .expect("run dpkg-query");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, status) = line.split_once(' ')?;
            // "un " = unknown/not installed; anything else has files or state to remove.
            (name.starts_with(FIXTURE_PREFIX) && !status.starts_with("un")).then(|| name.to_owned())
        })
        .collect()
}

/// Purges every installed `crostini-fixture-*` package (retrying while dpkg is locked).
pub fn purge_fixtures() {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = installed_fixtures();
        if left.is_empty() {
            return;
        }
        let output = Command::new("dpkg")
            .arg("--purge")
            .args(&left)
            .output()
            .expect("run dpkg --purge");
        if output.status.success() && installed_fixtures().is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "cannot purge fixture packages {left:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
