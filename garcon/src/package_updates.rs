//! Background package updates (garcon-host §12): 5 minutes after start and then daily,
//! PackageKit `RefreshCache`, `GetUpdates`, then `UpdatePackages` for the Google-provided
//! packages (ids ending in `;google-stable-main`) and, unless disabled, the security updates.
//!
//! * The switches `DisableAutomaticCrosPackageUpdates` / `DisableAutomaticSecurityUpdates` of
//!   `cros-garcon.conf` (`$XDG_CONFIG_HOME`, else `~/.config`) are read at each run
//!   ([`read_switches`]); the value `true` disables. Both disabled: the run does nothing.
//! * The busy flag shared with user installs ([`crate::packages::BusyFlag`]): a run never starts
//!   while a user operation holds it (it waits for the next slot); the refresh and the query run
//!   without it (a user's install then proceeds at once); the flag is taken only for
//!   `UpdatePackages`, so a user's InstallLinuxPackage gets INSTALL_ALREADY_ACTIVE only while that
//!   transaction runs. If a user operation started during the refresh or query, the run yields.
//! * Every step is bounded ([`UpdateLimits`]); failures are logged; nothing goes to the host.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crostini_common::untrusted_file::read_capped_string;
use crostini_packagekit::{Failure, PackageIdCache, PackageKit, Update};
use tokio::task::JoinHandle;

use crate::packages::BusyFlag;

/// The configuration file's name, in the user's configuration directory.
pub const CONFIG_FILE_NAME: &str = "cros-garcon.conf";
/// Largest configuration file read (a larger one is ignored: defaults apply).
pub const CONFIG_CAP: u64 = 64 * 1024;
/// Key disabling updates of the Google-provided packages.
pub const DISABLE_CROS_KEY: &str = "DisableAutomaticCrosPackageUpdates";
/// Key disabling security updates.
pub const DISABLE_SECURITY_KEY: &str = "DisableAutomaticSecurityUpdates";
/// What ends the package id of a Google-provided package (the apt backend's data field is
/// `<origin>-<suite>-<component>`, lower case: Origin `Google`, Suite `stable`, component `main`).
pub const CROS_PACKAGE_ID_SUFFIX: &str = ";google-stable-main";
/// First run after start.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(5 * 60);
/// Time between runs.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Which kinds of update a run applies (both on unless the configuration disables them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateSwitches {
    /// Packages whose id ends in [`CROS_PACKAGE_ID_SUFFIX`].
    pub cros: bool,
    /// Updates PackageKit flags as security updates.
    pub security: bool,
}

impl Default for UpdateSwitches {
    fn default() -> Self {
        Self {
            cros: true,
            security: true,
        }
    }
}

impl UpdateSwitches {
    /// Parses `key=value` lines (blank lines and `#` comments ignored, spaces around key and
    /// value trimmed); a key set to `true` disables its kind, any other value leaves it on. The
    /// last occurrence of a key wins.
    pub fn parse(text: &str) -> Self {
        let mut switches = Self::default();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let enabled = value.trim() != "true";
            match key.trim() {
                DISABLE_CROS_KEY => switches.cros = enabled,
                DISABLE_SECURITY_KEY => switches.security = enabled,
                _ => {}
            }
        }
        switches
    }

    /// Whether a run has anything to look for.
    pub fn any(&self) -> bool {
        self.cros || self.security
    }
}

/// `$XDG_CONFIG_HOME/cros-garcon.conf` (when set and absolute), else
/// `$HOME/.config/cros-garcon.conf`; `None` without either.
pub fn config_path(xdg_config_home: Option<OsString>, home: Option<&Path>) -> Option<PathBuf> {
    let dir = xdg_config_home
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| home.map(|home| home.join(".config")))?;
    Some(dir.join(CONFIG_FILE_NAME))
}

/// The switches from `path` (read through [`read_capped_string`]: a missing, non-regular,
/// oversized or unreadable file means the defaults, logged unless simply missing).
pub fn read_switches(path: Option<&Path>) -> UpdateSwitches {
    let Some(path) = path else {
        return UpdateSwitches::default();
    };
    match read_capped_string(path, CONFIG_CAP) {
        Ok(text) => UpdateSwitches::parse(&text),
        Err(err) if err.is_not_found() => UpdateSwitches::default(),
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot read the update configuration; defaults apply");
            UpdateSwitches::default()
        }
    }
}

/// The package ids a run updates: Google-provided ones when `switches.cros`, security updates
/// when `switches.security`; each id once, in `GetUpdates` order.
pub fn select_updates(updates: &[Update], switches: UpdateSwitches) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::new();
    for update in updates {
        let wanted = (switches.cros && update.package_id.ends_with(CROS_PACKAGE_ID_SUFFIX))
            || (switches.security && update.is_security());
        if wanted && !chosen.contains(&update.package_id) {
            chosen.push(update.package_id.clone());
        }
    }
    chosen
}

/// When runs happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateSchedule {
    /// From the start of the loop to the first run.
    pub initial_delay: Duration,
    /// From the start of one run to the start of the next.
    pub interval: Duration,
}

impl Default for UpdateSchedule {
    fn default() -> Self {
        Self {
            initial_delay: DEFAULT_INITIAL_DELAY,
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// Upper bounds of each step (besides the client's own call and watchdog limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLimits {
    pub refresh: Duration,
    pub get_updates: Duration,
    pub update: Duration,
}

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(10 * 60),
            get_updates: Duration::from_secs(5 * 60),
            update: Duration::from_secs(60 * 60),
        }
    }
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Both switches off: nothing was done.
    Disabled,
    /// A user operation was running when the run was due: nothing was done.
    SkippedBusy,
    /// No update matched.
    NothingToUpdate,
    /// A user operation started during the refresh or query: the update was left for the next
    /// run.
    Yielded,
    /// `UpdatePackages` succeeded for these ids.
    Updated(Vec<String>),
    /// A step failed or timed out.
    Failed { step: &'static str, reason: String },
}

/// The background updater of one garcon process.
#[derive(Clone)]
pub struct BackgroundUpdates {
    packagekit: PackageKit,
    busy: BusyFlag,
    config: Option<PathBuf>,
    limits: UpdateLimits,
    owners: Option<Arc<PackageIdCache>>,
}

impl std::fmt::Debug for BackgroundUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundUpdates")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl BackgroundUpdates {
    /// Updates through `packagekit`, sharing `busy` with user operations, reading the switches
    /// from `config` at each run.
    pub fn new(packagekit: PackageKit, busy: BusyFlag, config: Option<PathBuf>) -> Self {
        Self {
            packagekit,
            busy,
            config,
            limits: UpdateLimits::default(),
            owners: None,
        }
    }

    /// Overrides the step limits.
    pub fn with_limits(mut self, limits: UpdateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Clears `owners` after each update (package ids carry versions).
    pub fn with_owner_cache(mut self, owners: Arc<PackageIdCache>) -> Self {
        self.owners = Some(owners);
        self
    }

    /// One run (see the module documentation). Logs its outcome.
    pub async fn run_once(&self) -> RunOutcome {
        let outcome = self.run_steps().await;
        match &outcome {
            RunOutcome::Failed { step, reason } => {
                tracing::warn!(step, reason, "background package update failed")
            }
            outcome => tracing::info!(?outcome, "background package update run"),
        }
        outcome
    }

    async fn run_steps(&self) -> RunOutcome {
        let switches = read_switches(self.config.as_deref());
        if !switches.any() {
            return RunOutcome::Disabled;
        }
        if self.busy.is_set() {
            return RunOutcome::SkippedBusy;
        }
        if let Err(outcome) = step(
            "RefreshCache",
            self.limits.refresh,
            self.packagekit.refresh_cache(false),
        )
        .await
        {
            return outcome;
        }
        let updates = match step(
            "GetUpdates",
            self.limits.get_updates,
            self.packagekit.get_updates(),
        )
        .await
        {
            Ok(updates) => updates,
            Err(outcome) => return outcome,
        };
        let chosen = select_updates(&updates, switches);
        if chosen.is_empty() {
            return RunOutcome::NothingToUpdate;
        }
        let Some(_guard) = self.busy.try_acquire() else {
            return RunOutcome::Yielded;
        };
        tracing::info!(?chosen, "background package update started");
        let ids: Vec<&str> = chosen.iter().map(String::as_str).collect();
        let result = step(
            "UpdatePackages",
            self.limits.update,
            self.packagekit.update_packages(&ids),
        )
        .await;
        if let Some(owners) = &self.owners {
            owners.clear();
        }
        match result {
            Ok(()) => RunOutcome::Updated(chosen),
            Err(outcome) => outcome,
        }
    }

    /// Runs [`Self::run_once`] after `schedule.initial_delay` and then every `schedule.interval`
    /// until the task is aborted.
    pub fn spawn(self, schedule: UpdateSchedule) -> JoinHandle<()> {
        tokio::spawn(async move {
            tokio::time::sleep(schedule.initial_delay).await;
            self.run_every(schedule.interval).await;
        })
    }

    /// Runs [`Self::run_once`] now and then every `interval` (start to start; a run longer than
    /// the interval is followed at once by the next), forever.
    pub async fn run_every(&self, interval: Duration) {
        loop {
            let next = tokio::time::Instant::now() + interval;
            self.run_once().await;
            tokio::time::sleep_until(next).await;
        }
    }
}

/// Runs one PackageKit step within `limit`; a failure or timeout becomes the run's outcome.
async fn step<T>(
    name: &'static str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, RunOutcome> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(failure)) => Err(RunOutcome::Failed {
            step: name,
            reason: failure.to_string(),
        }),
        Err(_) => Err(RunOutcome::Failed {
            step: name,
            reason: format!("no result within {limit:?}"),
        }),
    }
}

#[cfg(test)]
mod tests;
