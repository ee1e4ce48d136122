//! `run` steps: a process over a state's filesystem plus mounts.

use super::{join_path, Node, NodeOp, Output, State};
use crate::attr;
use crate::op::{
    CacheSharing, ContentCache, ExecMeta, ExecOp, HostIp, Mount, MountKind, NetMode, Op,
    OpMetadata, SecretEnv, SecretMount,
};
use std::sync::Arc;

/// Where a secret mount goes when [`MountSpec::secret`] is given no destination.
const DEFAULT_SECRETS_DIR: &str = "/run/secrets";

/// A mount to add to a `run` step.
#[derive(Clone, Debug)]
pub struct MountSpec {
    dest: String,
    kind: SpecKind,
    readonly: bool,
}

#[derive(Clone, Debug)]
enum SpecKind {
    Bind {
        from: Box<State>,
        selector: String,
    },
    Cache {
        id: String,
        sharing: CacheSharing,
        seed: Option<Box<State>>,
        selector: String,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Secret(SecretMount),
}

impl MountSpec {
    /// `from`'s filesystem at `dest`; writable (with an output) unless [`MountSpec::readonly`].
    pub fn bind(dest: &str, from: &State) -> MountSpec {
        MountSpec {
            dest: dest.into(),
            kind: SpecKind::Bind {
                from: Box::new(from.clone()),
                selector: String::new(),
            },
            readonly: false,
        }
    }

    /// A persistent cache directory `id` at `dest`, kept between builds.
    pub fn cache(dest: &str, id: &str) -> MountSpec {
        MountSpec {
            dest: dest.into(),
            kind: SpecKind::Cache {
                id: id.into(),
                sharing: CacheSharing::Shared,
                seed: None,
                selector: String::new(),
            },
            readonly: false,
        }
    }

    /// A tmpfs at `dest`.
    pub fn tmpfs(dest: &str) -> MountSpec {
        MountSpec {
            dest: dest.into(),
            kind: SpecKind::Tmpfs { size: None },
            readonly: false,
        }
    }

    /// The secret `id` as a file at `dest`, or at `/run/secrets/<id>` when `dest` is empty
    /// (root-owned, mode 0400 unless changed; BuildKit's `llb.AddSecret(dest, llb.SecretID(id))`).
    /// The file lives on a tmpfs for the step only: it is never part of the step's result, and
    /// its value is not part of the step's cache key.
    pub fn secret(dest: &str, id: &str) -> MountSpec {
        let dest = if dest.is_empty() {
            format!("{DEFAULT_SECRETS_DIR}/{id}")
        } else {
            dest.to_owned()
        };
        MountSpec {
            dest,
            kind: SpecKind::Secret(SecretMount {
                id: id.into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                optional: false,
            }),
            // As BuildKit's client writes it: the flag stays unset for secrets.
            readonly: false,
        }
    }

    /// Mount read-only (a read-only bind mount has no output).
    pub fn readonly(mut self) -> MountSpec {
        self.readonly = true;
        self
    }

    /// For a bind mount: mount only this path of the source state. For a cache mount with a
    /// [`MountSpec::seed`]: the path of the seed whose content a new cache starts with
    /// (`llb.SourcePath`).
    pub fn selector(mut self, path: &str) -> MountSpec {
        match &mut self.kind {
            SpecKind::Bind { selector, .. } | SpecKind::Cache { selector, .. } => {
                *selector = path.to_string();
            }
            SpecKind::Tmpfs { .. } | SpecKind::Secret(_) => {}
        }
        self
    }

    /// For a cache mount: the state whose content (at [`MountSpec::selector`], default its
    /// root) a cache starts with when it is created; an existing cache keeps its content.
    /// Marshalled as the mount's input, as BuildKit's `llb.AddMount(dest, from,
    /// llb.AsPersistentCacheDir(..))` does.
    pub fn seed(mut self, from: &State) -> MountSpec {
        if let SpecKind::Cache { seed, .. } = &mut self.kind {
            *seed = Some(Box::new(from.clone()));
        }
        self
    }

    /// For a cache mount: how concurrent builds share it.
    pub fn sharing(mut self, mode: CacheSharing) -> MountSpec {
        if let SpecKind::Cache { sharing, .. } = &mut self.kind {
            *sharing = mode;
        }
        self
    }

    /// For a tmpfs mount: size limit in bytes.
    pub fn size(mut self, bytes: u64) -> MountSpec {
        if let SpecKind::Tmpfs { size } = &mut self.kind {
            *size = Some(bytes);
        }
        self
    }

    /// For a secret mount: owner and mode of the file (`llb.SecretFileOpt(uid, gid, mode)`).
    pub fn owner_mode(mut self, uid: u32, gid: u32, mode: u32) -> MountSpec {
        if let SpecKind::Secret(s) = &mut self.kind {
            (s.uid, s.gid, s.mode) = (uid, gid, mode);
        }
        self
    }

    /// For a secret mount: a missing secret is not an error (`llb.SecretOptional`); the step runs
    /// without the file.
    pub fn optional(mut self) -> MountSpec {
        if let SpecKind::Secret(s) = &mut self.kind {
            s.optional = true;
        }
        self
    }
}

/// A `run` step being described; finish it with [`Run::root`] or [`Run::exec`].
#[derive(Clone, Debug)]
#[must_use = "a run step does nothing until its root() or exec() is used"]
pub struct Run {
    base: State,
    args: Vec<String>,
    mounts: Vec<MountSpec>,
    hostname: String,
    extra_hosts: Vec<HostIp>,
    secret_env: Vec<SecretEnv>,
    valid_exit_codes: Vec<i32>,
    metadata: OpMetadata,
}

impl State {
    /// Runs `args` (argv, no shell) on this state's filesystem with its env, directory, user and
    /// network.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Run {
            base: self.clone(),
            args: args.into_iter().map(Into::into).collect(),
            mounts: Vec::new(),
            hostname: String::new(),
            extra_hosts: Vec::new(),
            secret_env: Vec::new(),
            valid_exit_codes: Vec::new(),
            metadata: OpMetadata::default(),
        }
    }

    /// Runs `script` with `/bin/sh -c`.
    pub fn sh(&self, script: &str) -> Run {
        self.run(["/bin/sh", "-c", script])
    }
}

impl Run {
    /// Sets an environment variable for this step (and states derived from its outputs).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Run {
        self.base = self.base.env(key, value);
        self
    }

    /// Sets the working directory (relative paths join the current one).
    pub fn cwd(mut self, dir: &str) -> Run {
        self.base = self.base.dir(dir);
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: &str) -> Run {
        self.base = self.base.user(user);
        self
    }

    /// Sets the network mode.
    pub fn network(mut self, network: NetMode) -> Run {
        self.base = self.base.network(network);
        self
    }

    /// Sets the hostname.
    pub fn hostname(mut self, hostname: &str) -> Run {
        self.hostname = hostname.into();
        self
    }

    /// Adds an `/etc/hosts` entry.
    pub fn add_host(mut self, host: &str, ip: &str) -> Run {
        self.extra_hosts.push(HostIp {
            host: host.into(),
            ip: ip.into(),
        });
        self
    }

    /// Exposes the secret `id` as the environment variable `name` of this step only
    /// (`llb.AddSecretEnv`); when `optional` and the client has no such secret, `name` is set
    /// to the empty string, as in BuildKit. The value is not part of the step's cache key.
    pub fn secret_env(mut self, id: &str, name: &str, optional: bool) -> Run {
        self.secret_env.push(SecretEnv {
            id: id.into(),
            name: name.into(),
            optional,
        });
        self
    }

    /// Exit codes that count as success (default: only 0).
    pub fn valid_exit_codes(mut self, codes: &[i32]) -> Run {
        self.valid_exit_codes = codes.to_vec();
        self
    }

    /// Adds a mount.
    pub fn mount(mut self, mount: MountSpec) -> Run {
        self.mounts.push(mount);
        self
    }

    /// Names the step for progress output (`llb.customname`).
    pub fn custom_name(mut self, name: &str) -> Run {
        self.metadata
            .description
            .insert(attr::DESCRIPTION_CUSTOM_NAME.into(), name.into());
        self
    }

    /// Re-run the step even when it is cached.
    pub fn ignore_cache(mut self) -> Run {
        self.metadata.ignore_cache = true;
        self
    }

    /// The filesystem after the step.
    pub fn root(self) -> State {
        self.exec().root()
    }

    /// The finished step, whose root and writable mounts are outputs.
    pub fn exec(self) -> ExecState {
        let base = self.base;
        let mut inputs: Vec<Output> = Vec::new();
        let mut add_input = |o: &Option<Output>| -> Option<usize> {
            let o = o.as_ref()?;
            Some(match inputs.iter().position(|x| x.same(o)) {
                Some(i) => i,
                None => {
                    inputs.push(o.clone());
                    inputs.len() - 1
                }
            })
        };
        let mut outputs = Vec::new();
        let mut mounts = vec![Mount {
            dest: "/".into(),
            kind: MountKind::Bind {
                input: add_input(&base.output),
                selector: String::new(),
                content_cache: ContentCache::Default,
            },
            readonly: false,
            output: Some(0),
        }];
        outputs.push(("/".to_string(), 0usize, base.clone()));
        for m in self.mounts {
            let dest = join_path(&base.dir, &m.dest);
            let (kind, output, state) = match m.kind {
                SpecKind::Bind { from, selector } => {
                    let output = (!m.readonly).then_some(outputs.len());
                    let kind = MountKind::Bind {
                        input: add_input(&from.output),
                        selector,
                        content_cache: ContentCache::Default,
                    };
                    (kind, output, Some(*from))
                }
                SpecKind::Cache {
                    id,
                    sharing,
                    seed,
                    selector,
                } => (
                    MountKind::Cache {
                        id,
                        sharing,
                        input: seed.and_then(|s| add_input(&s.output)),
                        selector,
                    },
                    None,
                    None,
                ),
                SpecKind::Tmpfs { size } => (MountKind::Tmpfs { size }, None, None),
                SpecKind::Secret(s) => (MountKind::Secret(s), None, None),
            };
            if let (Some(o), Some(st)) = (output, state) {
                outputs.push((dest.clone(), o, st));
            }
            mounts.push(Mount {
                dest,
                kind,
                readonly: m.readonly,
                output,
            });
        }
        let mut env: Vec<String> = base.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if base.get_env("PATH").is_none() {
            env.push(format!("PATH={}", attr::DEFAULT_PATH_ENV));
        }
        let op = ExecOp {
            meta: ExecMeta {
                args: self.args,
                env,
                cwd: base.dir.clone(),
                user: base.user.clone(),
                hostname: self.hostname,
                extra_hosts: self.extra_hosts,
                valid_exit_codes: self.valid_exit_codes,
                ..Default::default()
            },
            mounts,
            network: base.network,
            secret_env: self.secret_env,
        };
        let node = Arc::new(Node {
            op: NodeOp::Typed(Box::new(Op::Exec(op))),
            inputs,
            platform: Some(base.platform.clone()),
            metadata: self.metadata,
        });
        ExecState { node, outputs }
    }
}

/// A finished `run` step.
#[derive(Clone, Debug)]
pub struct ExecState {
    node: Arc<Node>,
    /// (mount point, output index, state whose defaults the output inherits)
    outputs: Vec<(String, usize, State)>,
}

impl ExecState {
    /// The root filesystem after the step; keeps the step's env, directory and user.
    pub fn root(&self) -> State {
        self.output_state(0)
    }

    /// The content of the writable bind mount at `dest` after the step.
    pub fn mount_output(&self, dest: &str) -> Option<State> {
        let root_dir = &self.outputs[0].2.dir;
        let dest = join_path(root_dir, dest);
        self.outputs
            .iter()
            .position(|(d, _, _)| *d == dest)
            .map(|i| self.output_state(i))
    }

    fn output_state(&self, i: usize) -> State {
        let (_, index, st) = &self.outputs[i];
        State {
            output: Some(Output {
                node: self.node.clone(),
                index: *index,
            }),
            ..st.clone()
        }
    }
}
