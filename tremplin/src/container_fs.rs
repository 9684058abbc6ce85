//! Direct access to a container's root file system on the host (§4.6):
//! `$LXD_DIR/containers/<name>/rootfs/<path>`, working whether or not the container runs.
//!
//! Id shifting: an old-style rootfs is stored shifted (its owner is the LXD base id, e.g.
//! 1000000 on Termina, 100000 on a stock Debian host) and container ids are written as
//! `id + base`, except the four ids identity-mapped by `raw.idmap`. With idmapped mounts the
//! rootfs is owned by 0 and ids are used as-is. The base is taken from the rootfs owner
//! rather than hard-coded, so both layouts work.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crostini_common::untrusted_file::{self, UntrustedReadError};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

mod in_root;

/// Largest container file [`ContainerFs::read`] accepts (passwd, group, shadow, os-release,
/// skel files): they are container-controlled, so a 5 GB "passwd" must not bloat tremplin.
pub const MAX_READ: u64 = 16 * 1024 * 1024;
/// Deepest directory nesting [`ContainerFs::copy_tree`] follows below its source.
pub const MAX_COPY_DEPTH: usize = 32;

/// Ids identity-mapped by the profile's `raw.idmap` (spec §4.6).
pub const IDENTITY_IDS: [u32; 4] = [1000, 1001, 655360, 665357];

/// Container id ↔ on-disk id mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdShift {
    /// 0 = not shifted.
    pub base: u32,
    /// Ids mapped to themselves (the profile's raw.idmap).
    pub identity: Vec<u32>,
}

impl IdShift {
    /// The mapping implied by the rootfs owner uid, with the spec's four identity ids.
    pub fn from_rootfs_owner(uid: u32) -> IdShift {
        IdShift {
            base: uid,
            identity: IDENTITY_IDS.to_vec(),
        }
    }

    pub fn is_shifted(&self) -> bool {
        self.base != 0
    }

    /// Container → disk.
    pub fn to_disk(&self, id: u32) -> u32 {
        if !self.is_shifted() || self.identity.contains(&id) {
            id
        } else {
            id.saturating_add(self.base)
        }
    }

    /// Disk → container.
    pub fn to_container(&self, id: u32) -> u32 {
        if !self.is_shifted() || self.identity.contains(&id) || id < self.base {
            id
        } else {
            id - self.base
        }
    }
}

/// Failure of a container file operation.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path} in container {container}: {source}")]
pub struct FsError {
    pub op: &'static str,
    pub container: String,
    pub path: String,
    #[source]
    pub source: io::Error,
}

/// A container's rootfs.
#[derive(Debug, Clone)]
pub struct ContainerFs {
    name: String,
    rootfs: PathBuf,
    shift: IdShift,
}

impl ContainerFs {
    /// Opens `$lxd_dir/containers/<name>/rootfs` (fails when it does not exist); `identity`
    /// are the ids the profile's raw.idmap maps to themselves.
    pub fn open(lxd_dir: &Path, name: &str, identity: Vec<u32>) -> Result<ContainerFs, FsError> {
        let rootfs = lxd_dir.join("containers").join(name).join("rootfs");
        let mut fs = ContainerFs::at(name, rootfs)?;
        fs.shift.identity = identity;
        Ok(fs)
    }

    /// Opens an explicit rootfs directory.
    pub fn at(name: &str, rootfs: PathBuf) -> Result<ContainerFs, FsError> {
        let meta = std::fs::metadata(&rootfs).map_err(|source| FsError {
            op: "stat",
            container: name.to_string(),
            path: "/".to_string(),
            source,
        })?;
        Ok(ContainerFs {
            name: name.to_string(),
            rootfs,
            shift: IdShift::from_rootfs_owner(meta.uid()),
        })
    }

    pub fn shift(&self) -> &IdShift {
        &self.shift
    }

    fn err(&self, op: &'static str, path: &str, source: io::Error) -> FsError {
        FsError {
            op,
            container: self.name.clone(),
            path: path.to_string(),
            source,
        }
    }

    /// Host path of an absolute container path; `..` components are rejected.
    pub fn host_path(&self, path: &str) -> Result<PathBuf, FsError> {
        let rel = Path::new(path);
        let mut out = self.rootfs.clone();
        for c in rel.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(p) => out.push(p),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(self.err(
                        "resolve",
                        path,
                        io::Error::new(io::ErrorKind::InvalidInput, "'..' is not allowed"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Host path of `path` with symlinks inside the container resolved against the container
    /// root (at most 40 hops).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, FsError> {
        let mut current = path.to_string();
        for _ in 0..40 {
            let host = self.host_path(&current)?;
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target =
                        std::fs::read_link(&host).map_err(|e| self.err("readlink", &current, e))?;
                    let target = target.to_string_lossy().into_owned();
                    current = if target.starts_with('/') {
                        target
                    } else {
                        let parent = Path::new(&current)
                            .parent()
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "/".to_string());
                        normalize(&format!("{parent}/{target}"))
                    };
                }
                _ => return Ok(host),
            }
        }
        Err(self.err(
            "resolve",
            path,
            io::Error::other("too many levels of symbolic links"),
        ))
    }

    /// Reads a regular file of at most [`MAX_READ`] bytes, following symlinks within the
    /// container (see [`ContainerFs::read_regular`]).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        self.read_regular(path, MAX_READ)
            .map(|(content, _)| content)
    }

    /// Reads the regular file at container path `path` through
    /// `crostini_common::untrusted_file` (non-blocking open, `fstat`, regular files only,
    /// at most `cap` bytes), returning its content and metadata.
    ///
    /// The open is `openat2(RESOLVE_IN_ROOT)` on the rootfs, so every symlink — in any
    /// component, absolute or relative — resolves inside the container and can never reach a
    /// host file. Kernels without `openat2` (< 5.6) fall back to [`ContainerFs::resolve`].
    pub fn read_regular(
        &self,
        path: &str,
        cap: u64,
    ) -> Result<(Vec<u8>, std::fs::Metadata), FsError> {
        let host = self.host_path(path)?;
        let untrusted = |e: UntrustedReadError| self.err("read", path, e.into());
        let file = match in_root::open(
            &self.rootfs,
            path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(file) => file,
            Err(nix::errno::Errno::ENOSYS) => {
                let (file, _) =
                    untrusted_file::open_regular(&self.resolve(path)?).map_err(untrusted)?;
                file
            }
            Err(e) => return Err(self.err("open", path, io::Error::from(e))),
        };
        let (file, meta) = untrusted_file::check_regular(file, &host).map_err(untrusted)?;
        let content =
            untrusted_file::read_open_capped(file, &host, cap, meta.len()).map_err(untrusted)?;
        Ok((content, meta))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.host_path(path).map(|p| p.exists()).unwrap_or(false)
    }

    /// Writes (overwrites) a regular file, then chowns (container ids) and chmods it.
    ///
    /// Writes, creations and removals resolve the path inside the rootfs like reads do
    /// (`in_root`), and ownership and mode are set on the opened descriptor, so no container
    /// symlink can make tremplin write, chown or delete a host file. A FIFO or device at
    /// `path` is refused without blocking.
    pub fn write(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), FsError> {
        let file = self.open_for_writing(path, OFlag::O_TRUNC)?;
        (&file)
            .write_all(content)
            .map_err(|e| self.err("write", path, e))?;
        self.fchown_fchmod(path, &file, mode, uid, gid)
    }

    /// Creates a directory and its parents; sets owner and mode of the last component.
    pub fn mkdir(&self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<(), FsError> {
        let host = self.host_path(path)?;
        let dir = match in_root::mkdir_all(&self.rootfs, path) {
            Ok(dir) => dir,
            Err(Errno::ENOSYS) => std::fs::create_dir_all(&host)
                .and_then(|()| std::fs::File::open(&host))
                .map_err(|e| self.err("mkdir", path, e))?,
            Err(e) => return Err(self.err("mkdir", path, e.into())),
        };
        self.fchown_fchmod(path, &dir, mode, uid, gid)
    }

    /// Creates a file if missing (content untouched otherwise), then chown/chmod.
    pub fn touch(&self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<(), FsError> {
        let file = self.open_for_writing(path, OFlag::O_APPEND)?;
        self.fchown_fchmod(path, &file, mode, uid, gid)
    }

    /// Removes a file, a symlink (not its target) or a directory tree.
    pub fn remove(&self, path: &str) -> Result<(), FsError> {
        let host = self.host_path(path)?;
        match in_root::remove(&self.rootfs, path) {
            Ok(()) => Ok(()),
            Err(Errno::ENOSYS) => {
                let meta =
                    std::fs::symlink_metadata(&host).map_err(|e| self.err("stat", path, e))?;
                if meta.is_dir() {
                    std::fs::remove_dir_all(&host)
                } else {
                    std::fs::remove_file(&host)
                }
                .map_err(|e| self.err("remove", path, e))
            }
            Err(e) => Err(self.err("remove", path, e.into())),
        }
    }

    /// Opens (creating with 0600 if missing) a regular file for writing; `extra` is
    /// `O_TRUNC` or `O_APPEND`.
    fn open_for_writing(&self, path: &str, extra: OFlag) -> Result<std::fs::File, FsError> {
        let host = self.host_path(path)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | extra;
        let file = match in_root::open(&self.rootfs, path, flags, Mode::from_bits_truncate(0o600)) {
            Ok(file) => file,
            Err(Errno::ENOSYS) => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(extra.contains(OFlag::O_TRUNC))
                .append(extra.contains(OFlag::O_APPEND))
                .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&host)
                .map_err(|e| self.err("create", path, e))?,
            Err(e) => return Err(self.err("create", path, e.into())),
        };
        let meta = file.metadata().map_err(|e| self.err("stat", path, e))?;
        if !meta.is_file() {
            return Err(self.err(
                "write",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Ok(file)
    }

    /// `lstat` of a container path.
    pub fn symlink_metadata(&self, path: &str) -> Option<std::fs::Metadata> {
        std::fs::symlink_metadata(self.host_path(path).ok()?).ok()
    }

    fn fchown_fchmod(
        &self,
        path: &str,
        file: &std::fs::File,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), FsError> {
        nix::unistd::fchown(
            file,
            Some(nix::unistd::Uid::from_raw(self.shift.to_disk(uid))),
            Some(nix::unistd::Gid::from_raw(self.shift.to_disk(gid))),
        )
        .map_err(|e| self.err("chown", path, e.into()))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.err("chmod", path, e))
    }

    /// Copies the container directory `from` into `to` recursively: content and mode,
    /// owner `uid:gid`, symlinks copied as regular files (§10.2 skel copy).
    ///
    /// The source is container-controlled: files are read with [`ContainerFs::read_regular`]
    /// (symlinks resolve inside the container, FIFOs and devices are skipped, each file is
    /// capped), symlinked directories are not followed and nesting stops at
    /// [`MAX_COPY_DEPTH`].
    pub fn copy_tree(&self, from: &str, to: &str, uid: u32, gid: u32) -> Result<(), FsError> {
        self.copy_tree_at(from, to, uid, gid, 0)
    }

    fn copy_tree_at(
        &self,
        from: &str,
        to: &str,
        uid: u32,
        gid: u32,
        depth: usize,
    ) -> Result<(), FsError> {
        let src = self.host_path(from)?;
        let entries = std::fs::read_dir(&src).map_err(|e| self.err("read_dir", from, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.err("read_dir", from, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_from = format!("{}/{name}", from.trim_end_matches('/'));
            let child_to = format!("{}/{name}", to.trim_end_matches('/'));
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if depth + 1 >= MAX_COPY_DEPTH {
                    tracing::warn!(
                        "not copying {child_from} in {}: deeper than {MAX_COPY_DEPTH} levels",
                        self.name
                    );
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                self.mkdir(&child_to, meta.mode() & 0o7777, uid, gid)?;
                self.copy_tree_at(&child_from, &child_to, uid, gid, depth + 1)?;
            } else if kind.is_file() || kind.is_symlink() {
                // A link becomes a copy of its target (dangling or non-file targets are skipped).
                match self.read_regular(&child_from, MAX_READ) {
                    Ok((content, meta)) => {
                        self.write(&child_to, &content, meta.mode() & 0o7777, uid, gid)?
                    }
                    Err(e) => tracing::warn!("not copying {child_from}: {e}"),
                }
            }
        }
        Ok(())
    }
}

/// Lexically normalizes an absolute container path (`a/./b/../c` → `/a/c`).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests;
