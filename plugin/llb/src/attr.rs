//! Source attribute keys and values, spelled exactly as BuildKit's `solver/pb/attr.go` spells them,
//! so that source ops written by any LLB library carry options oxkit understands.

/// git: keep the `.git` directory in the checkout (`"true"`).
pub const GIT_KEEP_GIT_DIR: &str = "git.keepgitdir";
/// git: the full remote URL (the identifier only carries host and path).
pub const GIT_FULL_URL: &str = "git.fullurl";
/// git: name of the secret holding a full HTTP `Authorization` header.
pub const GIT_AUTH_HEADER_SECRET: &str = "git.authheadersecret";
/// git: name of the secret holding an HTTP token.
pub const GIT_AUTH_TOKEN_SECRET: &str = "git.authtokensecret";
/// git: known_hosts content for SSH remotes.
pub const GIT_KNOWN_SSH_HOSTS: &str = "git.knownsshhosts";
/// git: id of the SSH agent socket to use for SSH remotes.
pub const GIT_MOUNT_SSH_SOCK: &str = "git.mountsshsock";
/// git: expected commit checksum of the ref.
pub const GIT_CHECKSUM: &str = "git.checksum";
/// git: do not check out submodules (`"true"`).
pub const GIT_SKIP_SUBMODULES: &str = "git.skipsubmodules";
/// git: file modification times policy (not supported by oxkit).
pub const GIT_MTIME: &str = "git.mtime";
/// git: fetch by commit (not supported by oxkit).
pub const GIT_FETCH_BY_COMMIT: &str = "git.fetchbycommit";
/// git: fetch from a bundle blob (not supported by oxkit).
pub const GIT_BUNDLE: &str = "git.bundle";
/// git: produce a bundle instead of a worktree (not supported by oxkit).
pub const GIT_CHECKOUT_BUNDLE: &str = "git.checkoutbundle";
/// Prefix of git signature verification attributes (not supported by oxkit).
pub const GIT_SIGNATURE_PREFIX: &str = "git.sig.";

/// local: the client session that serves this directory.
pub const LOCAL_SESSION_ID: &str = "local.session";
/// local: a unique id of the directory on the client.
pub const LOCAL_UNIQUE_ID: &str = "local.unique";
/// local: JSON array of include patterns.
pub const LOCAL_INCLUDE_PATTERNS: &str = "local.includepattern";
/// local: JSON array of paths to follow (symlinks resolved) when sending.
pub const LOCAL_FOLLOW_PATHS: &str = "local.followpaths";
/// local: JSON array of exclude patterns (`.dockerignore` semantics).
pub const LOCAL_EXCLUDE_PATTERNS: &str = "local.excludepatterns";
/// local: a hint for sharing the received copy between builds.
pub const LOCAL_SHARED_KEY_HINT: &str = "local.sharedkeyhint";
/// local: how changes are detected (`none` or `metadata`).
pub const LOCAL_DIFFER: &str = "local.differ";
/// local: value of [`LOCAL_DIFFER`]: send everything.
pub const LOCAL_DIFFER_NONE: &str = "none";
/// local: value of [`LOCAL_DIFFER`]: compare file metadata (the default).
pub const LOCAL_DIFFER_METADATA: &str = "metadata";
/// local: transfer metadata only (not supported by oxkit).
pub const LOCAL_METADATA_TRANSFER: &str = "local.metadatatransfer";
/// local: exceptions to metadata-only transfer (not supported by oxkit).
pub const LOCAL_METADATA_TRANSFER_EXCLUDE: &str = "local.metadatatransferexclude";

/// http: expected digest of the downloaded file.
pub const HTTP_CHECKSUM: &str = "http.checksum";
/// http: name of the file written into the result.
pub const HTTP_FILENAME: &str = "http.filename";
/// http: permission bits of the file (decimal, or octal with a leading 0).
pub const HTTP_PERM: &str = "http.perm";
/// http: owner uid of the file.
pub const HTTP_UID: &str = "http.uid";
/// http: owner gid of the file.
pub const HTTP_GID: &str = "http.gid";
/// http: name of the secret holding an `Authorization` header.
pub const HTTP_AUTH_HEADER_SECRET: &str = "http.authheadersecret";
/// http: prefix of extra request headers (`http.header.NAME`).
pub const HTTP_HEADER_PREFIX: &str = "http.header.";
/// Prefix of http signature verification attributes (not supported by oxkit).
pub const HTTP_SIGNATURE_PREFIX: &str = "http.sig.";

/// image: how to resolve the reference (`default`, `pull`, `local`).
pub const IMAGE_RESOLVE_MODE: &str = "image.resolvemode";
/// Value of [`IMAGE_RESOLVE_MODE`]: the daemon's default.
pub const IMAGE_RESOLVE_MODE_DEFAULT: &str = "default";
/// Value of [`IMAGE_RESOLVE_MODE`]: always pull.
pub const IMAGE_RESOLVE_MODE_FORCE_PULL: &str = "pull";
/// Value of [`IMAGE_RESOLVE_MODE`]: prefer the local image store.
pub const IMAGE_RESOLVE_MODE_PREFER_LOCAL: &str = "local";
/// image: cache record type (not supported by oxkit).
pub const IMAGE_RECORD_TYPE: &str = "image.recordtype";
/// image: use only the first N layers (not supported by oxkit).
pub const IMAGE_LAYER_LIMIT: &str = "image.layerlimit";
/// image: expected manifest checksum (not supported by oxkit).
pub const IMAGE_CHECKSUM: &str = "image.checksum";

/// Description key BuildKit clients use for a vertex's human name.
pub const DESCRIPTION_CUSTOM_NAME: &str = "llb.customname";

/// The `PATH` BuildKit's client sets on Linux when a run step's environment has none.
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
