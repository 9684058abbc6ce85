//! The audit rules tremplin adds, and how a tremplin recognizes its own and other
//! tremplins' rules: each carries the filter key `tremplin:<pid>:<instance>:<enabled before>`.
//! So several tremplins (tests run them side by side) each own their rules, the last one to
//! stop restores the enabled flag, and rules left by a killed tremplin (its pid gone) are
//! removed by the next one, which also inherits the enabled flag to restore.

const AUDIT_FILTER_EXIT: u32 = 0x04;
const AUDIT_ALWAYS: u32 = 2;
const AUDIT_ARCH_FIELD: u32 = 11;
const AUDIT_FILTERKEY: u32 = 210;
const AUDIT_EQUAL: u32 = 0x4000_0000;
/// Words of `struct audit_rule_data` before the string buffer.
const RULE_WORDS: usize = 3 + 4 * 64 + 1;
const KEY_PREFIX: &str = "tremplin:";

/// Who added a rule, from its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub instance: u32,
    /// The audit enabled flag before the first tremplin enabled it.
    pub enabled_before: u32,
}

impl Owner {
    pub fn key(&self) -> String {
        format!(
            "{KEY_PREFIX}{}:{}:{}",
            self.pid, self.instance, self.enabled_before
        )
    }

    pub fn parse_key(key: &str) -> Option<Owner> {
        let mut it = key.strip_prefix(KEY_PREFIX)?.split(':');
        let owner = Owner {
            pid: it.next()?.parse().ok()?,
            instance: it.next()?.parse().ok()?,
            enabled_before: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(owner)
    }
}

/// `struct audit_rule_data` of "always,exit,arch=`arch`,syscall=`nr`,key=`key`".
pub fn listen_rule(arch: u32, nr: u32, key: &str) -> Vec<u8> {
    let mut words = vec![0u32; RULE_WORDS];
    words[0] = AUDIT_FILTER_EXIT;
    words[1] = AUDIT_ALWAYS;
    words[2] = 2; // field_count
    words[3 + (nr / 32) as usize] |= 1 << (nr % 32); // mask
    words[3 + 64] = AUDIT_ARCH_FIELD; // fields[0]
    words[3 + 128] = arch; // values[0]
    words[3 + 192] = AUDIT_EQUAL; // fieldflags[0]
    words[3 + 64 + 1] = AUDIT_FILTERKEY; // fields[1]
    words[3 + 128 + 1] = key.len() as u32; // values[1]: the string's length
    words[3 + 192 + 1] = AUDIT_EQUAL;
    words[RULE_WORDS - 1] = key.len() as u32; // buflen
    let mut rule: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    rule.extend_from_slice(key.as_bytes());
    rule
}

/// The owner of a listed rule when it has exactly tremplin's shape (arch + key fields).
pub fn rule_owner(rule: &[u8]) -> Option<Owner> {
    let word = |i: usize| -> Option<u32> {
        let b = rule.get(i * 4..i * 4 + 4)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    };
    if word(2)? != 2 || word(3 + 64)? != AUDIT_ARCH_FIELD || word(3 + 65)? != AUDIT_FILTERKEY {
        return None;
    }
    let len = word(3 + 129)? as usize;
    let key = rule.get(RULE_WORDS * 4..RULE_WORDS * 4 + len)?;
    Owner::parse_key(std::str::from_utf8(key).ok()?)
}

/// Whether the process that added a rule still runs.
pub fn owner_alive(owner: &Owner) -> bool {
    owner.pid == std::process::id()
        || std::path::Path::new(&format!("/proc/{}", owner.pid)).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_and_refusals() {
        let o = Owner {
            pid: 42,
            instance: 3,
            enabled_before: 0,
        };
        assert_eq!(o.key(), "tremplin:42:3:0");
        assert_eq!(Owner::parse_key(&o.key()), Some(o));
        for bad in [
            "",
            "tremplin:",
            "tremplin:1:2",
            "tremplin:1:2:3:4",
            "other:1:2:0",
            "tremplin:x:2:0",
        ] {
            assert_eq!(Owner::parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn rule_layout_and_owner_from_the_listed_rule() {
        let key = "tremplin:42:3:0";
        let rule = listen_rule(0xC000_003E, 50, key);
        assert_eq!(rule.len(), RULE_WORDS * 4 + key.len());
        let w = |i: usize| u32::from_ne_bytes(rule[i * 4..i * 4 + 4].try_into().expect("4"));
        assert_eq!((w(0), w(1), w(2)), (AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 2));
        assert_eq!(w(3 + 1), 1 << 18); // bit 50 in mask[1]
        assert_eq!((w(67), w(131), w(195)), (11, 0xC000_003E, AUDIT_EQUAL));
        assert_eq!(
            (w(68), w(132), w(196)),
            (210, key.len() as u32, AUDIT_EQUAL)
        );
        assert_eq!(rule_owner(&rule).map(|o| o.pid), Some(42));
        // Other shapes, truncated rules: not ours.
        assert_eq!(rule_owner(&rule[..RULE_WORDS * 4 + 3]), None);
        let mut other = rule.clone();
        other[8] = 1; // field_count
        assert_eq!(rule_owner(&other), None);
        assert_eq!(rule_owner(&[0; 7]), None);
    }
}
