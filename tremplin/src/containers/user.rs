//! GetContainerUsername (§8.5) and SetUpUser (§8.6), editing the container's passwd database on
//! disk (§10) with the uid shift rules of §4.6.

use std::time::{SystemTime, UNIX_EPOCH};

use crostini_proto::vm_tools::tremplin as pb;
use pb::get_container_username_response::Status as NameStatus;
use pb::set_up_user_response::Status;

use super::check_container_name;
use crate::container_fs::{ContainerFs, FsError};
use crate::daemon::{Daemon, LXD_NOT_RUNNING};
use crate::passwd::{valid_username, PasswdDb, PasswdFiles};

/// Users ensured by SetUpUser after the primary one: (name, id).
const SYSTEM_USERS: [(&str, u32); 3] = [
    ("chronos-access", 1001),
    ("android-everybody", 665357),
    ("android-root", 655360),
];
const REQUIRED_GROUPS: [&str; 2] = ["android-everybody", "chronos-access"];
const OPTIONAL_GROUPS: [&str; 10] = [
    "audio", "cdrom", "dialout", "floppy", "kvm", "libvirt", "plugdev", "sudo", "users", "video",
];
const PRIMARY_UID: u32 = 1000;

/// Loads the four files from a container.
pub fn load_db(fs: &ContainerFs) -> Result<PasswdDb, String> {
    let read = |p: &str| -> Result<String, String> {
        fs.read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e: FsError| e.to_string())
    };
    let files = PasswdFiles {
        passwd: read("/etc/passwd")?,
        shadow: read("/etc/shadow")?,
        group: read("/etc/group")?,
        gshadow: read("/etc/gshadow")?,
    };
    PasswdDb::parse(&files).map_err(|e| e.to_string())
}

/// Saves the four files (§10.1 modes and owners).
pub fn save_db(fs: &ContainerFs, db: &PasswdDb) -> Result<(), FsError> {
    let files = db.render();
    let shadow_gid = db.gid_of("shadow").unwrap_or(0);
    fs.write("/etc/passwd", files.passwd.as_bytes(), 0o644, 0, 0)?;
    fs.write("/etc/group", files.group.as_bytes(), 0o644, 0, 0)?;
    fs.write("/etc/shadow", files.shadow.as_bytes(), 0o640, 0, shadow_gid)?;
    fs.write(
        "/etc/gshadow",
        files.gshadow.as_bytes(),
        0o640,
        0,
        shadow_gid,
    )
}

fn days_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// Home directory handling of §10.2 for a newly appended login user.
fn prepare_home(fs: &ContainerFs, name: &str, uid: u32) -> Result<(), FsError> {
    let home = format!("/home/{name}");
    if let Some(meta) = fs.symlink_metadata(&home) {
        if !meta.is_dir() {
            fs.remove(&home)?;
        }
    }
    if fs.symlink_metadata(&home).is_none() {
        fs.mkdir(&home, 0o755, uid, uid)?;
        if fs.symlink_metadata("/etc/skel").is_some_and(|m| m.is_dir()) {
            fs.copy_tree("/etc/skel", &home, uid, uid)?;
        }
    }
    Ok(())
}

/// The whole SetUpUser edit on an opened container (pure apart from the files).
pub fn set_up_user(fs: &ContainerFs, requested: &str) -> pb::SetUpUserResponse {
    let reply = |status: Status, reason: String, username: String| pb::SetUpUserResponse {
        status: status as i32,
        failure_reason: reason,
        username,
    };
    let mut db = match load_db(fs) {
        Ok(db) => db,
        Err(e) => {
            return reply(
                Status::Unknown,
                format!("failed to get container passwd db: {e}"),
                String::new(),
            )
        }
    };
    let username = db
        .user_by_uid(PRIMARY_UID)
        .map(|e| e.name.clone())
        .unwrap_or_else(|| requested.to_string());
    if !valid_username(&username) {
        return reply(
            Status::Failed,
            format!(
                "invalid username {username:?}: must be non-empty without ':', ',', newline or NUL"
            ),
            String::new(),
        );
    }
    let scrub = |text: String| text.replace(&username, "$USERNAME");
    let days = days_since_epoch();
    let users = std::iter::once((username.as_str(), PRIMARY_UID, true))
        .chain(SYSTEM_USERS.iter().map(|(n, id)| (*n, *id, false)));
    for (name, id, login) in users {
        if let Some(added) = db.ensure_user(name, id, login, days) {
            if login {
                if let Err(e) = prepare_home(fs, &added.name, id) {
                    return reply(
                        Status::Failed,
                        scrub(format!("failed to add user {name}: {e}")),
                        String::new(),
                    );
                }
            }
        }
        db.ensure_group(name, id);
    }
    for group in REQUIRED_GROUPS {
        if let Err(e) = db.add_user_to_group(&username, group) {
            return reply(
                Status::Failed,
                scrub(format!("failed to add user to required group {group}: {e}")),
                String::new(),
            );
        }
    }
    for group in OPTIONAL_GROUPS {
        let _ = db.add_user_to_group(&username, group);
    }
    if let Err(e) = save_db(fs, &db) {
        return reply(
            Status::Failed,
            format!("failed to save passwd db: {e}"),
            String::new(),
        );
    }
    let linger = fs
        .mkdir("/var/lib/systemd/linger", 0o755, 0, 0)
        .and_then(|()| fs.touch(&format!("/var/lib/systemd/linger/{username}"), 0o644, 0, 0));
    if let Err(e) = linger {
        return reply(
            Status::Failed,
            format!("failed to enable linger: {e}"),
            String::new(),
        );
    }
    reply(Status::Success, String::new(), username)
}

impl Daemon {
    fn open_container_fs(&self, name: &str) -> Result<ContainerFs, String> {
        check_container_name(name)?;
        self.container_fs(name).map_err(|e| e.to_string())
    }

    pub async fn get_container_username(
        &self,
        request: pb::GetContainerUsernameRequest,
    ) -> pb::GetContainerUsernameResponse {
        let reply = |status: NameStatus, reason: String| pb::GetContainerUsernameResponse {
            status: status as i32,
            failure_reason: reason,
            ..Default::default()
        };
        let name = request.container_name;
        if let Err(e) = check_container_name(&name) {
            return reply(
                NameStatus::ContainerNotFound,
                format!("failed to find container: {e}"),
            );
        }
        let Some(client) = self.lxd() else {
            return reply(NameStatus::Failed, LXD_NOT_RUNNING.to_string());
        };
        if let Err(e) = client.instance(&name).await {
            return reply(
                NameStatus::ContainerNotFound,
                format!("failed to find container: {e}"),
            );
        }
        let db = match self.open_container_fs(&name).and_then(|fs| load_db(&fs)) {
            Ok(db) => db,
            Err(e) => {
                return reply(
                    NameStatus::Failed,
                    format!("failed to get container passwd db: {e}"),
                )
            }
        };
        match db.user_by_uid(PRIMARY_UID) {
            Some(user) => pb::GetContainerUsernameResponse {
                status: NameStatus::Success as i32,
                username: user.name.clone(),
                failure_reason: String::new(),
                homedir: user.home.clone(),
            },
            None => reply(
                NameStatus::UserNotFound,
                "failed to find user for uid".to_string(),
            ),
        }
    }

    pub async fn set_up_user(&self, request: pb::SetUpUserRequest) -> pb::SetUpUserResponse {
        let fs = match self.open_container_fs(&request.container_name) {
            Ok(fs) => fs,
            Err(e) => {
                return pb::SetUpUserResponse {
                    status: Status::Unknown as i32,
                    failure_reason: format!("failed to get container passwd db: {e}"),
                    username: String::new(),
                }
            }
        };
        let requested = request.container_username;
        tokio::task::spawn_blocking(move || set_up_user(&fs, &requested))
            .await
            .unwrap_or_else(|e| pb::SetUpUserResponse {
                status: Status::Failed as i32,
                failure_reason: format!("user setup task failed: {e}"),
                username: String::new(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn rootfs(dir: &std::path::Path, passwd_extra: &str) -> ContainerFs {
        let root = dir.join("rootfs");
        for d in ["etc/skel/.config", "home", "var/lib"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("etc/skel/.bashrc"), "# bashrc\n").expect("write");
        std::fs::write(root.join("etc/skel/.config/x"), "y").expect("write");
        std::fs::write(
            root.join("etc/passwd"),
            format!("root:x:0:0:root:/root:/bin/bash\n{passwd_extra}"),
        )
        .expect("write");
        std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").expect("write");
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nshadow:x:42:\nsudo:x:27:\naudio:x:29:\nusers:x:100:\n",
        )
        .expect("write");
        std::fs::write(
            root.join("etc/gshadow"),
            "root:*::\nshadow:*::\nsudo:*::\naudio:*::\nusers:*::\n",
        )
        .expect("write");
        ContainerFs::at("c", root).expect("open")
    }

    #[test]
    fn set_up_user_writes_files_home_groups_linger_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = rootfs(dir.path(), "");
        let r = set_up_user(&fs, "alice");
        assert_eq!(r.status, Status::Success as i32, "{r:?}");
        assert_eq!(r.username, "alice");
        let root = dir.path().join("rootfs");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("read");
        let passwd = read("etc/passwd");
        assert!(
            passwd.contains("alice:x:1000:1000:alice:/home/alice:/bin/bash\n"),
            "{passwd}"
        );
        assert!(passwd.contains("chronos-access:x:1001:1001:chronos-access:/dev/null:/bin/false\n"));
        assert!(passwd.contains("android-everybody:x:665357:665357:"));
        assert!(passwd.contains("android-root:x:655360:655360:"));
        let group = read("etc/group");
        assert!(group.contains("sudo:x:27:alice\n"), "{group}");
        assert!(group.contains("chronos-access:x:1001:alice\n"), "{group}");
        assert!(
            group.contains("android-everybody:x:665357:alice\n"),
            "{group}"
        );
        assert!(read("etc/gshadow").contains("audio:*::alice\n"));
        let shadow_meta = std::fs::metadata(root.join("etc/shadow")).expect("stat");
        assert_eq!(shadow_meta.mode() & 0o777, 0o640);
        assert_eq!(shadow_meta.gid(), 42, "group shadow");
        assert_eq!(
            std::fs::metadata(root.join("etc/passwd"))
                .expect("stat")
                .mode()
                & 0o777,
            0o644
        );
        let home = std::fs::metadata(root.join("home/alice")).expect("home");
        assert_eq!(
            (home.uid(), home.gid(), home.mode() & 0o777),
            (1000, 1000, 0o755)
        );
        assert_eq!(read("home/alice/.config/x"), "y");
        assert_eq!(
            std::fs::metadata(root.join("home/alice/.bashrc"))
                .expect("stat")
                .uid(),
            1000
        );
        assert!(root.join("var/lib/systemd/linger/alice").is_file());
        let snapshot: Vec<String> = ["etc/passwd", "etc/shadow", "etc/group", "etc/gshadow"]
            .iter()
            .map(|p| read(p))
            .collect();
        let again = set_up_user(&fs, "alice");
        assert_eq!(again.status, Status::Success as i32);
        let after: Vec<String> = ["etc/passwd", "etc/shadow", "etc/group", "etc/gshadow"]
            .iter()
            .map(|p| read(p))
            .collect();
        assert_eq!(snapshot, after, "re-run is byte-identical");
    }

    #[test]
    fn existing_uid_1000_keeps_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = rootfs(dir.path(), "bob:x:1000:1000:Bob:/home/bob:/bin/zsh\n");
        let r = set_up_user(&fs, "alice");
        assert_eq!(
            (r.status, r.username.as_str()),
            (Status::Success as i32, "bob")
        );
        let passwd = std::fs::read_to_string(dir.path().join("rootfs/etc/passwd")).expect("read");
        assert!(
            passwd.contains("bob:x:1000:1000:Bob:/home/bob:/bin/zsh\n"),
            "untouched: {passwd}"
        );
        assert!(!passwd.contains("alice"));
    }

    #[test]
    fn bad_username_and_broken_passwd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = rootfs(dir.path(), "");
        for bad in ["", "a:b", "a,b"] {
            assert_eq!(
                set_up_user(&fs, bad).status,
                Status::Failed as i32,
                "{bad:?}"
            );
        }
        std::fs::write(
            dir.path().join("rootfs/etc/passwd"),
            "daemon:x:1:1::/:/bin/false\n",
        )
        .expect("write");
        let r = set_up_user(&fs, "alice");
        assert_eq!(r.status, Status::Unknown as i32, "no root entry: {r:?}");
        assert!(r
            .failure_reason
            .starts_with("failed to get container passwd db"));
    }
}
