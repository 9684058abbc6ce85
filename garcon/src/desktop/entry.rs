//! The `[Desktop Entry]` parser (garcon-service §4.1-§4.5, garcon-host §4.4).
//!
//! Reading: through [`crostini_common::untrusted_file`] (non-blocking open, regular files only, so
//! a FIFO named `x.desktop` is refused at once instead of blocking a thread), at most
//! [`MAX_DESKTOP_FILE_SIZE`]; bytes are decoded lossily (U+FFFD) so that invalid UTF-8 never
//! rejects a file. Lines are split on `\n`, trimmed of ASCII whitespace, empty lines dropped.
//! Only the first `[Desktop Entry]` group is read; the next line starting with `[` ends it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crostini_common::untrusted_file::{self, UntrustedReadError};

use super::xdg::is_ascii_ws;

/// Largest desktop file that is read (1 MiB); larger files fail to load. DEVIATION from the 10 MiB
/// of garcon-service §9: real entries are a few KiB (the largest, with hundreds of translations,
/// ~100 KiB), and a multi-MiB entry only serves to push the app list past the host's 4 MiB limit.
pub const MAX_DESKTOP_FILE_SIZE: u64 = 1024 * 1024;

/// `Type` values that make a file valid.
const VALID_TYPES: [&str; 3] = ["Application", "Link", "Directory"];

/// The recognized keys of one desktop entry (garcon-service §4.4). Everything else is ignored.
///
/// Localized maps are keyed by the verbatim locale between `[` and `]`; the unlocalized value
/// is stored under `""`. `BTreeMap` order is the order reported to the host (`""` first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesktopEntry {
    /// `Type`, raw (not unescaped).
    pub entry_type: String,
    /// `Name` and `Name[loc]`, unescaped.
    pub name: BTreeMap<String, String>,
    /// `Comment` and `Comment[loc]`, unescaped.
    pub comment: BTreeMap<String, String>,
    /// `Keywords` and `Keywords[loc]`, each a `;` list; duplicate lines append.
    pub keywords: BTreeMap<String, Vec<String>>,
    /// `NoDisplay=true`.
    pub no_display: bool,
    /// `Icon`, raw (not unescaped).
    pub icon: String,
    /// `Hidden=true`.
    pub hidden: bool,
    /// `OnlyShowIn` list.
    pub only_show_in: Vec<String>,
    /// `NotShowIn` list.
    pub not_show_in: Vec<String>,
    /// `TryExec`, unescaped.
    pub try_exec: String,
    /// `Exec`, unescaped (field codes and quotes still present).
    pub exec: String,
    /// `Path` (working directory), unescaped.
    pub path: String,
    /// `Terminal=true`.
    pub terminal: bool,
    /// `MimeType` list.
    pub mime_types: Vec<String>,
    /// `Categories` list.
    pub categories: Vec<String>,
    /// `StartupWMClass`, unescaped.
    pub startup_wm_class: String,
    /// `StartupNotify=true`.
    pub startup_notify: bool,
    /// `X-Steam-AppID` (0 when absent or not a u64).
    pub steam_app_id: u64,
}

/// Why parsed text is not a valid desktop entry (garcon-service §4.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEntry {
    /// `Type` missing or not one of Application, Link, Directory.
    #[error("Type is {0:?}, expected Application, Link or Directory")]
    BadType(Option<String>),
    /// No unlocalized `Name`.
    #[error("no unlocalized Name key")]
    MissingName,
}

/// Failure to load a desktop file.
#[derive(Debug, thiserror::Error)]
pub enum DesktopEntryError {
    /// The path does not end in `.desktop`.
    #[error("{path}: not a .desktop file")]
    NotDesktopFile {
        /// The file.
        path: PathBuf,
    },
    /// Open/read failed, or the path is not a regular file (directory, FIFO, device).
    #[error("desktop file unreadable: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong (names the path).
        source: UntrustedReadError,
    },
    /// Larger than [`MAX_DESKTOP_FILE_SIZE`].
    #[error("desktop file {path} is larger than {MAX_DESKTOP_FILE_SIZE} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Parsed but not valid.
    #[error("invalid desktop file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: InvalidEntry,
    },
}

impl DesktopEntry {
    /// Reads and parses a desktop file: extension check, regular file only, 1 MiB limit, lossy
    /// UTF-8, validity.
    pub fn from_file(path: &Path) -> Result<Self, DesktopEntryError> {
        Self::from_file_with_buffer(path, &mut Vec::new())
    }

    /// [`DesktopEntry::from_file`] leaving the bytes read in `buffer` (the caller may reuse it).
    pub fn from_file_with_buffer(
        path: &Path,
        buffer: &mut Vec<u8>,
    ) -> Result<Self, DesktopEntryError> {
        if !has_desktop_extension(path) {
            return Err(DesktopEntryError::NotDesktopFile { path: path.into() });
        }
        *buffer =
            untrusted_file::read_capped(path, MAX_DESKTOP_FILE_SIZE).map_err(
                |source| match source {
                    UntrustedReadError::TooLarge { .. } => {
                        DesktopEntryError::TooLarge { path: path.into() }
                    }
                    source => DesktopEntryError::Read {
                        path: path.into(),
                        source,
                    },
                },
            )?;
        let parsed = match std::str::from_utf8(buffer) {
            Ok(text) => Self::parse_text(text),
            Err(_) => {
                tracing::warn!(path = %path.display(), "desktop file is not valid UTF-8; decoding lossily");
                Self::parse_text(&String::from_utf8_lossy(buffer))
            }
        };
        parsed.map_err(|reason| DesktopEntryError::Invalid {
            path: path.into(),
            reason,
        })
    }

    /// Parses desktop-file bytes (lossy UTF-8) and checks validity (Type and Name).
    pub fn parse(bytes: &[u8]) -> Result<Self, InvalidEntry> {
        Self::parse_text(&String::from_utf8_lossy(bytes))
    }

    /// Parses desktop-file text and checks validity (Type and Name).
    pub fn parse_text(text: &str) -> Result<Self, InvalidEntry> {
        let entry = Self::parse_unchecked(text);
        if !VALID_TYPES.contains(&entry.entry_type.as_str()) {
            let found = (!entry.entry_type.is_empty()).then(|| entry.entry_type.clone());
            return Err(InvalidEntry::BadType(found));
        }
        if !entry.name.contains_key("") {
            return Err(InvalidEntry::MissingName);
        }
        Ok(entry)
    }

    /// Parses text into the recognized keys without the validity check.
    fn parse_unchecked(text: &str) -> Self {
        let mut entry = Self::default();
        let mut in_entry = false;
        for line in text.split('\n') {
            let line = line.trim_matches(is_ascii_ws);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                if in_entry {
                    break;
                }
                in_entry = line == "[Desktop Entry]";
                continue;
            }
            if !in_entry {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim_end_matches(is_ascii_ws);
            let value = value.trim_start_matches(is_ascii_ws);
            if value.is_empty() {
                continue;
            }
            entry.set(key, value);
        }
        entry
    }

    /// Stores one key/value pair (value non-empty, already trimmed).
    fn set(&mut self, key: &str, value: &str) {
        match key {
            "Type" => self.entry_type = value.to_owned(),
            "Name" => {
                self.name.insert(String::new(), unescape(value));
            }
            "Comment" => {
                self.comment.insert(String::new(), unescape(value));
            }
            "Keywords" => self
                .keywords
                .entry(String::new())
                .or_default()
                .extend(split_list(value)),
            "NoDisplay" => self.no_display = parse_bool(value),
            "Icon" => self.icon = value.to_owned(),
            "Hidden" => self.hidden = parse_bool(value),
            "OnlyShowIn" => self.only_show_in.extend(split_list(value)),
            "NotShowIn" => self.not_show_in.extend(split_list(value)),
            "TryExec" => self.try_exec = unescape(value),
            "Exec" => self.exec = unescape(value),
            "Path" => self.path = unescape(value),
            "Terminal" => self.terminal = parse_bool(value),
            "MimeType" => self.mime_types.extend(split_list(value)),
            "Categories" => self.categories.extend(split_list(value)),
            "StartupWMClass" => self.startup_wm_class = unescape(value),
            "StartupNotify" => self.startup_notify = parse_bool(value),
            "X-Steam-AppID" => self.steam_app_id = parse_u64(value),
            _ => {
                if let Some(locale) = localized(key, "Name") {
                    self.name.insert(locale.to_owned(), unescape(value));
                } else if let Some(locale) = localized(key, "Comment") {
                    self.comment.insert(locale.to_owned(), unescape(value));
                } else if let Some(locale) = localized(key, "Keywords") {
                    self.keywords
                        .entry(locale.to_owned())
                        .or_default()
                        .extend(split_list(value));
                }
            }
        }
    }

    /// The unlocalized `Name` (empty if absent, which a valid entry never is).
    pub fn unlocalized_name(&self) -> &str {
        self.name.get("").map(String::as_str).unwrap_or_default()
    }
}

/// True when the file name's final extension is exactly `.desktop` (as Chromium's
/// `FinalExtension`, so a file named just `.desktop` counts too).
pub fn has_desktop_extension(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.as_encoded_bytes().ends_with(b".desktop"))
}

/// `Base[locale]` with a non-empty locale -> `Some(locale)`.
fn localized<'a>(key: &'a str, base: &str) -> Option<&'a str> {
    let rest = key.strip_prefix(base)?.strip_prefix('[')?;
    let locale = rest.strip_suffix(']')?;
    (!locale.is_empty()).then_some(locale)
}

/// Exactly `true` is true; anything else is false.
pub fn parse_bool(value: &str) -> bool {
    value == "true"
}

/// Unsigned decimal; anything else (sign, spaces, overflow) is 0.
fn parse_u64(value: &str) -> u64 {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse().unwrap_or(0)
    } else {
        0
    }
}

/// String unescape: `\s`, `\t`, `\r`, `\n`; `\X` -> `X` for any other X; trailing lone `\`
/// dropped. Never fails.
pub fn unescape(value: &str) -> String {
    if !value.contains('\\') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `;` list: a backslash protects the next character; an unprotected `;` ends an element;
/// each element is then unescaped. One trailing separator adds no empty element.
pub fn split_list(value: &str) -> Vec<String> {
    if !value.contains('\\') {
        let trimmed = value.strip_suffix(';').unwrap_or(value);
        return trimmed.split(';').map(str::to_owned).collect();
    }
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ';' => items.push(unescape(&std::mem::take(&mut current))),
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        items.push(unescape(&current));
    }
    items
}

#[cfg(test)]
mod tests;
