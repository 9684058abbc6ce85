//! MIME tables for `UpdateMimeTypes` (garcon-host §5, garcon-service §6): extension (without
//! the dot) -> MIME type, from the shared-mime-info `mime.cache` (current upstream) or legacy
//! `mime.types` files.
//!
//! A system file is required (missing or invalid => nothing is sent); the user file is optional
//! and its mappings override the system ones.

pub mod cache;
pub mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crostini_common::untrusted_file;

pub use cache::{parse_mime_cache, MimeCacheError};
pub use types::parse_mime_types;

/// Largest mime.types / mime.cache file read (10 MiB, garcon-service §9; a real mime.cache is
/// ~150 KiB, so this bounds memory without ever refusing a genuine table).
pub const MAX_MIME_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// extension -> MIME type, as sent in `UpdateMimeTypesRequest.mime_type_mappings`.
pub type MimeTypeMap = HashMap<String, String>;

/// Which file format the sources hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MimeFormat {
    /// shared-mime-info binary cache (upstream since 2021-07).
    Cache,
    /// Legacy text `mime.types` (upstream 2018-08 to 2021-07).
    Types,
}

/// Where the MIME table comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimeSources {
    /// File format of both files.
    pub format: MimeFormat,
    /// Required system file.
    pub system_file: PathBuf,
    /// Optional user file (overrides).
    pub user_file: Option<PathBuf>,
}

/// Why no MIME table can be sent.
#[derive(Debug, thiserror::Error)]
pub enum MimeError {
    /// The system file could not be read (missing, unreadable, not a regular file, too large).
    #[error("MIME file unreadable: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed (its message names the path; kind `NotFound` when absent).
        source: std::io::Error,
    },
    /// The system mime.cache is corrupt.
    #[error("invalid mime.cache {path}: {source}")]
    InvalidCache {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: MimeCacheError,
    },
}

impl MimeSources {
    /// Upstream default: `/usr/share/mime/mime.cache`, then `$HOME/.local/share/mime/mime.cache`.
    pub fn mime_cache(home: Option<&Path>) -> Self {
        Self {
            format: MimeFormat::Cache,
            system_file: PathBuf::from("/usr/share/mime/mime.cache"),
            user_file: home.map(|h| h.join(".local/share/mime/mime.cache")),
        }
    }

    /// Legacy: `/etc/mime.types`, then `$HOME/.mime.types`.
    pub fn legacy_mime_types(home: Option<&Path>) -> Self {
        Self {
            format: MimeFormat::Types,
            system_file: PathBuf::from("/etc/mime.types"),
            user_file: home.map(|h| h.join(".mime.types")),
        }
    }

    /// Directories to watch (non-recursively): the parents of both files.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(&self.system_file)
            .chain(self.user_file.as_ref())
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect()
    }

    /// Builds the table: the system file (required) overlaid with the user file (optional;
    /// an unreadable or corrupt user file is logged and ignored).
    pub fn load(&self) -> Result<MimeTypeMap, MimeError> {
        let mut map = self.load_one(&self.system_file)?;
        if let Some(user) = &self.user_file {
            match self.load_one(user) {
                Ok(user_map) => map.extend(user_map),
                Err(MimeError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!("ignoring user MIME file: {err}"),
            }
        }
        Ok(map)
    }

    fn load_one(&self, path: &Path) -> Result<MimeTypeMap, MimeError> {
        let bytes = read_limited(path).map_err(|source| MimeError::Read {
            path: path.into(),
            source,
        })?;
        match self.format {
            MimeFormat::Types => Ok(parse_mime_types(&bytes)),
            MimeFormat::Cache => {
                parse_mime_cache(&bytes).map_err(|source| MimeError::InvalidCache {
                    path: path.into(),
                    source,
                })
            }
        }
    }
}

/// Reads a whole regular file (never blocking on a FIFO), failing when it is larger than
/// [`MAX_MIME_FILE_SIZE`]. Read whole rather than mmapped: a file another process truncates
/// under a mapping would SIGBUS garcon.
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    Ok(untrusted_file::read_capped(path, MAX_MIME_FILE_SIZE)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mime");

    fn fixture(rel: &str) -> PathBuf {
        Path::new(FIXTURES).join(rel)
    }

    fn sources(format: MimeFormat, system: PathBuf, user: Option<PathBuf>) -> MimeSources {
        MimeSources {
            format,
            system_file: system,
            user_file: user,
        }
    }

    #[test]
    fn user_cache_overrides_system_cache_regardless_of_weight() {
        let s = sources(
            MimeFormat::Cache,
            fixture("system/mime.cache"),
            Some(fixture("user/mime.cache")),
        );
        let map = s.load().unwrap();
        assert_eq!(map["png"], "y/z");
        assert_eq!(map["usr"], "application/x-user-only");
        assert_eq!(map["gfa"], "application/x-gfa");
    }

    #[test]
    fn missing_system_file_is_an_error_and_missing_user_file_is_fine() {
        let t = tempfile::tempdir().unwrap();
        let missing = sources(MimeFormat::Cache, t.path().join("none"), None);
        assert!(matches!(missing.load(), Err(MimeError::Read { .. })));
        let no_user = sources(
            MimeFormat::Cache,
            fixture("system/mime.cache"),
            Some(t.path().join("none")),
        );
        assert_eq!(no_user.load().unwrap()["png"], "x/other");
    }

    #[test]
    fn corrupt_system_cache_is_an_error_and_corrupt_user_cache_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let corrupt = t.path().join("corrupt.cache");
        std::fs::write(&corrupt, [0u8; 8]).unwrap();
        let bad_system = sources(MimeFormat::Cache, corrupt.clone(), None);
        assert!(matches!(
            bad_system.load(),
            Err(MimeError::InvalidCache { .. })
        ));
        let bad_user = sources(
            MimeFormat::Cache,
            fixture("system/mime.cache"),
            Some(corrupt),
        );
        assert_eq!(bad_user.load().unwrap()["png"], "x/other");
    }

    #[test]
    fn legacy_types_files_overlay() {
        let s = sources(
            MimeFormat::Types,
            fixture("mime.types"),
            Some(fixture("user.mime.types")),
        );
        let map = s.load().unwrap();
        assert_eq!(map["txt"], "text/x-user");
        assert_eq!(map["html"], "text/html");
    }

    #[test]
    fn oversized_file_is_rejected() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("mime.types");
        std::fs::write(&big, vec![b'#'; MAX_MIME_FILE_SIZE as usize + 1]).unwrap();
        let s = sources(MimeFormat::Types, big, None);
        assert!(matches!(s.load(), Err(MimeError::Read { .. })));
    }

    #[test]
    fn fifo_system_file_is_refused_at_once_and_fifo_user_file_ignored() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("mime.cache");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let started = std::time::Instant::now();
        let err = sources(MimeFormat::Cache, fifo.clone(), None)
            .load()
            .unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        let with_user = sources(MimeFormat::Cache, fixture("system/mime.cache"), Some(fifo));
        assert_eq!(with_user.load().unwrap()["png"], "x/other");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn watch_dirs_are_the_parents_of_both_files() {
        let s = MimeSources::mime_cache(Some(Path::new("/home/u")));
        assert_eq!(
            s.watch_dirs(),
            [
                PathBuf::from("/usr/share/mime"),
                PathBuf::from("/home/u/.local/share/mime")
            ]
        );
    }
}
