//! zbus proxies for the parts of PackageKit's D-Bus API garcon uses.
//!
//! Written from PackageKit's interface XML (`/usr/share/dbus-1/interfaces/
//! org.freedesktop.PackageKit.xml` and `org.freedesktop.PackageKit.Transaction.xml`, PackageKit
//! 1.2). Only the members garcon calls or listens to are declared; argument names and types follow
//! the XML.

use std::collections::HashMap;

use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// Well-known bus name of the PackageKit daemon.
pub const SERVICE: &str = "org.freedesktop.PackageKit";
/// Object path of the daemon's root object.
pub const ROOT_PATH: &str = "/org/freedesktop/PackageKit";
/// Interface of the root object.
pub const ROOT_INTERFACE: &str = "org.freedesktop.PackageKit";
/// Interface of every transaction object.
pub const TRANSACTION_INTERFACE: &str = "org.freedesktop.PackageKit.Transaction";

/// `org.freedesktop.PackageKit` on `/org/freedesktop/PackageKit`.
#[zbus::proxy(
    interface = "org.freedesktop.PackageKit",
    default_service = "org.freedesktop.PackageKit",
    default_path = "/org/freedesktop/PackageKit",
    gen_blocking = false
)]
pub trait PackageKit {
    /// Creates a transaction object and returns its path.
    fn create_transaction(&self) -> zbus::Result<OwnedObjectPath>;

    /// Daemon state as free text (debugging aid).
    fn get_daemon_state(&self) -> zbus::Result<String>;

    /// Name of the loaded backend (`apt`, `dummy`, ...).
    #[zbus(property)]
    fn backend_name(&self) -> zbus::Result<String>;

    /// PackageKit major version.
    #[zbus(property)]
    fn version_major(&self) -> zbus::Result<u32>;

    /// PackageKit minor version.
    #[zbus(property)]
    fn version_minor(&self) -> zbus::Result<u32>;
}

/// `org.freedesktop.PackageKit.Transaction` on a path returned by `CreateTransaction`.
#[zbus::proxy(
    interface = "org.freedesktop.PackageKit.Transaction",
    default_service = "org.freedesktop.PackageKit",
    gen_blocking = false
)]
pub trait Transaction {
    /// Hints such as `locale=en_US.UTF-8` and `interactive=false`.
    fn set_hints(&self, hints: &[&str]) -> zbus::Result<()>;

    /// Cancels the transaction if the backend allows it.
    fn cancel(&self) -> zbus::Result<()>;

    /// Details (`Details` signal) of local package files.
    fn get_details_local(&self, files: &[&str]) -> zbus::Result<()>;

    /// Details (`Details` signal) of package ids.
    fn get_details(&self, package_ids: &[&str]) -> zbus::Result<()>;

    /// Resolves package names into package ids (`Package` signals).
    fn resolve(&self, filter: u64, packages: &[&str]) -> zbus::Result<()>;

    /// Packages owning the given files (`Package` signals).
    fn search_files(&self, filter: u64, values: &[&str]) -> zbus::Result<()>;

    /// Installs local package files.
    fn install_files(&self, transaction_flags: u64, full_paths: &[&str]) -> zbus::Result<()>;

    /// Installs packages by id.
    fn install_packages(&self, transaction_flags: u64, package_ids: &[&str]) -> zbus::Result<()>;

    /// Refreshes the package lists (`force` = even if they are fresh).
    fn refresh_cache(&self, force: bool) -> zbus::Result<()>;

    /// Available updates (`Package` signals whose `info` is the update kind, e.g. SECURITY).
    fn get_updates(&self, filter: u64) -> zbus::Result<()>;

    /// Updates packages to the given (newer) package ids.
    fn update_packages(&self, transaction_flags: u64, package_ids: &[&str]) -> zbus::Result<()>;

    /// Removes packages by id.
    fn remove_packages(
        &self,
        transaction_flags: u64,
        package_ids: &[&str],
        allow_deps: bool,
        autoremove: bool,
    ) -> zbus::Result<()>;

    /// Details of one package (keys `package-id`, `summary`, `description`, `license`, `url`,
    /// `size`, `group`, ...).
    #[zbus(signal)]
    fn details(&self, data: HashMap<String, OwnedValue>) -> zbus::Result<()>;

    /// An error; the transaction still ends with `Finished`.
    #[zbus(signal)]
    fn error_code(&self, code: u32, details: String) -> zbus::Result<()>;

    /// End of the transaction (`exit` is a `PkExitEnum`, 1 = success).
    #[zbus(signal)]
    fn finished(&self, exit: u32, runtime: u32) -> zbus::Result<()>;

    /// One package (`info` is a `PkInfoEnum`).
    #[zbus(signal)]
    fn package(&self, info: u32, package_id: String, summary: String) -> zbus::Result<()>;

    /// Several packages at once (newer daemons batch `Package`).
    #[zbus(signal)]
    fn packages(&self, packages: Vec<(u32, String, String)>) -> zbus::Result<()>;

    /// Current `PkStatusEnum`.
    #[zbus(property)]
    fn status(&self) -> zbus::Result<u32>;

    /// Whole-transaction percentage, 101 = unknown.
    #[zbus(property)]
    fn percentage(&self) -> zbus::Result<u32>;
}
