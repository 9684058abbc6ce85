//! `index.theme` parsing (freedesktop Icon Theme Specification; line handling of
//! garcon-service §4.1/§4.2).
//!
//! Deviations from the reference parser (§5.2.4), all in the direction of the freedesktop
//! specification: `Inherits` is read; list items are trimmed (`a, b` yields `b`); a section not
//! listed in `Directories`/`ScaledDirectories` is ignored instead of invalidating the whole
//! index; sections of every Context are kept; directory names that are absolute or contain a
//! `..` component are dropped.

use std::path::Path;

use crostini_common::untrusted_file::{read_capped, UntrustedReadError};

/// Largest `index.theme` read: 1 MiB. The largest themes in the wild (Papirus, Breeze: a few
/// hundred directory sections) have indexes of 30 to 100 KB, so 1 MiB is ten times that, while
/// bounding the parse (linear) and the section list a hostile index can make us keep.
pub const MAX_INDEX_THEME_SIZE: u64 = 1024 * 1024;

/// Directory sizes, scales and thresholds outside `1..=MAX_DIRECTORY_VALUE` drop the section.
pub const MAX_DIRECTORY_VALUE: i64 = 4095;

/// How a theme subdirectory matches icon sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryType {
    /// Only exactly `size`.
    Fixed,
    /// Anything in `min_size..=max_size` (vector icons).
    Scalable,
    /// `size - threshold ..= size + threshold`.
    Threshold,
}

/// One subdirectory section of an `index.theme`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThemeDirectory {
    /// Relative path inside the theme (`48x48/apps`).
    pub name: String,
    /// Nominal (unscaled) size.
    pub size: u32,
    /// Scale factor (`@2` directories), default 1.
    pub scale: u32,
    /// Matching rule, default Threshold.
    pub kind: DirectoryType,
    /// Smallest size a Scalable directory serves (default `size`).
    pub min_size: u32,
    /// Largest size a Scalable directory serves (default `size`).
    pub max_size: u32,
    /// Threshold of a Threshold directory (default 2).
    pub threshold: u32,
    /// `Context`, informational.
    pub context: String,
}

impl ThemeDirectory {
    /// A directory with defaults (Threshold, scale 1, threshold 2).
    pub fn new(name: impl Into<String>, size: u32) -> Self {
        Self {
            name: name.into(),
            size,
            scale: 1,
            kind: DirectoryType::Threshold,
            min_size: size,
            max_size: size,
            threshold: 2,
            context: String::new(),
        }
    }

    /// `DirectoryMatchesSize` of the icon theme specification.
    pub fn matches_size(&self, size: u32, scale: u32) -> bool {
        if self.scale != scale {
            return false;
        }
        let size = u64::from(size);
        match self.kind {
            DirectoryType::Fixed => size == u64::from(self.size),
            DirectoryType::Scalable => {
                u64::from(self.min_size) <= size && size <= u64::from(self.max_size)
            }
            DirectoryType::Threshold => {
                let low = u64::from(self.size).saturating_sub(u64::from(self.threshold));
                let high = u64::from(self.size) + u64::from(self.threshold);
                low <= size && size <= high
            }
        }
    }

    /// `DirectorySizeDistance` of the icon theme specification, in scaled pixels. (The
    /// specification's Threshold branch mentions MinSize/MaxSize; like GTK we use the
    /// threshold bounds it clearly means.)
    pub fn size_distance(&self, size: u32, scale: u32) -> u64 {
        let target = u64::from(size) * u64::from(scale);
        let dir_scale = u64::from(self.scale);
        let (low, high) = match self.kind {
            DirectoryType::Fixed => {
                let exact = u64::from(self.size) * dir_scale;
                (exact, exact)
            }
            DirectoryType::Scalable => (
                u64::from(self.min_size) * dir_scale,
                u64::from(self.max_size) * dir_scale,
            ),
            DirectoryType::Threshold => (
                u64::from(self.size).saturating_sub(u64::from(self.threshold)) * dir_scale,
                (u64::from(self.size) + u64::from(self.threshold)) * dir_scale,
            ),
        };
        // Below the range, above it, or inside (0).
        low.saturating_sub(target) + target.saturating_sub(high)
    }

    /// The largest pixel size this directory provides (for tie-breaking toward larger icons).
    pub fn pixel_size(&self) -> u64 {
        let size = match self.kind {
            DirectoryType::Scalable => self.max_size,
            _ => self.size,
        };
        u64::from(size) * u64::from(self.scale)
    }
}

/// A parsed `index.theme`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexTheme {
    /// Unlocalized `Name`.
    pub name: String,
    /// `Inherits`, in order.
    pub inherits: Vec<String>,
    /// Directory sections listed in `Directories`/`ScaledDirectories`, in listing order.
    pub directories: Vec<ThemeDirectory>,
}

/// Why an `index.theme` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IndexThemeError {
    /// Missing, not a regular file (a FIFO, a directory...), larger than
    /// [`MAX_INDEX_THEME_SIZE`] or unreadable.
    #[error(transparent)]
    Read(#[from] UntrustedReadError),
    /// No `[Icon Theme]` group.
    #[error("{path} has no [Icon Theme] group")]
    NoIconThemeGroup {
        /// The file.
        path: std::path::PathBuf,
    },
}

impl IndexTheme {
    /// Reads and parses `path` ([`MAX_INDEX_THEME_SIZE`] limit, lossy UTF-8). The path is
    /// container-controlled: it is read through [`crostini_common::untrusted_file`], so a FIFO
    /// or a device is refused at once instead of blocking the open.
    pub fn from_file(path: &Path) -> Result<Self, IndexThemeError> {
        let bytes = read_capped(path, MAX_INDEX_THEME_SIZE)?;
        Self::parse(&bytes).ok_or_else(|| IndexThemeError::NoIconThemeGroup { path: path.into() })
    }

    /// Parses `index.theme` bytes; `None` when there is no `[Icon Theme]` group.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(bytes);
        let mut theme = IndexTheme::default();
        let mut listed: Vec<String> = Vec::new();
        let mut sections: Vec<Section> = Vec::new();
        let mut seen_theme_group = false;
        let mut current: Option<Group> = None;
        for line in text
            .split('\n')
            .map(|l| l.trim_matches(is_ascii_ws))
            .filter(|l| !l.is_empty())
        {
            if line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest.strip_suffix(']').unwrap_or_default();
                current = if name == "Icon Theme" && !seen_theme_group {
                    seen_theme_group = true;
                    Some(Group::Theme)
                } else if seen_theme_group && !name.is_empty() {
                    sections.push(Section::new(name));
                    Some(Group::Directory)
                } else {
                    None
                };
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim_end_matches(is_ascii_ws);
            let value = value.trim_start_matches(is_ascii_ws);
            match current {
                Some(Group::Theme) => match key {
                    "Name" => theme.name = value.to_owned(),
                    "Inherits" => theme.inherits = split_commas(value),
                    "Directories" | "ScaledDirectories" => {
                        for dir in split_commas(value) {
                            if !listed.contains(&dir) {
                                listed.push(dir);
                            }
                        }
                    }
                    _ => {}
                },
                Some(Group::Directory) => {
                    if let Some(section) = sections.last_mut() {
                        section.set(key, value);
                    }
                }
                None => {}
            }
        }
        if !seen_theme_group {
            return None;
        }
        theme.inherits.retain(|name| is_safe_theme_name(name));
        // Listing order decides lookup order; a listed name without a section is skipped.
        for name in &listed {
            if let Some(dir) = sections
                .iter()
                .find(|s| &s.name == name)
                .and_then(Section::to_directory)
            {
                theme.directories.push(dir);
            }
        }
        Some(theme)
    }
}

/// A theme name usable as one path component.
pub fn is_safe_theme_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// A relative directory name without `..`, `.`-only or empty components.
pub fn is_safe_relative_dir(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[derive(Clone, Copy)]
enum Group {
    Theme,
    Directory,
}

struct Section {
    name: String,
    size: i64,
    scale: Option<i64>,
    kind: Option<String>,
    min_size: i64,
    max_size: i64,
    threshold: Option<i64>,
    context: String,
}

impl Section {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            size: 0,
            scale: None,
            kind: None,
            min_size: 0,
            max_size: 0,
            threshold: None,
            context: String::new(),
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        match key {
            "Size" => self.size = leading_int(value),
            "Scale" => self.scale = Some(leading_int(value)),
            "Type" => self.kind = Some(value.to_owned()),
            "MinSize" => self.min_size = leading_int(value),
            "MaxSize" => self.max_size = leading_int(value),
            "Threshold" => self.threshold = Some(leading_int(value)),
            "Context" => self.context = value.to_owned(),
            _ => {}
        }
    }

    fn to_directory(&self) -> Option<ThemeDirectory> {
        if !is_safe_relative_dir(&self.name) {
            return None;
        }
        let in_range = |v: i64| (1..=MAX_DIRECTORY_VALUE).contains(&v);
        let scale = self.scale.unwrap_or(1);
        let threshold = self.threshold.unwrap_or(2);
        if !in_range(self.size)
            || !in_range(scale)
            || !(0..=MAX_DIRECTORY_VALUE).contains(&threshold)
        {
            return None;
        }
        let kind = match self.kind.as_deref() {
            Some("Fixed") => DirectoryType::Fixed,
            Some("Scalable") => DirectoryType::Scalable,
            _ => DirectoryType::Threshold,
        };
        let or_size = |v: i64| if in_range(v) { v } else { self.size };
        let (mut min_size, mut max_size) = (or_size(self.min_size), or_size(self.max_size));
        if min_size > max_size {
            std::mem::swap(&mut min_size, &mut max_size);
        }
        // All values are within 0..=4095 here, so the conversions cannot fail.
        let to_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
        Some(ThemeDirectory {
            name: self.name.clone(),
            size: to_u32(self.size),
            scale: to_u32(scale),
            kind,
            min_size: to_u32(min_size),
            max_size: to_u32(max_size),
            threshold: to_u32(threshold),
            context: self.context.clone(),
        })
    }
}

/// Leading-decimal best effort: optional sign then digits; `48px` -> 48, junk -> 0. Saturates.
fn leading_int(value: &str) -> i64 {
    let (negative, digits) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative {
        -n
    } else {
        n
    }
}

/// Comma list: items trimmed, empty items dropped.
fn split_commas(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim_matches(is_ascii_ws))
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_ascii_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::mutations;

    fn dir(kind: DirectoryType, size: u32, scale: u32) -> ThemeDirectory {
        ThemeDirectory {
            kind,
            scale,
            ..ThemeDirectory::new("d", size)
        }
    }

    #[test]
    fn parses_directories_in_listing_order_with_defaults() {
        let text = "# comment\n[Other]\nSize=1\n[Icon Theme]\nName=T\nInherits=Parent, hicolor\n\
                    Directories=48x48/apps, scalable/apps,missing/apps\nScaledDirectories=48x48@2/apps\n\
                    [scalable/apps]\nSize=48\nType=Scalable\nMinSize=8\nMaxSize=512\n\
                    [48x48@2/apps]\nSize=48\nScale=2\nType=Fixed\n\
                    [48x48/apps]\nSize=48px\nContext=Applications\n\
                    [unlisted/apps]\nSize=16\n";
        let theme = IndexTheme::parse(text.as_bytes()).unwrap();
        assert_eq!(theme.name, "T");
        assert_eq!(theme.inherits, ["Parent", "hicolor"]);
        let names: Vec<_> = theme.directories.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["48x48/apps", "scalable/apps", "48x48@2/apps"]);
        let d48 = &theme.directories[0];
        assert_eq!(
            (d48.size, d48.scale, d48.kind, d48.threshold),
            (48, 1, DirectoryType::Threshold, 2)
        );
        assert_eq!(d48.context, "Applications");
        let scalable = &theme.directories[1];
        assert_eq!((scalable.min_size, scalable.max_size), (8, 512));
        assert_eq!(theme.directories[2].scale, 2);
    }

    #[test]
    fn drops_unsafe_or_out_of_range_sections_and_inherits() {
        let text = "[Icon Theme]\nInherits=../evil,ok,a/b\n\
                    Directories=/abs,../up,zero,huge,badscale,good\n\
                    [/abs]\nSize=16\n[../up]\nSize=16\n[zero]\nSize=0\n[huge]\nSize=4096\n\
                    [badscale]\nSize=16\nScale=0\n[good]\nSize=4095\n";
        let theme = IndexTheme::parse(text.as_bytes()).unwrap();
        assert_eq!(theme.inherits, ["ok"]);
        let names: Vec<_> = theme.directories.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["good"]);
    }

    #[test]
    fn missing_icon_theme_group_is_none_and_empty_theme_is_valid() {
        assert_eq!(IndexTheme::parse(b""), None);
        assert_eq!(IndexTheme::parse(b"[Desktop Entry]\nName=x\n"), None);
        let theme = IndexTheme::parse(b"[Icon Theme]\nName=x\n").unwrap();
        assert!(theme.directories.is_empty());
    }

    #[test]
    fn crlf_and_whitespace_are_tolerated() {
        let text = "[Icon Theme]\r\n  Directories = a/apps \r\n[a/apps]\r\nSize = 32\r\n";
        let theme = IndexTheme::parse(text.as_bytes()).unwrap();
        assert_eq!(theme.directories[0].size, 32);
    }

    #[test]
    fn matches_size_follows_the_icon_theme_spec() {
        let threshold = dir(DirectoryType::Threshold, 48, 1);
        assert!(threshold.matches_size(46, 1) && threshold.matches_size(50, 1));
        assert!(!threshold.matches_size(51, 1) && !threshold.matches_size(48, 2));
        let fixed = dir(DirectoryType::Fixed, 48, 1);
        assert!(fixed.matches_size(48, 1) && !fixed.matches_size(47, 1));
        let scalable = ThemeDirectory {
            min_size: 8,
            max_size: 512,
            ..dir(DirectoryType::Scalable, 48, 1)
        };
        assert!(scalable.matches_size(8, 1) && scalable.matches_size(512, 1));
        assert!(!scalable.matches_size(513, 1) && !scalable.matches_size(7, 1));
        assert!(!dir(DirectoryType::Fixed, 48, 2).matches_size(96, 1));
        assert!(dir(DirectoryType::Fixed, 48, 2).matches_size(48, 2));
    }

    #[test]
    fn size_distance_is_in_scaled_pixels() {
        assert_eq!(dir(DirectoryType::Fixed, 48, 2).size_distance(96, 1), 0);
        assert_eq!(dir(DirectoryType::Fixed, 48, 2).size_distance(48, 1), 48);
        assert_eq!(dir(DirectoryType::Fixed, 96, 1).size_distance(48, 2), 0);
        assert_eq!(
            dir(DirectoryType::Threshold, 48, 1).size_distance(64, 1),
            14
        );
        assert_eq!(
            dir(DirectoryType::Threshold, 48, 1).size_distance(16, 1),
            30
        );
        let scalable = ThemeDirectory {
            min_size: 16,
            max_size: 256,
            ..dir(DirectoryType::Scalable, 48, 1)
        };
        assert_eq!(scalable.size_distance(300, 1), 44);
        assert_eq!(scalable.size_distance(8, 1), 8);
        assert_eq!(scalable.size_distance(100, 2), 0);
    }

    #[test]
    fn leading_int_is_best_effort() {
        assert_eq!(leading_int("48px"), 48);
        assert_eq!(leading_int("junk"), 0);
        assert_eq!(leading_int("-3"), -3);
        assert_eq!(leading_int("99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn fifo_and_oversized_index_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("index.theme");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = std::time::Instant::now();
        let err = IndexTheme::from_file(&fifo).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            matches!(
                err,
                IndexThemeError::Read(UntrustedReadError::NotRegular { .. })
            ),
            "{err}"
        );
        let big = t.path().join("big.theme");
        let mut text = b"[Icon Theme]\n".to_vec();
        text.resize(MAX_INDEX_THEME_SIZE as usize + 1, b'#');
        std::fs::write(&big, text).unwrap();
        let err = IndexTheme::from_file(&big).unwrap_err();
        assert!(
            matches!(
                err,
                IndexThemeError::Read(UntrustedReadError::TooLarge { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn mutated_index_never_panics() {
        let seed = "[Icon Theme]\nInherits=a,b\nDirectories=16x16/apps,scalable/apps\n\
                    [16x16/apps]\nSize=16\nScale=2\nThreshold=3\n\
                    [scalable/apps]\nSize=48\nType=Scalable\nMinSize=8\nMaxSize=512\n";
        for data in mutations(seed.as_bytes(), 5000) {
            if let Some(theme) = IndexTheme::parse(&data) {
                for dir in &theme.directories {
                    let _ = (
                        dir.matches_size(48, 1),
                        dir.size_distance(u32::MAX, u32::MAX),
                    );
                }
            }
        }
    }
}
