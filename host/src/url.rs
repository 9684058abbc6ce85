//! OpenUrl's checks and cicerone's TranslateUrlForHost (garcon-host §6.2), as pure functions.
//!
//! - Scheme allow-list (case-insensitive): `data`, `file`, `ftp`, `http`, `https`, `mailto`.
//! - A `file:` URL whose path has a `..` segment is refused, also when the dots (or the slash
//!   after them) are percent-encoded (`file:///home/%2e%2e/etc`), since a browser decodes them.
//! - `localhost`, `127.0.0.1` and `[::1]` (after an optional `user:pass@`) with no port, an
//!   unparsable port or a port ≤ 1023 become the container's IPv4 address; higher ports are left
//!   alone (cicerone's rule: those are tunneled). `[::1]` is an addition to cicerone's two names.
//! - `file://` URLs under a shared container path map to the host path of the share; the prefix
//!   must end at a `/` or at the end of the URL's path. A `file://` URL under no share is left
//!   as it is, as cicerone does; [`outside_shares`] tells the caller, which refuses to hand such
//!   a URL to a desktop opener (it would open the *host's* file of that path).

use std::net::Ipv4Addr;

const URL_SCHEMES: [&str; 6] = ["data", "file", "ftp", "http", "https", "mailto"];
const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// A container path shared with the host, and where the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub container_path: String,
    pub host_path: String,
}

impl std::str::FromStr for Share {
    type Err = String;

    /// `CONTAINER_PATH=HOST_PATH`, both absolute.
    fn from_str(s: &str) -> Result<Share, String> {
        match s.split_once('=') {
            Some((c, h)) if c.starts_with('/') && h.starts_with('/') => Ok(Share {
                container_path: c.trim_end_matches('/').to_string(),
                host_path: h.trim_end_matches('/').to_string(),
            }),
            _ => Err(format!(
                "{s:?} is not CONTAINER_PATH=HOST_PATH (both absolute)"
            )),
        }
    }
}

/// Why a URL is not opened; the caller answers FAILED_PRECONDITION "Failure in OpenUrl".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("scheme not allowed")]
    Scheme,
    #[error("file URL with a parent reference")]
    ParentReference,
}

/// Decodes `%XX` escapes (bytes), leaving malformed escapes as they are.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                // Two hex digits make one byte (h, l < 16).
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Whether a `file:` URL's remainder (after `file:`) has a `..` segment, literal or encoded.
fn has_parent_reference(rest: &str) -> bool {
    let path = rest.split(['?', '#']).next().unwrap_or("");
    percent_decode(path)
        .split(|b| *b == b'/' || *b == b'\\')
        .any(|segment| segment == b"..")
        || rest.split('/').any(|segment| segment == "..")
}

/// The caller-independent OpenUrl checks: an allowed scheme and no parent reference in a
/// `file:` URL. Public for the fuzz target.
pub fn check(url: &str) -> Result<(), UrlRefusal> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(UrlRefusal::Scheme);
    };
    let scheme = scheme.to_ascii_lowercase();
    if !URL_SCHEMES.contains(&scheme.as_str()) {
        return Err(UrlRefusal::Scheme);
    }
    if scheme == "file" && has_parent_reference(rest) {
        return Err(UrlRefusal::ParentReference);
    }
    Ok(())
}

/// What translation needs to know about the calling container.
#[derive(Debug, Clone, Default)]
pub struct UrlContext<'a> {
    pub container_ipv4: Option<Ipv4Addr>,
    pub shares: &'a [Share],
}

/// Checks `url` and translates it for the host.
pub fn translate(url: &str, ctx: &UrlContext<'_>) -> Result<String, UrlRefusal> {
    check(url)?;
    let (scheme, _) = url.split_once(':').ok_or(UrlRefusal::Scheme)?;
    if scheme.eq_ignore_ascii_case("file") {
        return Ok(map_file(url, ctx.shares).unwrap_or_else(|| url.to_string()));
    }
    Ok(match ctx.container_ipv4 {
        Some(ip) => replace_localhost(url, ip),
        None => url.to_string(),
    })
}

/// Whether `url` is a `file:` URL that no share maps (checked before translation).
pub fn outside_shares(url: &str, shares: &[Share]) -> bool {
    let is_file = url
        .split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("file"));
    is_file && map_file(url, shares).is_none()
}

/// The host URL of a `file:` URL under a share.
fn map_file(url: &str, shares: &[Share]) -> Option<String> {
    // `file://` then an empty host (or `localhost`) then the absolute path.
    let rest = url.get("file:".len()..)?;
    let path = match rest.strip_prefix("//") {
        Some(after) if after.starts_with('/') => after,
        Some(after) if after.starts_with("localhost/") => &after["localhost".len()..],
        _ => return None,
    };
    shares.iter().find_map(|share| {
        let tail = path.strip_prefix(share.container_path.as_str())?;
        (tail.is_empty() || tail.starts_with(['/', '?', '#']))
            .then(|| format!("file://{}{tail}", share.host_path))
    })
}

fn replace_localhost(url: &str, ip: Ipv4Addr) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let (host, port) = if let Some(v6_end) = host_port.strip_prefix('[').and_then(|h| h.find(']')) {
        let split = v6_end + 2;
        (&host_port[..split], &host_port[split..])
    } else {
        match host_port.find(':') {
            Some(i) => (&host_port[..i], &host_port[i..]),
            None => (host_port, ""),
        }
    };
    if !LOCAL_HOSTS.contains(&host) {
        return url.to_string();
    }
    let tunneled = port
        .strip_prefix(':')
        .and_then(|p| p.parse::<u16>().ok())
        .is_some_and(|p| p > 1023);
    if tunneled {
        return url.to_string();
    }
    let host_at = start + host_start;
    format!("{}{ip}{}", &url[..host_at], &url[host_at + host.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(shares: &[Share]) -> UrlContext<'_> {
        UrlContext {
            container_ipv4: Some(Ipv4Addr::new(100, 115, 92, 2)),
            shares,
        }
    }

    #[test]
    fn localhost_with_a_low_or_no_port_becomes_the_container_address() {
        let c = ctx(&[]);
        for (url, want) in [
            ("http://localhost/x", "http://100.115.92.2/x"),
            ("http://localhost", "http://100.115.92.2"),
            ("https://127.0.0.1:443/a?b", "https://100.115.92.2:443/a?b"),
            ("http://[::1]:80/", "http://100.115.92.2:80/"),
            ("http://u:p@localhost/x", "http://u:p@100.115.92.2/x"),
            ("http://localhost:http/x", "http://100.115.92.2:http/x"),
            ("http://localhost:1023/", "http://100.115.92.2:1023/"),
            // Left alone: high ports (tunneled), other hosts, case differences (exact match).
            ("http://localhost:8080/", "http://localhost:8080/"),
            ("http://[::1]:3000/", "http://[::1]:3000/"),
            (
                "http://example.com/localhost",
                "http://example.com/localhost",
            ),
            ("http://LOCALHOST/", "http://LOCALHOST/"),
            ("http://localhost.example/", "http://localhost.example/"),
            ("mailto:me@localhost", "mailto:me@localhost"),
        ] {
            assert_eq!(translate(url, &c).as_deref(), Ok(want), "{url}");
        }
    }

    #[test]
    fn file_urls_under_a_share_map_to_the_host_path_and_others_are_left_alone() {
        let shares = [
            "/home/user=/media/fuse/crostini_penguin"
                .parse::<Share>()
                .expect("share"),
            "/mnt/chromeos/MyFiles=/home/me/MyFiles"
                .parse()
                .expect("share"),
        ];
        let c = ctx(&shares);
        let cases: [(&str, Result<&str, UrlRefusal>); 7] = [
            (
                "file:///home/user/a.txt",
                Ok("file:///media/fuse/crostini_penguin/a.txt"),
            ),
            (
                "file:///home/user",
                Ok("file:///media/fuse/crostini_penguin"),
            ),
            (
                "FILE:///mnt/chromeos/MyFiles/x#y",
                Ok("file:///home/me/MyFiles/x#y"),
            ),
            (
                "file://localhost/home/user/b",
                Ok("file:///media/fuse/crostini_penguin/b"),
            ),
            // Unchanged: the prefix must end at a `/`; no share; another host.
            ("file:///home/username/a", Ok("file:///home/username/a")),
            ("file:///etc/passwd", Ok("file:///etc/passwd")),
            (
                "file://otherhost/home/user/a",
                Ok("file://otherhost/home/user/a"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(
                translate(url, &c).as_deref().map_err(Clone::clone),
                want,
                "{url}"
            );
            let mapped = want.is_ok_and(|w| w != url);
            assert_eq!(outside_shares(url, &shares), !mapped, "{url}");
        }
        assert!(!outside_shares("https://localhost/", &shares));
    }

    #[test]
    fn parent_references_are_refused_literal_or_percent_encoded() {
        let shares = ["/home=/srv/home".parse::<Share>().expect("share")];
        let c = ctx(&shares);
        for url in [
            "file:///home/../etc/passwd",
            "file:///home/%2e%2e/etc",
            "file:///home/%2E%2E/etc",
            "file:///home/.%2e/etc",
            "file:///home/%2e./etc",
            "file:///home/..%2fetc",
            "file:///home/x/%2e%2e",
            "File:///home/..",
        ] {
            assert_eq!(
                translate(url, &c),
                Err(UrlRefusal::ParentReference),
                "{url}"
            );
        }
        // Dots that are not a whole segment are fine.
        assert!(translate("file:///home/a..b", &c).is_ok());
        assert!(translate("file:///home/%2e%2ex", &c).is_ok());
        // Outside file: URLs `..` is the web's business.
        assert!(translate("https://x/../y", &c).is_ok());
    }

    #[test]
    fn only_the_allowed_schemes_pass() {
        let c = ctx(&[]);
        for url in [
            "gopher://x",
            "javascript:alert(1)",
            "no-scheme",
            "chrome://settings",
        ] {
            assert_eq!(translate(url, &c), Err(UrlRefusal::Scheme), "{url}");
        }
        for url in ["HTTPS://x", "data:text/plain,hi", "ftp://x", "mailto:a@b"] {
            assert!(translate(url, &c).is_ok(), "{url}");
        }
    }

    #[test]
    fn malformed_escapes_are_kept_and_short_input_does_not_panic() {
        assert_eq!(percent_decode("%2e%2"), b".%2".to_vec());
        assert_eq!(percent_decode("%"), b"%".to_vec());
        assert_eq!(percent_decode("%zz"), b"%zz".to_vec());
    }
}
