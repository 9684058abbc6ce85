//! PackageKit enum values garcon uses (from PackageKit's `pk-enum.h`), and the raw argument values
//! the reference sends (garcon-service §5.4).

/// `PkExitEnum::SUCCESS`: the only successful `Finished` exit code.
pub const EXIT_SUCCESS: u32 = 1;

/// `PkStatusEnum::REMOVE`.
pub const STATUS_REMOVE: u32 = 6;
/// `PkStatusEnum::DOWNLOAD`.
pub const STATUS_DOWNLOAD: u32 = 8;
/// `PkStatusEnum::INSTALL`.
pub const STATUS_INSTALL: u32 = 9;
/// `PkStatusEnum::FINISHED`.
pub const STATUS_FINISHED: u32 = 18;

/// `PkInfoEnum::SECURITY`: a `GetUpdates` package that is a security update (the apt backend
/// reports it for updates from an archive whose suite ends in `-security`, or labelled
/// `Debian-Security`).
pub const INFO_SECURITY: u32 = 8;

/// `Percentage` value meaning "unknown".
pub const PERCENTAGE_UNKNOWN: u32 = 101;

/// Filter argument the reference passes to `Resolve` (the raw enum value 1, i.e. the "unknown"
/// bit; behaves as "no filter" with the apt backend). Kept for parity (§5.4 filter quirk).
pub const FILTER_RESOLVE: u64 = 1;
/// Filter argument the reference passes to `SearchFiles` (raw enum value 2, i.e. the "none" bit,
/// not "installed"). Kept for parity (§5.4 filter quirk).
pub const FILTER_SEARCH_FILES: u64 = 2;

/// Filter for `GetUpdates`: the "none" bit (`1 << PK_FILTER_ENUM_NONE`), as `pkcon get-updates`
/// sends it.
pub const FILTER_GET_UPDATES: u64 = 1 << 1;

/// Transaction flags for background updates: ONLY_TRUSTED (`1 << 1`), so that an automatic
/// update never installs from an unauthenticated source.
pub const TRANSACTION_FLAGS_ONLY_TRUSTED: u64 = 1 << 1;

/// Transaction flags for installs and removals: none. In particular not ONLY_TRUSTED (2), which
/// would refuse unsigned local `.deb` files.
pub const TRANSACTION_FLAGS_NONE: u64 = 0;

/// Hints set on every transaction (a failure to set them is logged and ignored).
pub const HINTS: [&str; 2] = ["locale=en_US.UTF-8", "interactive=false"];

/// A percentage as reported to the host: 101 ("unknown") becomes 0, everything else is passed
/// through unchanged.
pub fn host_percent(percentage: u32) -> u32 {
    if percentage == PERCENTAGE_UNKNOWN {
        0
    } else {
        percentage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_percent_maps_unknown_to_zero() {
        assert_eq!(host_percent(PERCENTAGE_UNKNOWN), 0);
    }

    #[test]
    fn host_percent_passes_known_values_through() {
        assert_eq!(host_percent(0), 0);
        assert_eq!(host_percent(80), 80);
        assert_eq!(host_percent(100), 100);
    }
}
