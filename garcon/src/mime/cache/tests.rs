use super::*;
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mime");

fn system_cache() -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join("system/mime.cache")).unwrap()
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expected_system_map() -> HashMap<String, String> {
    map(&[
        ("gfa", "application/x-gfa"),
        ("gfw", "application/x-gfw-high"),
        ("gf.gz", "application/x-gf-gzip"),
        ("GfC", "application/x-gfc"),
        ("gfu", "application/x-gfu"),
        ("png", "x/other"),
    ])
}

fn be(buf: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes(buf[offset..offset + 4].try_into().unwrap())
}

fn put(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
}

/// Offsets of interesting records in the real fixture, found by walking it.
struct Layout {
    alias: usize,
    tree: usize,
    /// First non-leaf record (character, n_children, first_child).
    node: usize,
    /// First leaf record (0, mime offset, weight).
    leaf: usize,
}

fn layout(buf: &[u8]) -> Layout {
    let alias = be(buf, 4) as usize;
    let tree = be(buf, 16) as usize;
    let first_root = be(buf, tree + 4) as usize;
    // Descend first children until a leaf appears.
    let mut p = first_root;
    loop {
        if be(buf, p) == 0 {
            return Layout {
                alias,
                tree,
                node: first_root,
                leaf: p,
            };
        }
        p = be(buf, p + 8) as usize;
    }
}

#[test]
fn generated_fixture_yields_exactly_the_spec_map() {
    assert_eq!(
        parse_mime_cache(&system_cache()).unwrap(),
        expected_system_map()
    );
}

#[test]
fn regenerating_the_fixture_with_update_mime_database_gives_the_same_map() {
    let Ok(tool) = which("update-mime-database") else {
        println!("skipped: update-mime-database (Debian shared-mime-info) is not installed");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("packages")).unwrap();
    std::fs::copy(
        Path::new(FIXTURES).join("system/packages/fixture.xml"),
        t.path().join("packages/fixture.xml"),
    )
    .unwrap();
    let status = std::process::Command::new(tool)
        .arg(t.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = std::fs::read(t.path().join("mime.cache")).unwrap();
    assert_eq!(parse_mime_cache(&fresh).unwrap(), expected_system_map());
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn the_system_mime_cache_parses_when_present() {
    let path = Path::new("/usr/share/mime/mime.cache");
    let Ok(bytes) = std::fs::read(path) else {
        println!("skipped: {} not present", path.display());
        return;
    };
    let m = parse_mime_cache(&bytes).unwrap();
    assert_eq!(m.get("png").map(String::as_str), Some("image/png"));
    assert!(m.len() > 500, "only {} extensions", m.len());
}

#[test]
fn empty_and_short_files_are_rejected() {
    assert_eq!(parse_mime_cache(&[]), Err(MimeCacheError::TooSmall(0)));
    assert_eq!(
        parse_mime_cache(&[0; 39]),
        Err(MimeCacheError::TooSmall(39))
    );
}

#[test]
fn oversized_file_is_rejected() {
    let big = vec![0u8; MAX_MIME_CACHE_SIZE + 1];
    assert_eq!(
        parse_mime_cache(&big),
        Err(MimeCacheError::TooLarge(MAX_MIME_CACHE_SIZE + 1))
    );
}

/// Each corruption of garcon-service §8.5 applied to the real fixture is rejected.
#[test]
fn every_corruption_is_rejected() {
    let good = system_cache();
    let l = layout(&good);
    let size = good.len() as u32;
    type Corruption = Box<dyn Fn(&mut Vec<u8>)>;
    let corruptions: Vec<(&str, Corruption)> = vec![
        ("alias offset inside header", Box::new(|b| put(b, 4, 0x0a))),
        (
            "alias offset past EOF",
            Box::new(move |b| put(b, 4, size + 4)),
        ),
        (
            "no NUL before alias list",
            Box::new(move |b| b[l.alias - 1] = b'X'),
        ),
        (
            "misaligned tree offset",
            Box::new(move |b| put(b, 16, l.tree as u32 + 2)),
        ),
        (
            "tree offset past EOF",
            Box::new(move |b| put(b, 16, size + 8)),
        ),
        (
            "N_ROOTS above U+10FFFF",
            Box::new(move |b| put(b, l.tree, 0x20_0000)),
        ),
        (
            "first root before tree",
            Box::new(move |b| put(b, l.tree + 4, l.tree as u32 - 4)),
        ),
        (
            "character above U+10FFFF",
            Box::new(move |b| put(b, l.node, 0x11_0000)),
        ),
        (
            "child count above U+10FFFF",
            Box::new(move |b| put(b, l.node + 4, 0x11_0000)),
        ),
        (
            "child offset before tree",
            Box::new(move |b| put(b, l.node + 8, l.tree as u32 - 4)),
        ),
        (
            "child offset past EOF",
            Box::new(move |b| put(b, l.node + 8, size + 4)),
        ),
        (
            "misaligned child offset",
            Box::new(move |b| put(b, l.node + 8, l.tree as u32 + 10)),
        ),
        (
            "mime offset in header",
            Box::new(move |b| put(b, l.leaf + 4, 0x10)),
        ),
        (
            "mime offset past alias list",
            Box::new(move |b| put(b, l.leaf + 4, l.alias as u32)),
        ),
    ];
    assert!(parse_mime_cache(&good).is_ok());
    for (what, corrupt) in corruptions {
        let mut bad = good.clone();
        corrupt(&mut bad);
        assert!(parse_mime_cache(&bad).is_err(), "{what} was accepted");
    }
}

/// Hand-built caches for rules the generator cannot produce.
mod synthetic {
    use super::*;

    /// Builds a cache: header, a string area, then a tree given as (character, children)
    /// records; leaves are (0, mime string index, weight).
    struct Builder {
        strings: Vec<String>,
    }

    enum Rec {
        Node(char, Vec<Rec>),
        Leaf(usize, u32),
    }

    impl Builder {
        fn build(&self, roots: Vec<Rec>) -> Vec<u8> {
            let mut buf = vec![0u8; 40];
            let mut offsets = Vec::new();
            for s in &self.strings {
                offsets.push(buf.len() as u32);
                buf.extend_from_slice(s.as_bytes());
                buf.push(0);
                while !buf.len().is_multiple_of(4) {
                    buf.push(0);
                }
            }
            buf.extend_from_slice(&[0; 4]); // NUL padding before the alias list
            let alias = buf.len() as u32;
            buf.extend_from_slice(&[0; 4]); // empty alias list
            let tree = buf.len() as u32;
            put(&mut buf, 4, alias);
            put(&mut buf, 16, tree);
            buf.extend_from_slice(&[0; 8]);
            let first = buf.len() as u32;
            put(&mut buf, tree as usize, roots.len() as u32);
            put(&mut buf, tree as usize + 4, first);
            Self::write_level(&mut buf, &roots, &offsets);
            buf
        }

        /// Writes `recs` contiguously, then their children after them.
        fn write_level(buf: &mut Vec<u8>, recs: &[Rec], offsets: &[u32]) {
            let start = buf.len();
            buf.resize(start + 12 * recs.len(), 0);
            for (i, rec) in recs.iter().enumerate() {
                let at = start + 12 * i;
                match rec {
                    Rec::Leaf(s, weight) => {
                        put(buf, at + 4, offsets[*s]);
                        put(buf, at + 8, *weight);
                    }
                    Rec::Node(c, children) => {
                        let child_start = buf.len() as u32;
                        put(buf, at, *c as u32);
                        put(buf, at + 4, children.len() as u32);
                        put(buf, at + 8, child_start);
                        Self::write_level(buf, children, offsets);
                    }
                }
            }
        }
    }

    /// Nodes spelling `suffix` from its last character (root) to its first, then `leaves`.
    fn chain(suffix: &str, leaves: Vec<Rec>) -> Rec {
        let mut chars = suffix.chars();
        let first = chars.next().unwrap();
        chars.fold(Rec::Node(first, leaves), |child, c| {
            Rec::Node(c, vec![child])
        })
    }

    fn strings() -> Builder {
        Builder {
            strings: vec!["a/first".into(), "a/second".into(), "a/long".into()],
        }
    }

    #[test]
    fn ties_keep_the_first_leaf_and_higher_weight_wins() {
        let b = strings();
        let tie = chain(".t", vec![Rec::Leaf(0, 50), Rec::Leaf(1, 50)]);
        let higher = chain(".h", vec![Rec::Leaf(0, 50), Rec::Leaf(1, 0x100 | 60)]);
        let got = parse_mime_cache(&b.build(vec![tie, higher])).unwrap();
        assert_eq!(got, map(&[("t", "a/first"), ("h", "a/second")]));
    }

    #[test]
    fn suffixes_over_100_bytes_are_skipped_with_their_subtree() {
        let b = strings();
        let ok = format!(".{}", "x".repeat(99));
        let long = format!(".{}", "y".repeat(100));
        let got = parse_mime_cache(&b.build(vec![
            chain(&ok, vec![Rec::Leaf(0, 50)]),
            chain(&long, vec![Rec::Leaf(2, 50)]),
        ]))
        .unwrap();
        assert_eq!(got, map(&[(&ok[1..], "a/first")]));
    }

    #[test]
    fn non_ascii_suffixes_are_kept_as_utf8() {
        let b = strings();
        let got = parse_mime_cache(&b.build(vec![chain(".é", vec![Rec::Leaf(0, 50)])])).unwrap();
        assert_eq!(got, map(&[("é", "a/first")]));
    }

    #[test]
    fn more_than_30000_nodes_is_rejected() {
        let b = strings();
        let many: Vec<Rec> = (0..30_001).map(|_| Rec::Node('z', vec![])).collect();
        assert_eq!(
            parse_mime_cache(&b.build(many)),
            Err(MimeCacheError::TooManyNodes)
        );
        let fine: Vec<Rec> = (0..30_000).map(|_| Rec::Node('z', vec![])).collect();
        assert_eq!(parse_mime_cache(&b.build(fine)), Ok(HashMap::new()));
    }

    #[test]
    fn shared_cyclic_records_are_rejected_quickly() {
        // 50 root nodes whose children are the 50 root records themselves: a fan-out cycle
        // that would take 50^100 steps before the 100-byte suffix limit stopped it.
        let b = strings();
        let mut buf = b.build((0..50).map(|_| Rec::Node('z', vec![])).collect());
        let tree = be(&buf, 16) as usize;
        let first = be(&buf, tree + 4);
        for i in 0..50 {
            let at = first as usize + 12 * i;
            put(&mut buf, at + 4, 50);
            put(&mut buf, at + 8, first);
        }
        let started = std::time::Instant::now();
        assert_eq!(parse_mime_cache(&buf), Err(MimeCacheError::SharedRecords));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}

/// Deterministic fuzz smoke test: mutated and truncated real caches never panic or hang.
#[test]
fn fuzz_smoke_mutated_caches_never_panic() {
    let good = system_cache();
    let mut rng = crate::test_support::XorShift64::new(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next_u64();
    let started = std::time::Instant::now();
    for round in 0..20_000 {
        let mut bad = good.clone();
        if round % 10 == 0 {
            bad.truncate((next() as usize) % good.len());
        }
        for _ in 0..(next() % 8 + 1) {
            if bad.is_empty() {
                break;
            }
            let pos = (next() as usize) % bad.len();
            bad[pos] = match next() % 4 {
                0 => 0,
                1 => 0xff,
                _ => next() as u8,
            };
        }
        let _ = parse_mime_cache(&bad);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}
