//! PackageKit over D-Bus for garcon (garcon-service §5.4-5.7, garcon-host §4.6 and §12).
//!
//! * [`PackageKit`]: a client on the system bus (or any bus address). Operations:
//!   [`PackageKit::details_local`], [`PackageKit::details`], [`PackageKit::resolve`],
//!   [`PackageKit::owner_of_file`], [`PackageKit::install`], [`PackageKit::remove`],
//!   [`PackageKit::remove_owner_of`], the background-update transactions
//!   [`PackageKit::refresh_cache`], [`PackageKit::get_updates`], [`PackageKit::update_packages`],
//!   and the raw [`PackageKit::begin`] transaction.
//! * Every transaction subscribes to its signals before issuing the request, watches
//!   `NameOwnerChanged` so that a daemon dying mid-transaction fails it ("PackageKit D-Bus service
//!   died, abort operation"), bounds every method call ([`Timeouts::call`]) and the whole
//!   transaction ([`Timeouts::transaction`]).
//! * [`PackageIdCache`]: cached desktop-file → package-id lookups for the app list.
//!
//! No gRPC here: results are plain types; garcon translates them.

pub mod client;
pub mod details;
pub mod enums;
pub mod error;
pub mod owner_cache;
pub mod package_id;
pub mod proxy;
pub mod transaction;
pub mod updates;

#[cfg(feature = "test-env")]
pub mod testenv;

pub use client::{
    no_owner_text, Completion, ConnectError, InstallNotice, InstallPhase, InstallSource,
    PackageKit, RemoveNotice,
};
pub use details::PackageDetails;
pub use error::{DbusError, Failure, GeneralError};
pub use owner_cache::PackageIdCache;
pub use package_id::{PackageId, PackageIdError};
pub use transaction::{Event, Properties, Request, Timeouts, Transaction};
pub use updates::Update;
/// The zbus this crate is built on (for callers handing in a `zbus::Connection`).
pub use zbus;
