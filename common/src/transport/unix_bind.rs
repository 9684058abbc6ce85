//! Binding a unix socket whose file has the wanted mode from the first moment it is reachable.
//!
//! `bind(2)` creates the file with `0777 & !umask`, and `fchmod` on a socket does not change it.
//! Changing the process umask around `bind` would race with every other thread creating files,
//! and `bind` then `chmod` in place leaves a window in which anyone may connect. So the socket
//! is bound in a fresh private directory (mode 0700) next to the target, chmod-ed there where
//! nobody else can reach it, and then renamed into place (atomic, same filesystem). A connection
//! by path resolves to the socket's inode, so the renamed socket accepts as usual.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Removes the private directory when binding is over (it is empty after the rename).
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn private_dir(parent: &Path) -> io::Result<PrivateDir> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: the staging path must fit `sun_path` (108 bytes) too, 11 bytes more than the
        // parent for pids below 100000.
        let dir = parent.join(format!(".s{}.{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(PrivateDir(dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Binds a unix listener at `path` whose file has exactly `mode`, race-free (module docs).
pub(super) fn bind_with_mode(
    path: &Path,
    mode: u32,
) -> io::Result<std::os::unix::net::UnixListener> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("/"),
    };
    let dir = private_dir(parent)?;
    let staging = dir.0.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&staging)?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&staging, path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
