//! The transactions of garcon's background updates (garcon-host §12): `RefreshCache`,
//! `GetUpdates`, `UpdatePackages`. Each is bounded by the client's [`crate::Timeouts`] (every
//! call, and the whole transaction by its watchdog).

use crate::client::PackageKit;
use crate::enums::{EXIT_SUCCESS, INFO_SECURITY};
use crate::error::Failure;
use crate::transaction::{Event, Request};

/// One available update from `GetUpdates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// `PkInfoEnum` of the update (e.g. [`INFO_SECURITY`], NORMAL 5, BUGFIX 6).
    pub info: u32,
    /// The new version's id, `name;version;arch;data`.
    pub package_id: String,
}

impl Update {
    /// Whether PackageKit flagged it as a security update.
    pub fn is_security(&self) -> bool {
        self.info == INFO_SECURITY
    }
}

impl PackageKit {
    /// `RefreshCache(force)`: success iff `Finished` with exit 1, else the first `ErrorCode`.
    pub async fn refresh_cache(&self, force: bool) -> Result<(), Failure> {
        self.collect_packages(Request::RefreshCache(force))
            .await
            .map(drop)
    }

    /// `GetUpdates`: every `Package` signal of the transaction, in order.
    pub async fn get_updates(&self) -> Result<Vec<Update>, Failure> {
        self.collect_packages(Request::GetUpdates).await
    }

    /// `UpdatePackages(ONLY_TRUSTED, ids)`: success iff `Finished` with exit 1.
    pub async fn update_packages(&self, package_ids: &[&str]) -> Result<(), Failure> {
        self.collect_packages(Request::UpdatePackages(package_ids))
            .await
            .map(drop)
    }

    /// Runs `request` to its end, collecting `Package` signals; fails with the first `ErrorCode`
    /// or the non-success exit code.
    async fn collect_packages(&self, request: Request<'_>) -> Result<Vec<Update>, Failure> {
        let mut transaction = self.begin(request, false).await?;
        let mut packages = Vec::new();
        let mut error = None;
        loop {
            match transaction.next_event().await? {
                Event::Package {
                    info, package_id, ..
                } => packages.push(Update { info, package_id }),
                Event::ErrorCode { code, details } => {
                    error.get_or_insert(Failure::PackageKit { code, details });
                }
                Event::Finished { exit, .. } if exit == EXIT_SUCCESS && error.is_none() => {
                    return Ok(packages)
                }
                Event::Finished { exit, .. } => {
                    return Err(error.unwrap_or(Failure::Exit {
                        operation: request.method(),
                        exit,
                    }))
                }
                Event::Details(_) | Event::Properties(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_info_security_counts_as_a_security_update() {
        let update = |info| Update {
            info,
            package_id: "p;2;amd64;x".into(),
        };
        assert!(update(INFO_SECURITY).is_security());
        for info in [0, 2, 5, 6, 7, 9] {
            assert!(!update(info).is_security(), "info {info}");
        }
    }
}
