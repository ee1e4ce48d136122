//! oxkit's own types for the ops it supports. Everything after parsing works on these, never on
//! the protobuf structs. Input references are indices into the owning vertex's `inputs`.

use crate::source::Source;
use std::collections::BTreeMap;

/// The operation of one vertex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Produce a filesystem from outside the graph (image, git, local, http). One output.
    Source(SourceOp),
    /// Run a process. One output per mount with an output index.
    Exec(ExecOp),
    /// A chain of file actions. One output per action with an output index.
    File(FileOp),
    /// Layer several inputs on top of each other. One output.
    Merge(MergeOp),
}

impl Op {
    /// `source`, `exec`, `file` or `merge`: the op's kind, as BuildKit names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
        }
    }

    /// How many outputs the op has (what `Input.index` of a consumer may name).
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::Source(_) | Op::Merge(_) => 1,
            Op::Exec(e) => e.mounts.iter().filter(|m| m.output.is_some()).count(),
            Op::File(f) => f.actions.iter().filter(|a| a.output.is_some()).count(),
        }
    }
}

/// A source op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOp {
    /// The parsed identifier and attributes.
    pub source: Source,
    /// The identifier exactly as written in the op.
    pub identifier: String,
    /// The attributes exactly as written in the op (all of them understood by `source`).
    pub attrs: BTreeMap<String, String>,
}

/// Network of a run step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetMode {
    /// BuildKit's default sandbox network (`UNSET`); oxkit has no CNI and uses the host network.
    #[default]
    Sandbox,
    /// The host network.
    Host,
    /// No network: loopback only.
    None,
}

/// A process run on a root filesystem plus mounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOp {
    /// What to run and how.
    pub meta: ExecMeta,
    /// Mounts, the root (`/`) among them.
    pub mounts: Vec<Mount>,
    /// Network mode.
    pub network: NetMode,
    /// Environment variables whose values come from secrets.
    pub secret_env: Vec<SecretEnv>,
}

/// Process arguments and environment of an exec op (BuildKit's `Meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecMeta {
    /// argv; never empty.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// `user[:group]`, names or ids; empty means root.
    pub user: String,
    /// Proxy settings passed as environment.
    pub proxy_env: Option<ProxyEnv>,
    /// Extra `/etc/hosts` entries.
    pub extra_hosts: Vec<HostIp>,
    /// Hostname; empty means the daemon's default.
    pub hostname: String,
    /// Resource limits.
    pub ulimits: Vec<Ulimit>,
    /// Remove mount stubs left in the root recursively.
    pub remove_mount_stubs_recursive: bool,
    /// Exit codes that count as success; empty means only 0.
    pub valid_exit_codes: Vec<i32>,
}

/// Proxy environment of a run step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTP_PROXY`.
    pub http_proxy: String,
    /// `HTTPS_PROXY`.
    pub https_proxy: String,
    /// `FTP_PROXY`.
    pub ftp_proxy: String,
    /// `NO_PROXY`.
    pub no_proxy: String,
    /// `ALL_PROXY`.
    pub all_proxy: String,
}

/// An `/etc/hosts` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostIp {
    /// Host name.
    pub host: String,
    /// Address.
    pub ip: String,
}

/// A resource limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ulimit {
    /// Name (`nofile`, …).
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// An environment variable backed by a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretEnv {
    /// Secret id.
    pub id: String,
    /// Variable name.
    pub name: String,
    /// Missing secret is not an error.
    pub optional: bool,
}

/// One mount of an exec op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Mount point inside the container; `/` is the root.
    pub dest: String,
    /// What is mounted.
    pub kind: MountKind,
    /// Read-only.
    pub readonly: bool,
    /// The op output this mount's final content becomes, if any.
    pub output: Option<usize>,
}

/// What a mount is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// An input's output (or scratch when `input` is `None`), from `selector` down.
    Bind {
        /// Index into the vertex's inputs; `None` is an empty directory.
        input: Option<usize>,
        /// Path inside the input to mount (empty or `/` for all of it).
        selector: String,
        /// Content-based caching hint.
        content_cache: ContentCache,
    },
    /// A persistent cache directory shared between builds.
    Cache {
        /// Cache id (BuildKit uses the mount point when none is given).
        id: String,
        /// How concurrent users share it.
        sharing: CacheSharing,
        /// Initial content, if any.
        input: Option<usize>,
        /// Path inside the initial content.
        selector: String,
    },
    /// A tmpfs.
    Tmpfs {
        /// Size limit in bytes; `None` is unlimited.
        size: Option<u64>,
    },
    /// A secret file.
    Secret(SecretMount),
}

/// Content-based cache setting of a bind mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentCache {
    /// The daemon decides.
    #[default]
    Default,
    /// Key the cache on the mounted content.
    On,
    /// Do not.
    Off,
}

/// Sharing mode of a cache mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheSharing {
    /// Concurrent writers share it.
    #[default]
    Shared,
    /// A second concurrent writer gets a new directory.
    Private,
    /// A second concurrent writer waits.
    Locked,
}

/// A secret mounted as a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretMount {
    /// Secret id.
    pub id: String,
    /// File owner uid.
    pub uid: u32,
    /// File owner gid.
    pub gid: u32,
    /// File mode.
    pub mode: u32,
    /// Missing secret is not an error.
    pub optional: bool,
}

/// A chain of file actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOp {
    /// Actions in order; each may use earlier actions' results.
    pub actions: Vec<FileAction>,
}

/// What a file action works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileInput {
    /// An empty directory.
    Scratch,
    /// An input of the vertex (index into `inputs`).
    Input(usize),
    /// The result of an earlier action of the same op (index into `actions`).
    Action(usize),
}

/// One file action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAction {
    /// The filesystem the action changes.
    pub input: FileInput,
    /// For copy: where files come from; `Scratch` otherwise.
    pub secondary_input: FileInput,
    /// The op output the result becomes, if any.
    pub output: Option<usize>,
    /// The action.
    pub kind: FileActionKind,
}

/// The file actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileActionKind {
    /// Copy from the secondary input.
    Copy(Copy),
    /// Create a file.
    Mkfile(Mkfile),
    /// Create a directory.
    Mkdir(Mkdir),
    /// Remove a path.
    Rm(Rm),
    /// Create a symlink.
    Symlink(Symlink),
}

/// A user or group: by id, or by name looked up in an input's `/etc/passwd` / `/etc/group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    /// A numeric id.
    Id(u32),
    /// A name, and where to look it up.
    Name {
        /// User or group name.
        name: String,
        /// The filesystem whose `/etc/passwd` or `/etc/group` resolves it.
        input: FileInput,
    },
}

/// Owner override.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chown {
    /// User; `None` keeps the default (root or the source's owner).
    pub user: Option<UserRef>,
    /// Group; `None` follows the user.
    pub group: Option<UserRef>,
}

/// Copy `src` from the secondary input to `dest` in the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copy {
    /// Source path (absolute).
    pub src: String,
    /// Destination path (absolute; a trailing `/` means "into this directory").
    pub dest: String,
    /// Owner of the copied files.
    pub owner: Option<Chown>,
    /// Permission bits of the copied files; `None` keeps the source's.
    pub mode: Option<u32>,
    /// Resolve symlinks in `src`.
    pub follow_symlink: bool,
    /// If `src` is a directory, copy its contents rather than itself.
    pub dir_copy_contents: bool,
    /// Create missing parents of `dest`.
    pub create_dest_path: bool,
    /// `src` may contain wildcards.
    pub allow_wildcard: bool,
    /// A wildcard that matches nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// Timestamp of created files (Unix nanoseconds); `None` keeps the source's.
    pub timestamp: Option<i64>,
    /// Only copy paths matching one of these.
    pub include_patterns: Vec<String>,
    /// Do not copy paths matching these.
    pub exclude_patterns: Vec<String>,
    /// Replace an existing destination of a different type instead of failing.
    pub always_replace_existing_dest_paths: bool,
    /// Docker's `ADD` of a local archive (BuildKit's `attemptUnpackDockerCompatibility`): a
    /// source that is a regular file holding a tar archive (plain, gzip, bzip2, xz or zstd,
    /// told by content) is extracted into `dest` as a directory instead of being copied.
    pub attempt_unpack: bool,
}

/// Create a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mkfile {
    /// Path (absolute).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Content.
    pub data: Vec<u8>,
    /// Owner.
    pub owner: Option<Chown>,
    /// Timestamp (Unix nanoseconds); `None` is now.
    pub timestamp: Option<i64>,
}

/// Create a directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mkdir {
    /// Path (absolute).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Create missing parents.
    pub make_parents: bool,
    /// Owner.
    pub owner: Option<Chown>,
    /// Timestamp (Unix nanoseconds); `None` is now.
    pub timestamp: Option<i64>,
}

/// Remove a path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rm {
    /// Path (absolute).
    pub path: String,
    /// A missing path is not an error.
    pub allow_not_found: bool,
    /// `path` may contain wildcards.
    pub allow_wildcard: bool,
}

/// Create a symlink `newpath` pointing at `oldpath`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symlink {
    /// Link target, stored as is.
    pub oldpath: String,
    /// The link to create (absolute).
    pub newpath: String,
    /// Owner of the link.
    pub owner: Option<Chown>,
    /// Timestamp (Unix nanoseconds); `None` is now.
    pub timestamp: Option<i64>,
}

/// Layer inputs: later inputs win.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MergeOp {
    /// Indices into the vertex's inputs, bottom first.
    pub inputs: Vec<usize>,
}

/// An OCI platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, … or empty.
    pub variant: String,
    /// OS version (Windows) or empty.
    pub os_version: String,
    /// OS features or empty.
    pub os_features: Vec<String>,
}

impl Platform {
    /// The platform of the machine this runs on, named as OCI names it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            ..Default::default()
        }
    }

    /// This platform with an empty OS or architecture taken from [`Platform::host`]: what an
    /// image's manifest is picked from an index by.
    pub fn or_host(&self) -> Platform {
        let host = Platform::host();
        let or = |mine: &str, host: String| {
            if mine.is_empty() {
                host
            } else {
                mine.to_string()
            }
        };
        Platform {
            os: or(&self.os, host.os),
            architecture: or(&self.architecture, host.architecture),
            ..self.clone()
        }
    }
}

/// Per-vertex metadata: not part of the digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpMetadata {
    /// Re-run this vertex even if cached.
    pub ignore_cache: bool,
    /// Free-form description; `llb.customname` is the vertex's human name.
    pub description: BTreeMap<String, String>,
    /// Whether to export this vertex's cache (`None`: the exporter's default).
    pub export_cache: Option<bool>,
    /// Capabilities the client required.
    pub caps: BTreeMap<String, bool>,
    /// Progress group the vertex is shown in.
    pub progress_group: Option<ProgressGroup>,
}

impl OpMetadata {
    /// The vertex's human name (`llb.customname`), if set.
    pub fn custom_name(&self) -> Option<&str> {
        self.description
            .get(crate::attr::DESCRIPTION_CUSTOM_NAME)
            .map(String::as_str)
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == OpMetadata::default()
    }
}

/// A progress group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressGroup {
    /// Group id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Weak grouping.
    pub weak: bool,
}
