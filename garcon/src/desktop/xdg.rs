//! XDG data directories (garcon-service §1.5, garcon-host §4.1).

use std::ffi::OsStr;
use std::path::PathBuf;

/// Default `XDG_DATA_DIRS` when the variable is unset or empty.
pub const DEFAULT_DATA_DIRS: [&str; 2] = ["/usr/local/share", "/usr/share"];

/// The ordered list of XDG data directories every lookup uses.
///
/// Order: the entries of `XDG_DATA_DIRS` (trimmed, empty ones dropped; default
/// `/usr/local/share:/usr/share`), then **last** `XDG_DATA_HOME` or `$HOME/.local/share`.
/// No de-duplication and no absoluteness check, exactly as upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdgDirs {
    data_dirs: Vec<PathBuf>,
}

/// ASCII whitespace as Chromium's `TrimWhitespaceASCII` defines it (includes `\v`).
pub(crate) fn is_ascii_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

impl XdgDirs {
    /// Reads `XDG_DATA_DIRS`, `XDG_DATA_HOME` and `HOME` from the process environment.
    pub fn from_env() -> Self {
        let get = |name: &str| std::env::var_os(name);
        Self::from_vars(
            get("XDG_DATA_DIRS").as_deref(),
            get("XDG_DATA_HOME").as_deref(),
            get("HOME").as_deref(),
        )
    }

    /// Builds the list from explicit variable values (`None` = unset).
    pub fn from_vars(
        xdg_data_dirs: Option<&OsStr>,
        xdg_data_home: Option<&OsStr>,
        home: Option<&OsStr>,
    ) -> Self {
        let mut data_dirs: Vec<PathBuf> = Vec::new();
        let dirs = xdg_data_dirs.map(|v| v.to_string_lossy().into_owned());
        match dirs.as_deref() {
            Some(v) if !v.is_empty() => {
                data_dirs.extend(
                    v.split(':')
                        .map(|item| item.trim_matches(is_ascii_ws))
                        .filter(|item| !item.is_empty())
                        .map(PathBuf::from),
                );
            }
            _ => data_dirs.extend(DEFAULT_DATA_DIRS.iter().map(PathBuf::from)),
        }
        match (xdg_data_home, home) {
            (Some(data_home), _) if !data_home.is_empty() => data_dirs.push(data_home.into()),
            (_, Some(home)) if !home.is_empty() => {
                data_dirs.push(PathBuf::from(home).join(".local/share"))
            }
            _ => {}
        }
        Self { data_dirs }
    }

    /// Uses the given data directories verbatim (tests, explicit configuration).
    pub fn from_data_dirs(data_dirs: Vec<PathBuf>) -> Self {
        Self { data_dirs }
    }

    /// The data directories in lookup order.
    pub fn data_dirs(&self) -> &[PathBuf] {
        &self.data_dirs
    }

    /// `<dir>/applications` for every data directory, in order.
    pub fn application_dirs(&self) -> Vec<PathBuf> {
        self.data_dirs
            .iter()
            .map(|dir| dir.join("applications"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(x: &XdgDirs) -> Vec<&str> {
        x.data_dirs().iter().map(|p| p.to_str().unwrap()).collect()
    }

    #[test]
    fn data_dirs_are_trimmed_and_empty_items_dropped_then_data_home_last() {
        let x = XdgDirs::from_vars(
            Some(OsStr::new(" /a : :/b ")),
            Some(OsStr::new("/dh")),
            Some(OsStr::new("/home/u")),
        );
        assert_eq!(dirs(&x), ["/a", "/b", "/dh"]);
    }

    #[test]
    fn unset_data_dirs_use_defaults_then_home_local_share() {
        let x = XdgDirs::from_vars(None, None, Some(OsStr::new("/home/u")));
        assert_eq!(
            dirs(&x),
            ["/usr/local/share", "/usr/share", "/home/u/.local/share"]
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let x = XdgDirs::from_vars(Some(OsStr::new("")), Some(OsStr::new("")), None);
        assert_eq!(dirs(&x), ["/usr/local/share", "/usr/share"]);
    }

    #[test]
    fn duplicates_are_kept_and_application_dirs_append_applications() {
        let x = XdgDirs::from_vars(
            Some(OsStr::new("/h/.local/share:/usr/share")),
            None,
            Some(OsStr::new("/h")),
        );
        let apps: Vec<_> = x.application_dirs();
        assert_eq!(
            apps,
            [
                PathBuf::from("/h/.local/share/applications"),
                PathBuf::from("/usr/share/applications"),
                PathBuf::from("/h/.local/share/applications"),
            ]
        );
    }
}
