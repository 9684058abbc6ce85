//! The container's passwd/shadow/group/gshadow files (tremplin §10). Input: the four files,
//! NUL-separated. Whatever parses renders to text that parses back to the same database, and
//! the edits tremplin makes keep that property and keep names and ids unique.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tremplin::passwd::{valid_username, PasswdDb, PasswdFiles};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    let files = PasswdFiles {
        passwd: next(),
        shadow: next(),
        group: next(),
        gshadow: next(),
    };
    let user = next();
    let Ok(mut db) = PasswdDb::parse(&files) else {
        return;
    };
    assert!(db.passwd.iter().any(|e| e.name == "root"));
    assert_eq!(PasswdDb::parse(&db.render()).as_ref(), Ok(&db));
    // As tremplin does (containers/user.rs): the user that already has uid 1000 keeps it,
    // else the requested name. (Ensuring a name/uid pair removes every entry with that name or
    // that uid, by design, so an arbitrary pair could remove root.)
    let requested = if valid_username(&user) && user.trim() == user {
        user
    } else {
        "alice".to_owned()
    };
    let name = db.user_by_uid(1000).map_or(requested, |e| e.name.clone());
    if !valid_username(&name) {
        return;
    }
    let unique = |db: &PasswdDb| {
        let names: HashSet<&str> = db.passwd.iter().map(|e| e.name.as_str()).collect();
        let uids: HashSet<u32> = db.passwd.iter().map(|e| e.uid).collect();
        let groups: HashSet<&str> = db.group.iter().map(|e| e.name.as_str()).collect();
        let gids: HashSet<u32> = db.group.iter().map(|e| e.gid).collect();
        names.len() == db.passwd.len()
            && uids.len() == db.passwd.len()
            && groups.len() == db.group.len()
            && gids.len() == db.group.len()
    };
    let was_unique = unique(&db);
    db.ensure_user(&name, 1000, true, 1);
    db.ensure_group(&name, 1000);
    let _ = db.add_user_to_group(&name, "audio");
    let again = PasswdDb::parse(&db.render()).expect("an edited database reparses");
    assert_eq!(again, db);
    assert!(db.passwd.iter().any(|e| e.name == name && e.uid == 1000));
    assert!(db.group.iter().any(|e| e.name == name && e.gid == 1000));
    // Edits keep unique names and ids unique (they do not repair duplicates already there).
    if was_unique {
        assert!(unique(&db), "edits made a duplicate name or id");
    }
});
