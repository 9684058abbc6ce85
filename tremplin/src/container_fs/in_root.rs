//! Opening, creating and removing paths of a container rootfs with every symlink resolved
//! inside the rootfs (`openat2(RESOLVE_IN_ROOT)`), so a container can never point tremplin
//! (root on the VM) at a host file: not through an absolute link, not through a link in an
//! intermediate component, not through a `/proc` magic link.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// The rootfs as an `O_PATH` directory descriptor.
fn root_fd(rootfs: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

fn open_at(root: &OwnedFd, path: &str, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    // openat2 refuses O_PATH with anything but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_CLOEXEC
    } else {
        OFlag::O_CLOEXEC | OFlag::O_NOCTTY
    };
    let how = OpenHow::new()
        .flags(flags | extra)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, relative(path), how)
}

/// Opens container path `path` with `flags` (`mode` for `O_CREAT`). `ENOSYS` means the
/// kernel has no `openat2` (< 5.6).
pub fn open(rootfs: &Path, path: &str, flags: OFlag, mode: Mode) -> nix::Result<File> {
    let root = root_fd(rootfs)?;
    open_at(&root, path, flags, mode).map(File::from)
}

/// Splits `/a/b/c` into (`/a/b`, `c`); `None` for the root itself.
fn split_last(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    (!name.is_empty()).then_some((parent, name))
}

/// `mkdir -p` inside the rootfs; returns the last directory opened for reading (for
/// `fchown`/`fchmod`). New directories get mode 0755 (callers set the final mode).
pub fn mkdir_all(rootfs: &Path, path: &str) -> nix::Result<File> {
    let root = root_fd(rootfs)?;
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let parent = if prefix.is_empty() {
            "."
        } else {
            prefix.as_str()
        };
        let parent_fd = open_at(
            &root,
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        match nix::sys::stat::mkdirat(parent_fd.as_fd(), part, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        prefix.push('/');
        prefix.push_str(part);
    }
    open_at(
        &root,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .map(File::from)
}

/// Deepest directory tree [`remove`] deletes.
const MAX_REMOVE_DEPTH: usize = 256;

/// Removes the file, symlink (not its target) or directory tree at `path`, its parent
/// resolved inside the rootfs; the tree is walked by descriptor without following links.
pub fn remove(rootfs: &Path, path: &str) -> nix::Result<()> {
    let (parent, name) = split_last(path).ok_or(Errno::EINVAL)?;
    let root = root_fd(rootfs)?;
    let parent_fd = open_at(
        &root,
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    remove_at(&parent_fd, name, 0)
}

fn remove_at(parent: &OwnedFd, name: &str, depth: usize) -> nix::Result<()> {
    use nix::unistd::{unlinkat, UnlinkatFlags};
    let st = nix::sys::stat::fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if (st.st_mode & libc::S_IFMT) != libc::S_IFDIR {
        return unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir);
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(Errno::ELOOP);
    }
    let dir_fd = nix::fcntl::openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // Listed through the descriptor (its /proc link names the directory already opened).
    let listing = format!("/proc/self/fd/{}", dir_fd.as_raw_fd());
    let names: Vec<String> = std::fs::read_dir(&listing)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    for child in names {
        remove_at(&dir_fd, &child, depth + 1)?;
    }
    unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_intermediate_links_stay_in_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        let host = dir.path().join("host");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::create_dir_all(&host).expect("mkdir");
        std::fs::write(host.join("passwd"), "host").expect("write");
        // /etc/passwd -> <host>/passwd and /home -> <host>: both absolute, both host paths.
        std::os::unix::fs::symlink(host.join("passwd"), root.join("etc/passwd")).expect("ln");
        std::os::unix::fs::symlink(&host, root.join("home")).expect("ln");
        let f = open(
            &root,
            "/etc/passwd",
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
            Mode::from_bits_truncate(0o644),
        );
        // The link's target is resolved in the root, where <host> does not exist.
        assert_eq!(f.err(), Some(Errno::ENOENT));
        mkdir_all(&root, "/home/u").expect_err("no such dir inside the root");
        assert!(!host.join("u").exists(), "created on the host");
        assert_eq!(std::fs::read(host.join("passwd")).expect("read"), b"host");
        remove(&root, "/etc/passwd").expect("removes the link itself");
        assert!(host.join("passwd").exists());
        mkdir_all(&root, "/var/lib/x").expect("mkdir -p");
        assert!(root.join("var/lib/x").is_dir());
        // A tree with a link to a host directory: the link goes, the host files stay.
        std::fs::create_dir_all(root.join("tmp/t/sub")).expect("mkdir");
        std::fs::write(root.join("tmp/t/sub/f"), "x").expect("write");
        std::os::unix::fs::symlink(&host, root.join("tmp/t/hostlink")).expect("ln");
        remove(&root, "/tmp/t").expect("remove tree");
        assert!(!root.join("tmp/t").exists());
        assert!(
            host.join("passwd").exists(),
            "followed a link while removing"
        );
        assert_eq!(split_last("/"), None);
        assert_eq!(split_last("/a/b/"), Some(("/a", "b")));
    }
}
