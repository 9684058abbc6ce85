//! PackageKit package ids: `name;version;arch;data`.

use std::fmt;
use std::str::FromStr;

/// A parsed package id. Garcon passes ids to the host verbatim; this type exists for callers that
/// want the parts (the host splits on `;` and uses the name and version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackageId {
    /// Package name, never empty.
    pub name: String,
    /// Version, opaque (may contain an epoch `:` and `-`).
    pub version: String,
    /// Architecture (`amd64`, `all`, ...), may be empty.
    pub arch: String,
    /// Backend data: origin or state (`local`, `manual:local`, `+manual:local`, a repository).
    pub data: String,
}

/// Why a string is not a package id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageIdError {
    /// Fewer than four `;`-separated fields.
    #[error("package id {id:?} does not have four ';'-separated fields")]
    FieldCount {
        /// The rejected input.
        id: String,
    },
    /// The name field is empty.
    #[error("package id {id:?} has an empty name")]
    EmptyName {
        /// The rejected input.
        id: String,
    },
}

impl PackageId {
    /// Parses `name;version;arch;data` (`splitn(4, ';')`: any further `;` stay in `data`).
    pub fn parse(id: &str) -> Result<Self, PackageIdError> {
        let mut parts = id.splitn(4, ';');
        let (Some(name), Some(version), Some(arch), Some(data)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PackageIdError::FieldCount { id: id.to_owned() });
        };
        if name.is_empty() {
            return Err(PackageIdError::EmptyName { id: id.to_owned() });
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: arch.to_owned(),
            data: data.to_owned(),
        })
    }
}

impl FromStr for PackageId {
    type Err = PackageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};{};{};{}",
            self.name, self.version, self.arch, self.data
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_local_file_id() {
        let id = PackageId::parse("garcon-fixture;1.2-3;all;local").unwrap();
        assert_eq!(id.name, "garcon-fixture");
        assert_eq!(id.version, "1.2-3");
        assert_eq!(id.arch, "all");
        assert_eq!(id.data, "local");
    }

    #[test]
    fn parse_keeps_epoch_and_extra_separators_opaque() {
        let id = PackageId::parse("vim;2:9.0.1378-2;amd64;debian-stable;main").unwrap();
        assert_eq!(id.version, "2:9.0.1378-2");
        assert_eq!(id.data, "debian-stable;main");
    }

    #[test]
    fn parse_accepts_empty_trailing_fields() {
        let id = PackageId::parse("x;;;").unwrap();
        assert_eq!(
            (id.version.as_str(), id.arch.as_str(), id.data.as_str()),
            ("", "", "")
        );
    }

    #[test]
    fn parse_rejects_three_fields() {
        assert_eq!(
            PackageId::parse("a;1;all"),
            Err(PackageIdError::FieldCount {
                id: "a;1;all".into()
            })
        );
    }

    #[test]
    fn parse_rejects_empty_name() {
        assert_eq!(
            PackageId::parse(";1;all;local"),
            Err(PackageIdError::EmptyName {
                id: ";1;all;local".into()
            })
        );
    }

    #[test]
    fn display_round_trips() {
        let text = "garcon-fixture;1.2-3;all;manual:local";
        assert_eq!(PackageId::parse(text).unwrap().to_string(), text);
    }
}
