//! Remote URLs: their host (for per-host credentials), their form without credentials (for
//! messages, `.git/config` and the cache directory's name), and whether they are local.

use sha2::{Digest as _, Sha256};

/// A remote URL in parts. An scp-like `user@host:path` is read as `ssh://user@host/path`; a
/// plain path as `file://path`.
struct Parts<'a> {
    scheme: String,
    userinfo: Option<&'a str>,
    host: &'a str,
    path: &'a str,
}

fn parts(url: &str) -> Parts<'_> {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        return Parts {
            scheme: scheme.to_ascii_lowercase(),
            userinfo,
            host,
            path,
        };
    }
    let colon = url.find(':');
    let slash = url.find('/');
    match colon {
        // scp-like: a colon before any slash.
        Some(c) if slash.is_none_or(|s| c < s) => {
            let (authority, path) = (&url[..c], &url[c + 1..]);
            let (userinfo, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            Parts {
                scheme: "ssh".into(),
                userinfo,
                host,
                path,
            }
        }
        _ => Parts {
            scheme: "file".into(),
            userinfo: None,
            host: "",
            path: url,
        },
    }
}

/// The host (and port) of a remote URL, lowercased; `None` for a local path.
pub fn host(url: &str) -> Option<String> {
    let p = parts(url);
    (!p.host.is_empty()).then(|| p.host.to_ascii_lowercase())
}

/// Whether the remote is a local repository (`file://` or a path): libgit2's local transport,
/// which cannot fetch shallowly.
pub(crate) fn is_local(url: &str) -> bool {
    parts(url).scheme == "file"
}

/// `url` without its credentials: the user info of an `http(s)://` or `git://` URL is dropped
/// (a token may stand there alone); for ssh the user name stays and a password is dropped.
pub fn redact(url: &str) -> String {
    let p = parts(url);
    let Some(userinfo) = p.userinfo else {
        return url.to_string();
    };
    let kept = match p.scheme.as_str() {
        "ssh" | "git+ssh" | "ssh+git" => userinfo.split(':').next().filter(|u| !u.is_empty()),
        _ => None,
    };
    let at = match kept {
        Some(user) => format!("{user}@"),
        None => String::new(),
    };
    if url.contains("://") {
        format!("{}://{at}{}{}", p.scheme, p.host, p.path)
    } else {
        format!("{at}{}:{}", p.host, p.path)
    }
}

/// A submodule's URL from `.gitmodules`: one starting with `./` or `../` is relative to the
/// superproject's remote `parent` (each `../` drops one path component), as git resolves it;
/// any other is absolute.
pub(crate) fn join_relative(parent: &str, relative: &str) -> String {
    if !(relative.starts_with("./") || relative.starts_with("../")) {
        return relative.to_string();
    }
    // Never cut into `scheme://host`.
    let floor = parent.find("://").map_or(0, |i| i + 3);
    let mut base = parent.trim_end_matches('/').to_string();
    let mut rest = relative;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            if let Some(i) = base.rfind('/').filter(|&i| i >= floor) {
                base.truncate(i);
            }
            rest = r;
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

/// The name of the cache repository of `url`: the SHA-256 of the URL without credentials, its
/// scheme and host lowercased and trailing slashes removed.
pub(crate) fn cache_name(url: &str) -> String {
    let redacted = redact(url);
    let p = parts(&redacted);
    let normal = format!(
        "{}://{}/{}",
        p.scheme,
        p.host.to_ascii_lowercase(),
        p.path.trim_matches('/')
    );
    let user = match p.userinfo {
        Some(u) => format!("{u}@"),
        None => String::new(),
    };
    let digest = Sha256::digest(format!("{user}{normal}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        for (url, want) in [
            (
                "https://github.com/moby/buildkit",
                "https://github.com/moby/buildkit",
            ),
            (
                "https://user:s3cret@example.com/r.git",
                "https://example.com/r.git",
            ),
            (
                "https://TOKEN@example.com/r.git",
                "https://example.com/r.git",
            ),
            ("git://127.0.0.1:9418/r", "git://127.0.0.1:9418/r"),
            (
                "ssh://git:pw@example.com/r.git",
                "ssh://git@example.com/r.git",
            ),
            (
                "git@github.com:moby/buildkit.git",
                "git@github.com:moby/buildkit.git",
            ),
            ("file:///srv/r", "file:///srv/r"),
            ("/srv/r", "/srv/r"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn hosts_and_locality() {
        assert_eq!(
            host("https://u:p@Example.com:8443/r").as_deref(),
            Some("example.com:8443")
        );
        assert_eq!(host("git@github.com:a/b").as_deref(), Some("github.com"));
        assert_eq!(host("/srv/r"), None);
        assert!(is_local("file:///srv/r") && is_local("/srv/r"));
        assert!(!is_local("git://h/r") && !is_local("git@h:r"));
    }

    #[test]
    fn relative_submodule_urls_join_the_parents() {
        for (parent, rel, want) in [
            ("git://h:1/group/app", "../lib", "git://h:1/group/lib"),
            (
                "https://h/group/app.git/",
                "../../other/lib.git",
                "https://h/other/lib.git",
            ),
            ("https://h/app", "./sub", "https://h/app/sub"),
            ("https://h/app", "https://x/lib", "https://x/lib"),
            ("git@h:group/app.git", "../lib.git", "git@h:group/lib.git"),
        ] {
            assert_eq!(join_relative(parent, rel), want, "{parent} {rel}");
        }
    }

    #[test]
    fn cache_names_ignore_credentials_case_and_trailing_slashes() {
        let a = cache_name("https://example.com/r.git");
        assert_eq!(a, cache_name("https://tok@EXAMPLE.com/r.git/"));
        assert_eq!(a, cache_name("HTTPS://user:pw@example.com/r.git"));
        assert_ne!(a, cache_name("https://example.com/other.git"));
        assert_ne!(a, cache_name("git://example.com/r.git"));
        assert_eq!(a.len(), 64);
    }
}
