//! Source identifiers: what a source op names (`docker-image://`, `git://`, `local://`,
//! `http(s)://`) and its attributes, parsed into typed values. Pure and table-tested.

use crate::attr;
use crate::error::SourceError;
use std::collections::BTreeMap;
use std::fmt;

/// What a source op produces its output from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `docker-image://REF`: the root filesystem of an image.
    Image(ImageSource),
    /// `git://HOST/PATH#REF:SUBDIR`: a checkout of a git repository.
    Git(GitSource),
    /// `local://NAME`: a directory the client sends.
    Local(LocalSource),
    /// `http://…`, `https://…`: a single downloaded file.
    Http(HttpSource),
}

/// How an image reference is resolved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResolveMode {
    /// The daemon's default (`image.resolvemode` absent or `default`).
    #[default]
    Default,
    /// Always ask the registry (`pull`).
    ForcePull,
    /// Use the local store when the image is there (`local`).
    PreferLocal,
}

/// An image source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSource {
    /// The image reference, normalized.
    pub reference: ImageRef,
    /// How to resolve it.
    pub resolve_mode: ResolveMode,
}

/// A normalized image reference (`docker.io/library/busybox:latest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (and port): `docker.io` when the reference names none.
    pub domain: String,
    /// Repository path: `library/NAME` for official Docker Hub images.
    pub path: String,
    /// The tag; `latest` when the reference has neither tag nor digest.
    pub tag: Option<String>,
    /// The pinned digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

/// A git source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitSource {
    /// Remote URL to fetch from (`git.fullurl`, else `https://` + the identifier's host and path).
    pub remote: String,
    /// Branch, tag or commit; `None` means the remote's default branch.
    pub git_ref: Option<String>,
    /// Subdirectory of the checkout that becomes the output.
    pub subdir: Option<String>,
    /// Keep `.git` in the output (`git.keepgitdir`).
    pub keep_git_dir: bool,
    /// Secret with a full HTTP `Authorization` header (`git.authheadersecret`).
    pub auth_header_secret: Option<String>,
    /// Secret with an HTTP token (`git.authtokensecret`).
    pub auth_token_secret: Option<String>,
    /// known_hosts for SSH remotes (`git.knownsshhosts`).
    pub known_ssh_hosts: Option<String>,
    /// SSH agent socket id (`git.mountsshsock`).
    pub mount_ssh_sock: Option<String>,
    /// Expected commit of the ref (`git.checksum`).
    pub checksum: Option<String>,
    /// Do not check out submodules (`git.skipsubmodules`).
    pub skip_submodules: bool,
}

/// How a local source detects what changed since the last transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocalDiffer {
    /// Compare file metadata (the default).
    #[default]
    Metadata,
    /// Send everything.
    None,
}

/// A local source: a directory the client sends through its session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalSource {
    /// The name the client registered the directory under (`context`, `dockerfile`, …).
    pub name: String,
    /// The session that serves it (`local.session`).
    pub session_id: Option<String>,
    /// A unique id for the directory on the client (`local.unique`).
    pub unique_id: Option<String>,
    /// Only send paths matching one of these (`local.includepattern`).
    pub include_patterns: Vec<String>,
    /// Do not send paths matching these (`local.excludepatterns`).
    pub exclude_patterns: Vec<String>,
    /// Paths to send with symlinks followed (`local.followpaths`).
    pub follow_paths: Vec<String>,
    /// Hint for sharing the received copy (`local.sharedkeyhint`).
    pub shared_key_hint: Option<String>,
    /// Change detection (`local.differ`).
    pub differ: LocalDiffer,
}

/// An HTTP(S) source: one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSource {
    /// The URL, as in the identifier.
    pub url: String,
    /// Expected digest of the content (`http.checksum`).
    pub checksum: Option<String>,
    /// File name in the output (`http.filename`); default: the URL's last path segment.
    pub filename: Option<String>,
    /// Permission bits (`http.perm`).
    pub perm: Option<u32>,
    /// Owner uid (`http.uid`).
    pub uid: Option<u32>,
    /// Owner gid (`http.gid`).
    pub gid: Option<u32>,
    /// Secret with an `Authorization` header (`http.authheadersecret`).
    pub auth_header_secret: Option<String>,
    /// Extra request headers (`http.header.NAME`), by name.
    pub headers: BTreeMap<String, String>,
}

impl Source {
    /// Parses a source op's identifier and attributes. Every attribute must be one oxkit
    /// understands for that scheme; anything else is an error, never ignored.
    pub fn parse(
        identifier: &str,
        attrs: &BTreeMap<String, String>,
    ) -> Result<Source, SourceError> {
        let (scheme, rest) = identifier
            .split_once("://")
            .ok_or_else(|| SourceError::MissingScheme(identifier.to_string()))?;
        let invalid = |problem: &str| SourceError::InvalidIdentifier {
            identifier: identifier.to_string(),
            problem: problem.to_string(),
        };
        match scheme {
            "docker-image" => {
                let reference = ImageRef::parse(rest).map_err(|p| invalid(&p))?;
                let mut src = ImageSource {
                    reference,
                    resolve_mode: ResolveMode::Default,
                };
                for (k, v) in attrs {
                    match k.as_str() {
                        attr::IMAGE_RESOLVE_MODE => {
                            src.resolve_mode = match v.as_str() {
                                "" | attr::IMAGE_RESOLVE_MODE_DEFAULT => ResolveMode::Default,
                                attr::IMAGE_RESOLVE_MODE_FORCE_PULL => ResolveMode::ForcePull,
                                attr::IMAGE_RESOLVE_MODE_PREFER_LOCAL => ResolveMode::PreferLocal,
                                _ => return Err(bad_attr(k, v, "expected default, pull or local")),
                            }
                        }
                        _ => return Err(unsupported_attr("docker-image", k)),
                    }
                }
                Ok(Source::Image(src))
            }
            "git" => {
                if rest.is_empty() {
                    return Err(invalid("the repository is empty"));
                }
                let (repo, fragment) = match rest.split_once('#') {
                    Some((r, f)) => (r, Some(f)),
                    None => (rest, None),
                };
                if repo.is_empty() {
                    return Err(invalid("the repository is empty"));
                }
                let mut src = GitSource {
                    remote: format!("https://{repo}"),
                    ..Default::default()
                };
                if let Some(fragment) = fragment {
                    let (r, subdir) = match fragment.split_once(':') {
                        Some((r, s)) => (r, Some(s)),
                        None => (fragment, None),
                    };
                    src.git_ref = non_empty(r);
                    src.subdir = subdir.and_then(|s| non_empty(s.trim_matches('/')));
                }
                for (k, v) in attrs {
                    match k.as_str() {
                        attr::GIT_KEEP_GIT_DIR => src.keep_git_dir = parse_bool(k, v)?,
                        attr::GIT_FULL_URL => src.remote = v.clone(),
                        attr::GIT_AUTH_HEADER_SECRET => src.auth_header_secret = non_empty(v),
                        attr::GIT_AUTH_TOKEN_SECRET => src.auth_token_secret = non_empty(v),
                        attr::GIT_KNOWN_SSH_HOSTS => src.known_ssh_hosts = non_empty(v),
                        attr::GIT_MOUNT_SSH_SOCK => src.mount_ssh_sock = non_empty(v),
                        attr::GIT_CHECKSUM => src.checksum = non_empty(v),
                        attr::GIT_SKIP_SUBMODULES => src.skip_submodules = parse_bool(k, v)?,
                        _ => return Err(unsupported_attr("git", k)),
                    }
                }
                Ok(Source::Git(src))
            }
            "local" => {
                if rest.is_empty() {
                    return Err(invalid("the local source has no name (local://NAME)"));
                }
                let mut src = LocalSource {
                    name: rest.to_string(),
                    ..Default::default()
                };
                for (k, v) in attrs {
                    match k.as_str() {
                        attr::LOCAL_SESSION_ID => src.session_id = non_empty(v),
                        attr::LOCAL_UNIQUE_ID => src.unique_id = non_empty(v),
                        attr::LOCAL_INCLUDE_PATTERNS => {
                            src.include_patterns = parse_json_list(k, v)?
                        }
                        attr::LOCAL_EXCLUDE_PATTERNS => {
                            src.exclude_patterns = parse_json_list(k, v)?
                        }
                        attr::LOCAL_FOLLOW_PATHS => src.follow_paths = parse_json_list(k, v)?,
                        attr::LOCAL_SHARED_KEY_HINT => src.shared_key_hint = non_empty(v),
                        attr::LOCAL_DIFFER => {
                            src.differ = match v.as_str() {
                                "" | attr::LOCAL_DIFFER_METADATA => LocalDiffer::Metadata,
                                attr::LOCAL_DIFFER_NONE => LocalDiffer::None,
                                _ => return Err(bad_attr(k, v, "expected metadata or none")),
                            }
                        }
                        _ => return Err(unsupported_attr("local", k)),
                    }
                }
                Ok(Source::Local(src))
            }
            "http" | "https" => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                if host.is_empty() {
                    return Err(invalid("the URL has no host"));
                }
                let mut src = HttpSource {
                    url: identifier.to_string(),
                    ..Default::default()
                };
                for (k, v) in attrs {
                    match k.as_str() {
                        attr::HTTP_CHECKSUM => {
                            if !is_digest(v) {
                                return Err(bad_attr(
                                    k,
                                    v,
                                    "expected a digest such as sha256:<hex>",
                                ));
                            }
                            src.checksum = Some(v.clone());
                        }
                        attr::HTTP_FILENAME => {
                            if v.contains('/') {
                                return Err(bad_attr(k, v, "a file name cannot contain '/'"));
                            }
                            src.filename = non_empty(v);
                        }
                        attr::HTTP_PERM => src.perm = Some(parse_uint(k, v)?),
                        attr::HTTP_UID => src.uid = Some(parse_uint(k, v)?),
                        attr::HTTP_GID => src.gid = Some(parse_uint(k, v)?),
                        attr::HTTP_AUTH_HEADER_SECRET => src.auth_header_secret = non_empty(v),
                        _ => match k.strip_prefix(attr::HTTP_HEADER_PREFIX) {
                            Some(name) if !name.is_empty() => {
                                src.headers.insert(name.to_string(), v.clone());
                            }
                            _ => return Err(unsupported_attr("http", k)),
                        },
                    }
                }
                Ok(Source::Http(src))
            }
            _ => Err(SourceError::UnsupportedScheme {
                identifier: identifier.to_string(),
                scheme: scheme.to_string(),
            }),
        }
    }

    /// The identifier BuildKit would write for this source.
    pub fn identifier(&self) -> String {
        match self {
            Source::Image(i) => format!("docker-image://{}", i.reference),
            Source::Git(g) => {
                let mut id = format!("git://{}", git_host_path(&g.remote));
                if g.git_ref.is_some() || g.subdir.is_some() {
                    id.push('#');
                    id.push_str(g.git_ref.as_deref().unwrap_or(""));
                    if let Some(s) = &g.subdir {
                        id.push(':');
                        id.push_str(s);
                    }
                }
                id
            }
            Source::Local(l) => format!("local://{}", l.name),
            Source::Http(h) => h.url.clone(),
        }
    }

    /// The attributes BuildKit would write for this source (inverse of [`Source::parse`]).
    pub fn attrs(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: Option<&String>| {
            if let Some(v) = v {
                a.insert(k.to_string(), v.clone());
            }
        };
        let json = |l: &Vec<String>| {
            (!l.is_empty()).then(|| serde_json::to_string(l).expect("strings serialize"))
        };
        let flag = |b: bool| b.then(|| "true".to_string());
        match self {
            Source::Image(i) => {
                let mode = match i.resolve_mode {
                    ResolveMode::Default => None,
                    ResolveMode::ForcePull => Some(attr::IMAGE_RESOLVE_MODE_FORCE_PULL.to_string()),
                    ResolveMode::PreferLocal => {
                        Some(attr::IMAGE_RESOLVE_MODE_PREFER_LOCAL.to_string())
                    }
                };
                put(attr::IMAGE_RESOLVE_MODE, mode.as_ref());
            }
            Source::Git(g) => {
                put(attr::GIT_KEEP_GIT_DIR, flag(g.keep_git_dir).as_ref());
                put(attr::GIT_FULL_URL, Some(&g.remote));
                put(attr::GIT_AUTH_HEADER_SECRET, g.auth_header_secret.as_ref());
                put(attr::GIT_AUTH_TOKEN_SECRET, g.auth_token_secret.as_ref());
                put(attr::GIT_KNOWN_SSH_HOSTS, g.known_ssh_hosts.as_ref());
                put(attr::GIT_MOUNT_SSH_SOCK, g.mount_ssh_sock.as_ref());
                put(attr::GIT_CHECKSUM, g.checksum.as_ref());
                put(attr::GIT_SKIP_SUBMODULES, flag(g.skip_submodules).as_ref());
            }
            Source::Local(l) => {
                put(attr::LOCAL_SESSION_ID, l.session_id.as_ref());
                put(attr::LOCAL_UNIQUE_ID, l.unique_id.as_ref());
                put(
                    attr::LOCAL_INCLUDE_PATTERNS,
                    json(&l.include_patterns).as_ref(),
                );
                put(
                    attr::LOCAL_EXCLUDE_PATTERNS,
                    json(&l.exclude_patterns).as_ref(),
                );
                put(attr::LOCAL_FOLLOW_PATHS, json(&l.follow_paths).as_ref());
                put(attr::LOCAL_SHARED_KEY_HINT, l.shared_key_hint.as_ref());
                if l.differ == LocalDiffer::None {
                    put(
                        attr::LOCAL_DIFFER,
                        Some(&attr::LOCAL_DIFFER_NONE.to_string()),
                    );
                }
            }
            Source::Http(h) => {
                put(attr::HTTP_CHECKSUM, h.checksum.as_ref());
                put(attr::HTTP_FILENAME, h.filename.as_ref());
                put(attr::HTTP_PERM, h.perm.map(|p| format!("0{p:o}")).as_ref());
                put(attr::HTTP_UID, h.uid.map(|u| u.to_string()).as_ref());
                put(attr::HTTP_GID, h.gid.map(|g| g.to_string()).as_ref());
                put(attr::HTTP_AUTH_HEADER_SECRET, h.auth_header_secret.as_ref());
                for (name, v) in &h.headers {
                    put(&format!("{}{name}", attr::HTTP_HEADER_PREFIX), Some(v));
                }
            }
        }
        a
    }

    /// The scheme, as in the identifier (`docker-image`, `git`, `local`, `http`, `https`).
    pub fn scheme(&self) -> &'static str {
        match self {
            Source::Image(_) => "docker-image",
            Source::Git(_) => "git",
            Source::Local(_) => "local",
            Source::Http(h) if h.url.starts_with("https://") => "https",
            Source::Http(_) => "http",
        }
    }
}

impl ImageRef {
    /// Parses and normalizes a reference the way Docker does: `busybox` is
    /// `docker.io/library/busybox:latest`.
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        if s.is_empty() {
            return Err("the image reference is empty".into());
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                if !is_digest(d) {
                    return Err(format!("'{d}' is not a valid digest"));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(format!("'{t}' is not a valid tag"));
            }
        }
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if domain == "index.docker.io" {
            domain = "docker.io".into();
        }
        if domain == "docker.io" && !path.contains('/') {
            path = format!("library/{path}");
        }
        let path_ok = path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        });
        if !path_ok {
            return Err(format!("'{name}' is not a valid repository name (lowercase letters, digits, '.', '_', '-', '/')"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `host/path` of a git remote URL (`https://host/path`, `ssh://git@host/path`, `git@host:path`).
pub(crate) fn git_host_path(remote: &str) -> String {
    let strip_user = |s: &str| -> String {
        match s.split_once('@') {
            Some((user, rest)) if !user.contains('/') => rest.to_string(),
            _ => s.to_string(),
        }
    };
    let (host, path) = match remote.split_once("://") {
        Some((_, rest)) => {
            let rest = strip_user(rest);
            match rest.split_once('/') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (rest, String::new()),
            }
        }
        // scp-like `user@host:path`
        None if remote.contains('@') && remote.contains(':') => {
            let rest = strip_user(remote);
            let (h, p) = rest.split_once(':').unwrap_or((&rest, ""));
            (h.to_string(), p.to_string())
        }
        None => match remote.split_once('/') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (remote.to_string(), String::new()),
        },
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn is_digest(s: &str) -> bool {
    let Some((algo, hex)) = s.split_once(':') else {
        return false;
    };
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unsupported_attr(scheme: &'static str, key: &str) -> SourceError {
    SourceError::UnsupportedAttr {
        scheme,
        key: key.to_string(),
    }
}

fn bad_attr(key: &str, value: &str, problem: &str) -> SourceError {
    SourceError::InvalidAttr {
        key: key.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, SourceError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(bad_attr(key, v, "expected true or false")),
    }
}

fn parse_json_list(key: &str, v: &str) -> Result<Vec<String>, SourceError> {
    serde_json::from_str(v)
        .map_err(|e| bad_attr(key, v, &format!("expected a JSON array of strings ({e})")))
}

/// Like Go's `strconv.ParseInt(v, 0, …)`: `0x` hex, `0o`/leading `0` octal, `0b` binary, else decimal.
fn parse_uint(key: &str, v: &str) -> Result<u32, SourceError> {
    let (digits, radix) = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(o) = v.strip_prefix("0o").or_else(|| v.strip_prefix("0O")) {
        (o, 8)
    } else if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        (b, 2)
    } else if v.len() > 1 && v.starts_with('0') {
        (&v[1..], 8)
    } else {
        (v, 10)
    };
    u32::from_str_radix(digits, radix)
        .map_err(|e| bad_attr(key, v, &format!("expected a non-negative integer ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn image_references_normalize_like_docker() {
        let table: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
            ("moby/buildkit:v0.12", "docker.io/moby/buildkit:v0.12"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost/app:dev", "localhost/app:dev"),
            ("ghcr.io/org/sub/app:1.0", "ghcr.io/org/sub/app:1.0"),
            (
                "busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "docker.io/library/busybox@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "busybox:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "docker.io/library/busybox:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for (input, want) in table {
            let got = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), *want, "{input}");
        }
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "a//b",
            "docker.io/library/x:t@md5:00",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn identifiers_parse_by_scheme() {
        let none = BTreeMap::new();
        let table: Vec<(&str, BTreeMap<String, String>, Source)> = vec![
            (
                "docker-image://docker.io/library/busybox:latest",
                none.clone(),
                Source::Image(ImageSource {
                    reference: ImageRef::parse("busybox").unwrap(),
                    resolve_mode: ResolveMode::Default,
                }),
            ),
            (
                "docker-image://alpine:3.19",
                attrs(&[(attr::IMAGE_RESOLVE_MODE, "local")]),
                Source::Image(ImageSource {
                    reference: ImageRef::parse("alpine:3.19").unwrap(),
                    resolve_mode: ResolveMode::PreferLocal,
                }),
            ),
            (
                "git://github.com/moby/buildkit#v0.12.0:docs",
                attrs(&[
                    (attr::GIT_KEEP_GIT_DIR, "true"),
                    (attr::GIT_AUTH_TOKEN_SECRET, "GIT_AUTH_TOKEN"),
                ]),
                Source::Git(GitSource {
                    remote: "https://github.com/moby/buildkit".into(),
                    git_ref: Some("v0.12.0".into()),
                    subdir: Some("docs".into()),
                    keep_git_dir: true,
                    auth_token_secret: Some("GIT_AUTH_TOKEN".into()),
                    ..Default::default()
                }),
            ),
            (
                "git://example.com/repo.git",
                attrs(&[(attr::GIT_FULL_URL, "ssh://git@example.com/repo.git")]),
                Source::Git(GitSource {
                    remote: "ssh://git@example.com/repo.git".into(),
                    ..Default::default()
                }),
            ),
            (
                "local://context",
                attrs(&[
                    (attr::LOCAL_INCLUDE_PATTERNS, r#"["src","Cargo.*"]"#),
                    (attr::LOCAL_EXCLUDE_PATTERNS, r#"["target"]"#),
                    (attr::LOCAL_FOLLOW_PATHS, r#"["Dockerfile"]"#),
                    (attr::LOCAL_SHARED_KEY_HINT, "context"),
                    (attr::LOCAL_SESSION_ID, "abc"),
                ]),
                Source::Local(LocalSource {
                    name: "context".into(),
                    session_id: Some("abc".into()),
                    include_patterns: vec!["src".into(), "Cargo.*".into()],
                    exclude_patterns: vec!["target".into()],
                    follow_paths: vec!["Dockerfile".into()],
                    shared_key_hint: Some("context".into()),
                    ..Default::default()
                }),
            ),
            (
                "https://example.com/a/b.tar.gz",
                attrs(&[
                    (attr::HTTP_FILENAME, "b.tgz"),
                    (attr::HTTP_PERM, "0644"),
                    (attr::HTTP_UID, "1000"),
                    ("http.header.Accept", "*/*"),
                ]),
                Source::Http(HttpSource {
                    url: "https://example.com/a/b.tar.gz".into(),
                    filename: Some("b.tgz".into()),
                    perm: Some(0o644),
                    uid: Some(1000),
                    headers: [("Accept".to_string(), "*/*".to_string())].into(),
                    ..Default::default()
                }),
            ),
            (
                "http://127.0.0.1:8080/f",
                none.clone(),
                Source::Http(HttpSource {
                    url: "http://127.0.0.1:8080/f".into(),
                    ..Default::default()
                }),
            ),
        ];
        for (id, a, want) in table {
            let got = Source::parse(id, &a).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(got, want, "{id}");
        }
    }

    #[test]
    fn bad_identifiers_and_attrs_are_rejected_by_name() {
        let none = BTreeMap::new();
        let table: Vec<(&str, BTreeMap<String, String>, &str)> = vec![
            ("busybox", none.clone(), "has no scheme"),
            (
                "oci-layout://store@sha256:00",
                none.clone(),
                "scheme 'oci-layout' is not supported",
            ),
            ("docker-image://", none.clone(), "image reference is empty"),
            ("local://", none.clone(), "has no name"),
            ("git://", none.clone(), "repository is empty"),
            ("https:///x", none.clone(), "no host"),
            (
                "docker-image://busybox",
                attrs(&[(attr::IMAGE_LAYER_LIMIT, "1")]),
                "'image.layerlimit' is not supported for docker-image",
            ),
            (
                "docker-image://busybox",
                attrs(&[(attr::IMAGE_RESOLVE_MODE, "sometimes")]),
                "expected default, pull or local",
            ),
            (
                "git://h/r",
                attrs(&[(attr::GIT_MTIME, "commit")]),
                "'git.mtime' is not supported for git",
            ),
            (
                "git://h/r",
                attrs(&[("git.sig.pubkey", "k")]),
                "'git.sig.pubkey' is not supported",
            ),
            (
                "git://h/r",
                attrs(&[(attr::GIT_KEEP_GIT_DIR, "yes")]),
                "expected true or false",
            ),
            (
                "local://c",
                attrs(&[(attr::LOCAL_METADATA_TRANSFER, "true")]),
                "'local.metadatatransfer' is not supported",
            ),
            (
                "local://c",
                attrs(&[(attr::LOCAL_INCLUDE_PATTERNS, "src")]),
                "JSON array",
            ),
            (
                "https://h/f",
                attrs(&[(attr::HTTP_CHECKSUM, "abc")]),
                "expected a digest",
            ),
            (
                "https://h/f",
                attrs(&[(attr::HTTP_PERM, "rw")]),
                "non-negative integer",
            ),
            (
                "https://h/f",
                attrs(&[("http.sig.signature", "x")]),
                "'http.sig.signature' is not supported",
            ),
        ];
        for (id, a, want) in table {
            let err = Source::parse(id, &a).expect_err(id).to_string();
            assert!(err.contains(want), "{id}: '{err}' should contain '{want}'");
        }
    }

    #[test]
    fn identifier_and_attrs_round_trip() {
        for (id, a) in [
            (
                "docker-image://docker.io/library/busybox:latest",
                attrs(&[]),
            ),
            (
                "git://github.com/moby/buildkit#main:docs",
                attrs(&[(attr::GIT_FULL_URL, "https://github.com/moby/buildkit")]),
            ),
            (
                "local://context",
                attrs(&[(attr::LOCAL_EXCLUDE_PATTERNS, r#"["target"]"#)]),
            ),
            (
                "https://example.com/f",
                attrs(&[(attr::HTTP_PERM, "0755"), (attr::HTTP_GID, "5")]),
            ),
        ] {
            let s = Source::parse(id, &a).unwrap();
            assert_eq!(s.identifier(), id);
            assert_eq!(s.attrs(), a, "{id}");
            assert_eq!(Source::parse(&s.identifier(), &s.attrs()).unwrap(), s);
        }
    }

    #[test]
    fn git_host_path_strips_scheme_and_user() {
        for (remote, want) in [
            (
                "https://github.com/moby/buildkit",
                "github.com/moby/buildkit",
            ),
            (
                "https://github.com/moby/buildkit.git",
                "github.com/moby/buildkit.git",
            ),
            ("ssh://git@example.com:22/r.git", "example.com:22/r.git"),
            (
                "git@github.com:moby/buildkit.git",
                "github.com/moby/buildkit.git",
            ),
        ] {
            assert_eq!(git_host_path(remote), want, "{remote}");
        }
    }
}
