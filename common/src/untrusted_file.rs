//! Reading files that someone else controls (a container's home directory, its `/etc`).
//!
//! Any program in a container can put a FIFO, a device node, a directory or a 5 GB file where an
//! agent expects a small text file. A plain `File::open` on a FIFO blocks until a writer appears
//! (forever), and `read_to_end` on a huge file bloats the agent. Every read of a
//! container-controlled path goes through this module, which:
//! - opens with `O_NONBLOCK | O_NOCTTY | O_CLOEXEC`, so opening a FIFO or a tty never blocks or
//!   takes a controlling terminal;
//! - `fstat`s the opened descriptor (not the path, so there is no check-then-open race) and refuses
//!   anything that is not a regular file;
//! - reads at most `cap` bytes and refuses a file that is larger (checked against both the size
//!   `fstat` reports and what the read actually returns, since a file may grow).
//!
//! Callers must not hold a lock across these calls: the read itself is bounded, but a slow disk is
//! not, and a lock held across I/O turns one slow file into a stuck daemon.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an untrusted file could not be read. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedReadError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("refusing {path}: it is a {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("refusing {path}: {size} bytes is over the {cap}-byte limit")]
    TooLarge { path: PathBuf, size: u64, cap: u64 },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
}

impl UntrustedReadError {
    /// True when the file does not exist (callers usually treat that as "absent", not as an error).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The underlying I/O error kind, or `InvalidData` for the refusals.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Self::Open { source, .. } | Self::Read { source, .. } => source.kind(),
            Self::NotRegular { .. } | Self::TooLarge { .. } | Self::NotUtf8 { .. } => {
                io::ErrorKind::InvalidData
            }
        }
    }
}

impl From<UntrustedReadError> for io::Error {
    fn from(err: UntrustedReadError) -> Self {
        io::Error::new(err.io_kind(), err.to_string())
    }
}

/// Opens `path` for reading without blocking and returns it only if it is a regular file.
///
/// The descriptor is left in non-blocking mode, which has no effect on regular files.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), UntrustedReadError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| UntrustedReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    check_regular(file, path)
}

/// The checks of [`open_regular`] for a descriptor opened some other way (e.g. `openat2`
/// confined to a container root, with `O_NONBLOCK`): `fstat`, and refuse a non-regular file.
/// `path` only names the file in errors.
pub fn check_regular(file: File, path: &Path) -> Result<(File, Metadata), UntrustedReadError> {
    let metadata = file.metadata().map_err(|source| UntrustedReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.file_type().is_file() {
        return Err(UntrustedReadError::NotRegular {
            path: path.to_path_buf(),
            kind: file_kind(&metadata),
        });
    }
    Ok((file, metadata))
}

/// Reads the whole of the regular file at `path`, refusing it if it is larger than `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, UntrustedReadError> {
    let (file, metadata) = open_regular(path)?;
    if metadata.len() > cap {
        return Err(UntrustedReadError::TooLarge {
            path: path.to_path_buf(),
            size: metadata.len(),
            cap,
        });
    }
    read_open_capped(file, path, cap, metadata.len())
}

/// [`read_capped`], then UTF-8 validation.
pub fn read_capped_string(path: &Path, cap: u64) -> Result<String, UntrustedReadError> {
    let bytes = read_capped(path, cap)?;
    String::from_utf8(bytes).map_err(|_| UntrustedReadError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Reads an already opened (and checked) file with the same cap; `size_hint` pre-sizes the buffer.
pub fn read_open_capped(
    file: File,
    path: &Path,
    cap: u64,
    size_hint: u64,
) -> Result<Vec<u8>, UntrustedReadError> {
    // A hint above the cap is not trusted for the allocation; the cap check below decides.
    let mut buf = Vec::with_capacity(size_hint.min(cap) as usize);
    // Read one byte past the cap so a file that grew after fstat is still refused.
    file.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| UntrustedReadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > cap {
        return Err(UntrustedReadError::TooLarge {
            path: path.to_path_buf(),
            size: buf.len() as u64,
            cap,
        });
    }
    Ok(buf)
}

fn file_kind(metadata: &Metadata) -> &'static str {
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reads_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.desktop");
        std::fs::write(&path, b"[Desktop Entry]\n").unwrap();
        assert_eq!(read_capped(&path, 1024).unwrap(), b"[Desktop Entry]\n");
        assert_eq!(
            read_capped_string(&path, 1024).unwrap(),
            "[Desktop Entry]\n"
        );
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.theme");
        nix_mkfifo(&path);
        let started = Instant::now();
        let err = read_capped(&path, 1024).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(err, UntrustedReadError::NotRegular { kind: "FIFO", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("index.theme"), "{err}");
    }

    #[test]
    fn directory_and_device_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_capped(dir.path(), 1024).unwrap_err();
        assert!(
            matches!(
                err,
                UntrustedReadError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
        let err = read_capped(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(
            matches!(
                err,
                UntrustedReadError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn file_over_the_cap_is_refused_and_exact_cap_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_capped(&path, 100).unwrap().len(), 100);
        let err = read_capped(&path, 99).unwrap_err();
        assert!(
            matches!(
                err,
                UntrustedReadError::TooLarge {
                    size: 100,
                    cap: 99,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_reported_as_not_found() {
        let err = read_capped(Path::new("/nonexistent/x"), 10).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn symlink_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let err = read_capped(&a, 10).unwrap_err();
        assert!(matches!(err, UntrustedReadError::Open { .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = read_capped_string(&path, 10).unwrap_err();
        assert!(matches!(err, UntrustedReadError::NotUtf8 { .. }), "{err}");
    }

    #[test]
    fn check_regular_refuses_an_opened_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        nix_mkfifo(&fifo);
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let err = check_regular(opened, &fifo).unwrap_err();
        assert!(
            matches!(err, UntrustedReadError::NotRegular { kind: "FIFO", .. }),
            "{err}"
        );
        let file = dir.path().join("r");
        std::fs::write(&file, b"ok").unwrap();
        let (_, meta) = check_regular(File::open(&file).unwrap(), &file).unwrap();
        assert_eq!(meta.len(), 2);
    }

    fn nix_mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }
}
