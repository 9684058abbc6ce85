//! Desktop entries (garcon-service §4): XDG data directories, the `[Desktop Entry]` parser,
//! desktop-file IDs and ID -> file lookup.
//!
//! The parser is our own small line parser (garcon-service §4.1-§4.5) rather than
//! `freedesktop-desktop-entry`, because that crate differs from garcon in ways that change
//! results (§4.9). Each difference is pinned by a test in `entry::crate_differences`.

pub mod entry;
pub mod id;
pub mod xdg;

pub use entry::{
    has_desktop_extension, DesktopEntry, DesktopEntryError, InvalidEntry, MAX_DESKTOP_FILE_SIZE,
};
pub use id::{desktop_file_id, find_file_for_desktop_id};
pub use xdg::XdgDirs;
