//! Direct access to a container's root file system on the host (§4.6):
//! `$LXD_DIR/containers/<name>/rootfs/<path>`, working whether or not the container runs.
//!
//! Id shifting: an old-style rootfs is stored shifted (its owner is the LXD base id, e.g.
//! 1000000 on Termina, 100000 on a stock Debian host) and container ids are written as
//! `id + base`, except the four ids identity-mapped by `raw.idmap`. With idmapped mounts the
//! rootfs is owned by 0 and ids are used as-is. The base is taken from the rootfs owner
//! rather than hard-coded, so both layouts work.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

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

    /// Reads a file (following symlinks within the container).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let host = self.resolve(path)?;
        std::fs::read(&host).map_err(|e| self.err("read", path, e))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.host_path(path).map(|p| p.exists()).unwrap_or(false)
    }

    /// Writes (overwrites) a file, then chowns (container ids) and chmods it.
    pub fn write(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), FsError> {
        let host = self.host_path(path)?;
        std::fs::write(&host, content).map_err(|e| self.err("write", path, e))?;
        self.chown_chmod(path, &host, mode, uid, gid)
    }

    /// Creates a directory and its parents; sets owner and mode of the last component.
    pub fn mkdir(&self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<(), FsError> {
        let host = self.host_path(path)?;
        std::fs::create_dir_all(&host).map_err(|e| self.err("mkdir", path, e))?;
        self.chown_chmod(path, &host, mode, uid, gid)
    }

    /// Creates a file if missing (content untouched otherwise), then chown/chmod.
    pub fn touch(&self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<(), FsError> {
        let host = self.host_path(path)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&host)
            .map_err(|e| self.err("create", path, e))?;
        self.chown_chmod(path, &host, mode, uid, gid)
    }

    /// Removes a file or directory tree.
    pub fn remove(&self, path: &str) -> Result<(), FsError> {
        let host = self.host_path(path)?;
        let meta = std::fs::symlink_metadata(&host).map_err(|e| self.err("stat", path, e))?;
        if meta.is_dir() {
            std::fs::remove_dir_all(&host)
        } else {
            std::fs::remove_file(&host)
        }
        .map_err(|e| self.err("remove", path, e))
    }

    /// `lstat` of a container path.
    pub fn symlink_metadata(&self, path: &str) -> Option<std::fs::Metadata> {
        std::fs::symlink_metadata(self.host_path(path).ok()?).ok()
    }

    fn chown_chmod(
        &self,
        path: &str,
        host: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), FsError> {
        std::os::unix::fs::chown(
            host,
            Some(self.shift.to_disk(uid)),
            Some(self.shift.to_disk(gid)),
        )
        .map_err(|e| self.err("chown", path, e))?;
        crate::lxd_setup::set_mode(host, mode).map_err(|e| self.err("chmod", path, e))
    }

    /// Copies the container directory `from` into `to` recursively: content and mode,
    /// owner `uid:gid`, symlinks copied as regular files (§10.2 skel copy).
    pub fn copy_tree(&self, from: &str, to: &str, uid: u32, gid: u32) -> Result<(), FsError> {
        let src = self.host_path(from)?;
        let entries = std::fs::read_dir(&src).map_err(|e| self.err("read_dir", from, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.err("read_dir", from, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_from = format!("{}/{name}", from.trim_end_matches('/'));
            let child_to = format!("{}/{name}", to.trim_end_matches('/'));
            // Follows symlinks: a link becomes a copy of its target (dangling links are skipped).
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            let mode = meta.mode() & 0o7777;
            if meta.is_dir() {
                self.mkdir(&child_to, mode, uid, gid)?;
                self.copy_tree(&child_from, &child_to, uid, gid)?;
            } else if meta.is_file() {
                let content =
                    std::fs::read(entry.path()).map_err(|e| self.err("read", &child_from, e))?;
                self.write(&child_to, &content, mode, uid, gid)?;
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
mod tests {
    use super::*;

    #[test]
    fn shift_rules() {
        let s = IdShift::from_rootfs_owner(1_000_000);
        assert_eq!(s.to_disk(0), 1_000_000);
        assert_eq!(s.to_disk(42), 1_000_042);
        for id in IDENTITY_IDS {
            assert_eq!(s.to_disk(id), id);
            assert_eq!(s.to_container(id), id);
        }
        assert_eq!(s.to_container(1_000_042), 42);
        assert_eq!(s.to_container(5), 5);
        let none = IdShift::from_rootfs_owner(0);
        assert_eq!(none.to_disk(42), 42);
        assert_eq!(none.to_container(1_000_042), 1_000_042);
    }

    #[test]
    fn host_path_rejects_dotdot_and_resolve_follows_links_inside_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("usr/lib/os-release"), "ID=debian\n").expect("write");
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release"))
            .expect("link");
        std::os::unix::fs::symlink("/etc/os-release", root.join("etc/abs")).expect("link");
        std::os::unix::fs::symlink("loop", root.join("etc/loop")).expect("link");
        let fs = ContainerFs::at("c", root).expect("open");
        assert!(fs.host_path("/../x").is_err());
        assert_eq!(
            fs.read("/etc/os-release").expect("relative link"),
            b"ID=debian\n"
        );
        assert_eq!(
            fs.read("/etc/abs").expect("absolute link stays in root"),
            b"ID=debian\n"
        );
        assert!(fs.read("/etc/loop").is_err(), "link loop ends");
    }

    #[test]
    fn write_mkdir_touch_copy_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc/skel/sub")).expect("mkdir");
        std::fs::write(root.join("etc/skel/.bashrc"), "x").expect("write");
        std::fs::write(root.join("etc/skel/sub/f"), "y").expect("write");
        std::os::unix::fs::symlink(".bashrc", root.join("etc/skel/link")).expect("link");
        let fs = ContainerFs::at("c", root.clone()).expect("open");
        let me = nix::unistd::getuid().as_raw();
        let my_gid = nix::unistd::getgid().as_raw();
        fs.mkdir("/home/u", 0o755, me, my_gid).expect("mkdir");
        fs.copy_tree("/etc/skel", "/home/u", me, my_gid)
            .expect("copy");
        assert_eq!(
            std::fs::read_to_string(root.join("home/u/sub/f")).expect("read"),
            "y"
        );
        let link = std::fs::symlink_metadata(root.join("home/u/link")).expect("stat");
        assert!(link.is_file(), "symlink copied as a regular file");
        fs.write("/etc/x", b"abc", 0o640, me, my_gid)
            .expect("write");
        assert_eq!(
            std::fs::metadata(root.join("etc/x")).expect("stat").mode() & 0o777,
            0o640
        );
        fs.touch("/etc/x", 0o644, me, my_gid).expect("touch");
        assert_eq!(
            fs.read("/etc/x").expect("read"),
            b"abc",
            "touch keeps content"
        );
        fs.remove("/home/u").expect("remove");
        assert!(!fs.exists("/home/u"));
    }
}
