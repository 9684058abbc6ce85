//! The container's passwd database (§10): `/etc/passwd`, `/etc/shadow`, `/etc/group`,
//! `/etc/gshadow` parsed, edited and rendered as text. File access and id shifting live in
//! `container_fs`; this module is pure.

use std::fmt::Write as _;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

/// One `/etc/shadow` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    pub name: String,
    pub password: String,
    pub last_change: Option<u64>,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub warn: Option<u64>,
    pub inactive: Option<u64>,
    pub expire: Option<u64>,
    pub reserved: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub password: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// One `/etc/gshadow` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GshadowEntry {
    pub name: String,
    pub password: String,
    pub admins: Vec<String>,
    pub members: Vec<String>,
}

/// The four files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswdDb {
    pub passwd: Vec<PasswdEntry>,
    pub shadow: Vec<ShadowEntry>,
    pub group: Vec<GroupEntry>,
    pub gshadow: Vec<GshadowEntry>,
}

/// The four files as text (input of [`PasswdDb::parse`], output of [`PasswdDb::render`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswdFiles {
    pub passwd: String,
    pub shadow: String,
    pub group: String,
    pub gshadow: String,
}

/// A parse or edit failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswdError {
    #[error("{file} line {line}: expected {expected} fields, found {found}")]
    FieldCount {
        file: &'static str,
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("{file} line {line}: empty name")]
    EmptyName { file: &'static str, line: usize },
    #[error("{file} line {line}: {field} {value:?} is not a number")]
    BadNumber {
        file: &'static str,
        line: usize,
        field: &'static str,
        value: String,
    },
    #[error("{file} line {line}: list {value:?} has an empty element")]
    BadList {
        file: &'static str,
        line: usize,
        value: String,
    },
    #[error("passwd has no root entry (file incomplete?)")]
    NoRoot,
    #[error("group {0} does not exist in group and gshadow")]
    NoSuchGroup(String),
}

type Result<T> = std::result::Result<T, PasswdError>;

/// Non-blank lines split into trimmed fields, with their 1-based line numbers.
fn records<'a>(
    text: &'a str,
    file: &'static str,
    expected: usize,
) -> impl Iterator<Item = Result<(usize, Vec<&'a str>)>> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, l)| {
            let fields: Vec<&str> = l.trim().split(':').map(str::trim).collect();
            if fields.len() != expected {
                return Err(PasswdError::FieldCount {
                    file,
                    line: i + 1,
                    expected,
                    found: fields.len(),
                });
            }
            if fields[0].is_empty() {
                return Err(PasswdError::EmptyName { file, line: i + 1 });
            }
            Ok((i + 1, fields))
        })
}

fn id(file: &'static str, line: usize, field: &'static str, v: &str) -> Result<u32> {
    v.parse::<u32>().map_err(|_| PasswdError::BadNumber {
        file,
        line,
        field,
        value: v.to_string(),
    })
}

fn opt_num(file: &'static str, line: usize, field: &'static str, v: &str) -> Result<Option<u64>> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<u64>()
        .map(Some)
        .map_err(|_| PasswdError::BadNumber {
            file,
            line,
            field,
            value: v.to_string(),
        })
}

fn list(file: &'static str, line: usize, v: &str) -> Result<Vec<String>> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<String> = v.split(',').map(str::to_string).collect();
    if items.iter().any(String::is_empty) {
        return Err(PasswdError::BadList {
            file,
            line,
            value: v.to_string(),
        });
    }
    Ok(items)
}

fn num_str(v: Option<u64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

impl PasswdDb {
    /// Parses the four files (§10.1). Any malformed line fails the whole load, and passwd must
    /// contain `root`.
    pub fn parse(files: &PasswdFiles) -> Result<PasswdDb> {
        let mut db = PasswdDb::default();
        for r in records(&files.passwd, "passwd", 7) {
            let (n, f) = r?;
            db.passwd.push(PasswdEntry {
                name: f[0].to_string(),
                password: f[1].to_string(),
                uid: id("passwd", n, "uid", f[2])?,
                gid: id("passwd", n, "gid", f[3])?,
                gecos: f[4].to_string(),
                home: f[5].to_string(),
                shell: f[6].to_string(),
            });
        }
        for r in records(&files.shadow, "shadow", 9) {
            let (n, f) = r?;
            db.shadow.push(ShadowEntry {
                name: f[0].to_string(),
                password: f[1].to_string(),
                last_change: opt_num("shadow", n, "lastchange", f[2])?,
                min: opt_num("shadow", n, "min", f[3])?,
                max: opt_num("shadow", n, "max", f[4])?,
                warn: opt_num("shadow", n, "warn", f[5])?,
                inactive: opt_num("shadow", n, "inactive", f[6])?,
                expire: opt_num("shadow", n, "expire", f[7])?,
                reserved: f[8].to_string(),
            });
        }
        for r in records(&files.group, "group", 4) {
            let (n, f) = r?;
            db.group.push(GroupEntry {
                name: f[0].to_string(),
                password: f[1].to_string(),
                gid: id("group", n, "gid", f[2])?,
                members: list("group", n, f[3])?,
            });
        }
        for r in records(&files.gshadow, "gshadow", 4) {
            let (n, f) = r?;
            db.gshadow.push(GshadowEntry {
                name: f[0].to_string(),
                password: f[1].to_string(),
                admins: list("gshadow", n, f[2])?,
                members: list("gshadow", n, f[3])?,
            });
        }
        if !db.passwd.iter().any(|e| e.name == "root") {
            return Err(PasswdError::NoRoot);
        }
        Ok(db)
    }

    /// Renders the four files, one `\n`-terminated line per entry.
    pub fn render(&self) -> PasswdFiles {
        let mut out = PasswdFiles::default();
        for e in &self.passwd {
            let _ = writeln!(
                out.passwd,
                "{}:{}:{}:{}:{}:{}:{}",
                e.name, e.password, e.uid, e.gid, e.gecos, e.home, e.shell
            );
        }
        for e in &self.shadow {
            let _ = writeln!(
                out.shadow,
                "{}:{}:{}:{}:{}:{}:{}:{}:{}",
                e.name,
                e.password,
                num_str(e.last_change),
                num_str(e.min),
                num_str(e.max),
                num_str(e.warn),
                num_str(e.inactive),
                num_str(e.expire),
                e.reserved
            );
        }
        for e in &self.group {
            let _ = writeln!(
                out.group,
                "{}:{}:{}:{}",
                e.name,
                e.password,
                e.gid,
                e.members.join(",")
            );
        }
        for e in &self.gshadow {
            let _ = writeln!(
                out.gshadow,
                "{}:{}:{}:{}",
                e.name,
                e.password,
                e.admins.join(","),
                e.members.join(",")
            );
        }
        out
    }

    /// First passwd entry with `uid`.
    pub fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    /// Gid of the group called `name`.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.group.iter().find(|g| g.name == name).map(|g| g.gid)
    }

    /// Ensure user (§10.2). Returns the appended entry when something changed (the caller then
    /// takes care of the home directory for login users), `None` when an entry already
    /// matched both name and uid.
    pub fn ensure_user(
        &mut self,
        name: &str,
        uid: u32,
        login: bool,
        days_since_epoch: u64,
    ) -> Option<PasswdEntry> {
        if self.passwd.iter().any(|e| e.name == name && e.uid == uid) {
            return None;
        }
        let removed: Vec<String> = self
            .passwd
            .iter()
            .filter(|e| e.name == name || e.uid == uid)
            .map(|e| e.name.clone())
            .collect();
        self.passwd.retain(|e| !(e.name == name || e.uid == uid));
        self.shadow
            .retain(|s| s.name != name && !removed.contains(&s.name));
        let (home, shell) = if login {
            (format!("/home/{name}"), "/bin/bash".to_string())
        } else {
            ("/dev/null".to_string(), "/bin/false".to_string())
        };
        let entry = PasswdEntry {
            name: name.to_string(),
            password: "x".to_string(),
            uid,
            gid: uid,
            gecos: name.to_string(),
            home,
            shell,
        };
        self.passwd.push(entry.clone());
        self.shadow.push(ShadowEntry {
            name: name.to_string(),
            password: "!".to_string(),
            last_change: Some(days_since_epoch),
            min: Some(0),
            max: Some(99999),
            warn: Some(7),
            inactive: None,
            expire: None,
            reserved: String::new(),
        });
        Some(entry)
    }

    /// Ensure group (§10.2): same matching rule on group + gshadow.
    pub fn ensure_group(&mut self, name: &str, gid: u32) -> bool {
        if self.group.iter().any(|g| g.name == name && g.gid == gid) {
            return false;
        }
        let removed: Vec<String> = self
            .group
            .iter()
            .filter(|g| g.name == name || g.gid == gid)
            .map(|g| g.name.clone())
            .collect();
        self.group.retain(|g| !(g.name == name || g.gid == gid));
        self.gshadow
            .retain(|s| s.name != name && !removed.contains(&s.name));
        self.group.push(GroupEntry {
            name: name.to_string(),
            password: "x".to_string(),
            gid,
            members: Vec::new(),
        });
        self.gshadow.push(GshadowEntry {
            name: name.to_string(),
            password: "!".to_string(),
            admins: Vec::new(),
            members: Vec::new(),
        });
        true
    }

    /// Ensure user in group (§10.2): the group must exist in both files.
    pub fn add_user_to_group(&mut self, user: &str, group: &str) -> Result<()> {
        let g = self.group.iter().position(|g| g.name == group);
        let s = self.gshadow.iter().position(|g| g.name == group);
        let (Some(g), Some(s)) = (g, s) else {
            return Err(PasswdError::NoSuchGroup(group.to_string()));
        };
        if !self.group[g].members.iter().any(|m| m == user) {
            self.group[g].members.push(user.to_string());
        }
        if !self.gshadow[s].members.iter().any(|m| m == user) {
            self.gshadow[s].members.push(user.to_string());
        }
        Ok(())
    }
}

/// [deviation §8.6] A username must be non-empty and free of `:`, `,`, newline and NUL.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', ',', '\n', '\r', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> PasswdFiles {
        PasswdFiles {
            passwd: "root:x:0:0:root:/root:/bin/bash\n\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                .into(),
            shadow: "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n".into(),
            group: "root:x:0:\naudio:x:29:pulse\nsudo:x:27:\nshadow:x:42:\n".into(),
            gshadow: "root:*::\naudio:*::pulse\nsudo:*::\nshadow:*::\n".into(),
        }
    }

    #[test]
    fn parse_render_round_trip_drops_blank_lines_only() {
        let db = PasswdDb::parse(&files()).expect("parses");
        assert_eq!(db.passwd.len(), 2);
        assert_eq!(db.group[1].members, vec!["pulse"]);
        assert_eq!(db.shadow[0].inactive, None);
        let out = db.render();
        assert_eq!(
            out.passwd,
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        );
        assert_eq!(out.shadow, files().shadow);
        assert_eq!(out.group, files().group);
        assert_eq!(out.gshadow, files().gshadow);
        assert_eq!(PasswdDb::parse(&out).expect("reparses"), db);
    }

    #[test]
    fn parse_rejects_malformed_files() {
        let mut f = files();
        f.passwd.push_str("bad:x:1\n");
        assert!(matches!(
            PasswdDb::parse(&f),
            Err(PasswdError::FieldCount {
                file: "passwd",
                line: 4,
                ..
            })
        ));
        let mut f = files();
        f.passwd = "root:x:zero:0:root:/root:/bin/bash\n".into();
        assert!(matches!(
            PasswdDb::parse(&f),
            Err(PasswdError::BadNumber { field: "uid", .. })
        ));
        let mut f = files();
        f.passwd = "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n".into();
        assert_eq!(PasswdDb::parse(&f), Err(PasswdError::NoRoot));
        let mut f = files();
        f.group.push_str("x:x:5:a,,b\n");
        assert!(matches!(
            PasswdDb::parse(&f),
            Err(PasswdError::BadList { .. })
        ));
        let mut f = files();
        f.shadow.push_str("# comment\n");
        assert!(PasswdDb::parse(&f).is_err(), "comments are not supported");
        let mut f = files();
        f.gshadow.push_str(":x::\n");
        assert!(matches!(
            PasswdDb::parse(&f),
            Err(PasswdError::EmptyName { .. })
        ));
    }

    #[test]
    fn ensure_user_appends_login_and_system_users() {
        let mut db = PasswdDb::parse(&files()).expect("parses");
        let added = db.ensure_user("alice", 1000, true, 19500).expect("added");
        assert_eq!(added.home, "/home/alice");
        assert_eq!(added.shell, "/bin/bash");
        db.ensure_user("chronos-access", 1001, false, 19500);
        let out = db.render();
        assert!(out.passwd.ends_with(
            "alice:x:1000:1000:alice:/home/alice:/bin/bash\nchronos-access:x:1001:1001:chronos-access:/dev/null:/bin/false\n"
        ));
        assert!(out
            .shadow
            .ends_with("alice:!:19500:0:99999:7:::\nchronos-access:!:19500:0:99999:7:::\n"));
        assert_eq!(
            db.ensure_user("alice", 1000, true, 20000),
            None,
            "idempotent"
        );
    }

    #[test]
    fn ensure_user_replaces_entries_matching_name_or_uid() {
        let mut db = PasswdDb::parse(&files()).expect("parses");
        db.ensure_user("old", 1000, true, 1);
        db.ensure_user("alice", 1200, true, 1);
        db.ensure_user("alice", 1000, true, 2);
        let names: Vec<(&str, u32)> = db.passwd.iter().map(|e| (e.name.as_str(), e.uid)).collect();
        assert_eq!(names, vec![("root", 0), ("daemon", 1), ("alice", 1000)]);
        let shadow: Vec<&str> = db.shadow.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(shadow, vec!["root", "daemon", "alice"]);
    }

    #[test]
    fn groups_and_memberships() {
        let mut db = PasswdDb::parse(&files()).expect("parses");
        assert!(db.ensure_group("alice", 1000));
        assert!(!db.ensure_group("alice", 1000));
        db.add_user_to_group("alice", "audio").expect("audio");
        db.add_user_to_group("alice", "audio").expect("again");
        assert_eq!(db.group[1].members, vec!["pulse", "alice"]);
        assert_eq!(db.gshadow[1].members, vec!["pulse", "alice"]);
        assert_eq!(
            db.add_user_to_group("alice", "kvm"),
            Err(PasswdError::NoSuchGroup("kvm".into()))
        );
        let out = db.render();
        assert!(out.group.ends_with("alice:x:1000:\n"));
        assert!(out.gshadow.ends_with("alice:!::\n"));
        assert_eq!(db.gid_of("shadow"), Some(42));
    }

    #[test]
    fn username_validation() {
        assert!(valid_username("alice"));
        for bad in ["", "a:b", "a,b", "a\nb", "a\0b"] {
            assert!(!valid_username(bad), "{bad:?}");
        }
    }

    /// Random files never panic the parser; whatever parses renders to text that parses back
    /// to the same database, and edits keep names and ids unique.
    #[test]
    fn fuzz_parse_render_edit() {
        let alphabet = b"root:x0123,\n \t!*abc:\xc3\xa9";
        let mut s = crostini_common::test_rng::XorShift64::new(0xdead_beef_cafe_f00d);
        let mut parsed = 0;
        for round in 0..4000 {
            let mut f = files();
            let len = (s.next_u64() % 60) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| alphabet[(s.next_u64() % alphabet.len() as u64) as usize])
                .collect();
            let junk = String::from_utf8_lossy(&junk).into_owned();
            match round % 4 {
                0 => f.passwd.push_str(&junk),
                1 => f.shadow.push_str(&junk),
                2 => f.group.push_str(&junk),
                _ => f.gshadow.push_str(&junk),
            }
            let Ok(mut db) = PasswdDb::parse(&f) else {
                continue;
            };
            parsed += 1;
            assert_eq!(PasswdDb::parse(&db.render()).as_ref(), Ok(&db));
            db.ensure_user("alice", 1000, true, 1);
            db.ensure_group("alice", 1000);
            let _ = db.add_user_to_group("alice", "audio");
            let again = PasswdDb::parse(&db.render()).expect("edited db reparses");
            assert_eq!(again, db);
            assert_eq!(db.passwd.iter().filter(|e| e.uid == 1000).count(), 1);
            assert_eq!(db.passwd.iter().filter(|e| e.name == "alice").count(), 1);
            assert_eq!(db.group.iter().filter(|e| e.gid == 1000).count(), 1);
        }
        assert!(
            parsed > 100,
            "the fuzz inputs must exercise successful parses too ({parsed})"
        );
    }
}
