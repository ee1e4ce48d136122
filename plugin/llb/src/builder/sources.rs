//! Source states: image, local, git, http.

use std::sync::Arc;

use super::{scratch, ImageMetaResolver, ImageRunConfig, Node, NodeOp, State};
use crate::op::{OpMetadata, Platform};
use crate::source::{
    GitSource, HttpSource, ImageRef, LocalDiffer, LocalSource, ResolveMode, Source,
};

fn source_state(
    identifier: String,
    attrs: std::collections::BTreeMap<String, String>,
    platform: Option<Platform>,
) -> State {
    let base = match &platform {
        Some(p) => scratch().platform(p.clone()),
        None => scratch(),
    };
    let platform = Some(base.platform.clone());
    base.with_node(Node {
        op: NodeOp::Source { identifier, attrs },
        inputs: vec![],
        platform,
        metadata: OpMetadata::default(),
    })
}

fn from_source(source: &Source, platform: Option<Platform>) -> State {
    source_state(source.identifier(), source.attrs(), platform)
}

/// Options of [`image_with`].
#[derive(Clone, Default)]
pub struct ImageOptions {
    /// How to resolve the reference.
    pub resolve_mode: ResolveMode,
    /// The platform to pick from a multi-platform image (default: the host's).
    pub platform: Option<Platform>,
    /// Asks for the image's config while the state is described, so that the state starts with
    /// the image's env, working directory and user (as BuildKit's `llb.WithMetaResolver`), and
    /// [`State::image_config`] says what it is.
    pub meta_resolver: Option<Arc<dyn ImageMetaResolver>>,
}

impl std::fmt::Debug for ImageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageOptions")
            .field("resolve_mode", &self.resolve_mode)
            .field("platform", &self.platform)
            .field("meta_resolver", &self.meta_resolver.is_some())
            .finish()
    }
}

/// The root filesystem of an image (`docker-image://`). `reference` is normalized as Docker does
/// (`busybox` is `docker.io/library/busybox:latest`); an invalid one fails at `marshal`.
pub fn image(reference: &str) -> State {
    image_with(reference, ImageOptions::default())
}

/// [`image`] with options. With a [`ImageOptions::meta_resolver`], the image's config is
/// resolved now: its `Env` entries, `WorkingDir` and `User` become the state's defaults for later
/// steps, as BuildKit does; a failure is reported by `marshal`.
pub fn image_with(reference: &str, opts: ImageOptions) -> State {
    match ImageRef::parse(reference) {
        Ok(reference) => {
            let Some(resolver) = &opts.meta_resolver else {
                return from_source(
                    &Source::Image(crate::source::ImageSource {
                        reference,
                        resolve_mode: opts.resolve_mode,
                    }),
                    opts.platform,
                );
            };
            let name = reference.to_string();
            let resolved = resolver
                .resolve_image_config(&name, opts.platform.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|r| ImageRunConfig::parse(&r.config).map(|run| (r, run)));
            let (resolved, run) = match resolved {
                Ok(pair) => pair,
                Err(reason) => {
                    return scratch().with_node(Node {
                        op: NodeOp::Unresolved {
                            reference: name,
                            reason,
                        },
                        inputs: vec![],
                        platform: None,
                        metadata: OpMetadata::default(),
                    })
                }
            };
            let mut state = from_source(
                &Source::Image(crate::source::ImageSource {
                    reference,
                    resolve_mode: opts.resolve_mode,
                }),
                opts.platform,
            );
            for entry in &run.env {
                let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                state = state.env(k, v);
            }
            if !run.working_dir.is_empty() {
                state = state.dir(&run.working_dir);
            }
            if !run.user.is_empty() {
                state = state.user(&run.user);
            }
            state.image = Some(Arc::new((resolved, run)));
            state
        }
        // Left as written so that `marshal` reports it.
        Err(_) => source_state(
            format!("docker-image://{reference}"),
            Default::default(),
            opts.platform,
        ),
    }
}

/// Options of [`local_with`].
#[derive(Clone, Debug, Default)]
pub struct LocalOptions {
    /// Only send paths matching one of these.
    pub include_patterns: Vec<String>,
    /// Do not send paths matching these (`.dockerignore` semantics).
    pub exclude_patterns: Vec<String>,
    /// Paths to send with symlinks followed.
    pub follow_paths: Vec<String>,
    /// Hint for sharing the received copy between builds.
    pub shared_key_hint: Option<String>,
    /// The client session serving the directory.
    pub session_id: Option<String>,
    /// A unique id of the directory on the client.
    pub unique_id: Option<String>,
    /// Send everything instead of comparing metadata.
    pub no_differ: bool,
}

/// A directory the client sends under `name` (`local://NAME`, e.g. `--local context=.`).
pub fn local(name: &str) -> State {
    local_with(name, LocalOptions::default())
}

/// [`local`] with options.
pub fn local_with(name: &str, opts: LocalOptions) -> State {
    from_source(
        &Source::Local(LocalSource {
            name: name.to_string(),
            session_id: opts.session_id,
            unique_id: opts.unique_id,
            include_patterns: opts.include_patterns,
            exclude_patterns: opts.exclude_patterns,
            follow_paths: opts.follow_paths,
            shared_key_hint: opts.shared_key_hint,
            differ: if opts.no_differ {
                LocalDiffer::None
            } else {
                LocalDiffer::Metadata
            },
        }),
        None,
    )
}

/// Options of [`git_with`].
#[derive(Clone, Debug, Default)]
pub struct GitOptions {
    /// Subdirectory of the checkout to use as the result.
    pub subdir: Option<String>,
    /// Keep `.git` in the result.
    pub keep_git_dir: bool,
    /// Secret with a full HTTP `Authorization` header.
    pub auth_header_secret: Option<String>,
    /// Secret with an HTTP token.
    pub auth_token_secret: Option<String>,
    /// known_hosts for SSH remotes.
    pub known_ssh_hosts: Option<String>,
    /// SSH agent socket id.
    pub mount_ssh_sock: Option<String>,
    /// Do not check out submodules.
    pub skip_submodules: bool,
    /// Expected commit of the ref.
    pub checksum: Option<String>,
}

/// A checkout of `git_ref` (branch, tag or commit; empty for the default branch) of the
/// repository at `url` (`https://…`, `ssh://…`, `git@host:path`, or `host/path` for https).
pub fn git(url: &str, git_ref: &str) -> State {
    git_with(url, git_ref, GitOptions::default())
}

/// [`git`] with options.
pub fn git_with(url: &str, git_ref: &str, opts: GitOptions) -> State {
    let remote = if url.contains("://") || url.contains('@') {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    from_source(
        &Source::Git(GitSource {
            remote,
            git_ref: (!git_ref.is_empty()).then(|| git_ref.to_string()),
            subdir: opts
                .subdir
                .map(|s| s.trim_matches('/').to_string())
                .filter(|s| !s.is_empty()),
            keep_git_dir: opts.keep_git_dir,
            auth_header_secret: opts.auth_header_secret,
            auth_token_secret: opts.auth_token_secret,
            known_ssh_hosts: opts.known_ssh_hosts,
            mount_ssh_sock: opts.mount_ssh_sock,
            checksum: opts.checksum,
            skip_submodules: opts.skip_submodules,
        }),
        None,
    )
}

/// Options of [`http_with`].
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// Expected digest of the content (`sha256:…`).
    pub checksum: Option<String>,
    /// File name in the result (default: the URL's last path segment).
    pub filename: Option<String>,
    /// Permission bits.
    pub perm: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
}

/// A single file downloaded from `url` (`http://` or `https://`).
pub fn http(url: &str) -> State {
    http_with(url, HttpOptions::default())
}

/// [`http`] with options.
pub fn http_with(url: &str, opts: HttpOptions) -> State {
    from_source(
        &Source::Http(HttpSource {
            url: url.to_string(),
            checksum: opts.checksum,
            filename: opts.filename,
            perm: opts.perm,
            uid: opts.uid,
            gid: opts.gid,
            ..Default::default()
        }),
        None,
    )
}
