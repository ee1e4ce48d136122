//! The only place that touches the protobuf types: LLB wire structs to oxkit's typed ops (with
//! validation of every field) and back (for the builder).

use crate::error::LlbError;
use crate::op::*;
use crate::pb;
use crate::source::Source;
use crate::Digest;

/// Context for errors about one op.
struct Ctx<'a> {
    digest: &'a Digest,
    kind: &'static str,
}

impl Ctx<'_> {
    fn unsupported(&self, feature: impl Into<String>) -> LlbError {
        LlbError::Unsupported {
            kind: self.kind,
            digest: self.digest.clone(),
            feature: feature.into(),
        }
    }
    fn invalid(&self, problem: impl Into<String>) -> LlbError {
        LlbError::InvalidOp {
            kind: self.kind,
            digest: self.digest.clone(),
            problem: problem.into(),
        }
    }
}

/// The kind name of a wire op (`empty` when no operation is set).
pub(crate) fn pb_kind(op: &pb::Op) -> &'static str {
    match &op.op {
        None => "empty",
        Some(pb::op::Op::Exec(_)) => "exec",
        Some(pb::op::Op::Source(_)) => "source",
        Some(pb::op::Op::File(_)) => "file",
        Some(pb::op::Op::Build(_)) => "build",
        Some(pb::op::Op::Merge(_)) => "merge",
        Some(pb::op::Op::Diff(_)) => "diff",
        Some(pb::op::Op::Passthrough(_)) => "passthrough",
    }
}

/// Converts a wire op (not the terminal one) into a typed op and its platform, checking every
/// field against what oxkit supports. `n_inputs` is `op.inputs.len()`.
pub(crate) fn op_from_pb(digest: &Digest, op: &pb::Op) -> Result<(Op, Option<Platform>), LlbError> {
    let kind = pb_kind(op);
    let cx = Ctx { digest, kind };
    if let Some(c) = &op.constraints {
        if !c.filter.is_empty() {
            return Err(cx.unsupported(format!(
                "worker constraints (constraints.filter {:?})",
                c.filter
            )));
        }
    }
    let platform = op.platform.as_ref().map(platform_from_pb);
    let n = op.inputs.len();
    let typed = match &op.op {
        Some(pb::op::Op::Source(s)) => {
            if n != 0 {
                return Err(cx.invalid(format!("a source op takes no inputs, this one has {n}")));
            }
            let source =
                Source::parse(&s.identifier, &s.attrs).map_err(|source| LlbError::Source {
                    digest: digest.clone(),
                    source,
                })?;
            Op::Source(SourceOp {
                source,
                identifier: s.identifier.clone(),
                attrs: s.attrs.clone(),
            })
        }
        Some(pb::op::Op::Exec(e)) => Op::Exec(exec_from_pb(&cx, e, n)?),
        Some(pb::op::Op::File(f)) => Op::File(file_from_pb(&cx, f, n)?),
        Some(pb::op::Op::Merge(m)) => {
            if m.inputs.is_empty() {
                return Err(cx.invalid("a merge op needs at least one input"));
            }
            let inputs = m
                .inputs
                .iter()
                .map(|i| input_index(&cx, "merge input", i.input, n))
                .collect::<Result<_, _>>()?;
            Op::Merge(MergeOp { inputs })
        }
        Some(_) | None => {
            return Err(LlbError::UnsupportedOp {
                digest: digest.clone(),
                kind,
            })
        }
    };
    Ok((typed, platform))
}

fn input_index(cx: &Ctx<'_>, what: &str, i: i64, n: usize) -> Result<usize, LlbError> {
    usize::try_from(i).ok().filter(|&i| i < n).ok_or_else(|| {
        cx.invalid(format!(
            "{what} refers to input {i}, but the op has {n} input(s)"
        ))
    })
}

/// -1 is "none"; other values must be a valid input index.
fn optional_input(cx: &Ctx<'_>, what: &str, i: i64, n: usize) -> Result<Option<usize>, LlbError> {
    if i == -1 {
        Ok(None)
    } else {
        input_index(cx, what, i, n).map(Some)
    }
}

fn optional_output(cx: &Ctx<'_>, what: &str, o: i64) -> Result<Option<usize>, LlbError> {
    match o {
        -1 => Ok(None),
        o if o >= 0 => Ok(Some(o as usize)),
        o => Err(cx.invalid(format!("{what} has invalid output index {o}"))),
    }
}

/// Output indices must be exactly 0..count, each once.
fn check_outputs(cx: &Ctx<'_>, outputs: impl Iterator<Item = usize>) -> Result<(), LlbError> {
    let mut seen: Vec<usize> = outputs.collect();
    seen.sort_unstable();
    for (want, got) in seen.iter().enumerate() {
        if *got != want {
            return Err(cx.invalid(format!(
                "output indices must be 0..{} without gaps or repeats, found {seen:?}",
                seen.len()
            )));
        }
    }
    Ok(())
}

fn platform_from_pb(p: &pb::Platform) -> Platform {
    Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
        os_version: p.os_version.clone(),
        os_features: p.os_features.clone(),
    }
}

fn exec_from_pb(cx: &Ctx<'_>, e: &pb::ExecOp, n: usize) -> Result<ExecOp, LlbError> {
    let meta = e
        .meta
        .as_ref()
        .ok_or_else(|| cx.invalid("the exec op has no meta (args, env, cwd)"))?;
    if meta.args.is_empty() {
        return Err(cx.invalid("the exec op has no args (nothing to run)"));
    }
    if !meta.cgroup_parent.is_empty() {
        return Err(cx.unsupported(format!("meta.cgroupParent ('{}')", meta.cgroup_parent)));
    }
    match pb::SecurityMode::try_from(e.security) {
        Ok(pb::SecurityMode::Sandbox) => {}
        Ok(pb::SecurityMode::Insecure) => {
            return Err(cx.unsupported("security mode INSECURE (privileged run)"))
        }
        Err(_) => return Err(cx.invalid(format!("security has unknown value {}", e.security))),
    }
    if !e.cdi_devices.is_empty() {
        let names: Vec<&str> = e.cdi_devices.iter().map(|d| d.name.as_str()).collect();
        return Err(cx.unsupported(format!("CDI devices (cdiDevices {names:?})")));
    }
    let network = match pb::NetMode::try_from(e.network) {
        Ok(pb::NetMode::Unset) => NetMode::Sandbox,
        Ok(pb::NetMode::Host) => NetMode::Host,
        Ok(pb::NetMode::None) => NetMode::None,
        Err(_) => return Err(cx.invalid(format!("network has unknown value {}", e.network))),
    };
    let mut mounts = Vec::with_capacity(e.mounts.len());
    for m in &e.mounts {
        mounts.push(mount_from_pb(cx, m, n)?);
    }
    let roots = mounts.iter().filter(|m| m.dest == "/").count();
    if roots != 1 {
        return Err(cx.invalid(format!(
            "an exec op needs exactly one root mount (dest \"/\"), this one has {roots}"
        )));
    }
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.dest == m.dest) {
            return Err(cx.invalid(format!("two mounts at {}", m.dest)));
        }
    }
    if let Some(root) = mounts.iter().find(|m| m.dest == "/") {
        if !matches!(root.kind, MountKind::Bind { .. }) {
            return Err(cx.unsupported("a root mount that is not a bind mount"));
        }
    }
    check_outputs(cx, mounts.iter().filter_map(|m| m.output))?;
    Ok(ExecOp {
        meta: ExecMeta {
            args: meta.args.clone(),
            env: meta.env.clone(),
            cwd: meta.cwd.clone(),
            user: meta.user.clone(),
            proxy_env: meta.proxy_env.as_ref().map(|p| ProxyEnv {
                http_proxy: p.http_proxy.clone(),
                https_proxy: p.https_proxy.clone(),
                ftp_proxy: p.ftp_proxy.clone(),
                no_proxy: p.no_proxy.clone(),
                all_proxy: p.all_proxy.clone(),
            }),
            extra_hosts: meta
                .extra_hosts
                .iter()
                .map(|h| HostIp {
                    host: h.host.clone(),
                    ip: h.ip.clone(),
                })
                .collect(),
            hostname: meta.hostname.clone(),
            ulimits: meta
                .ulimit
                .iter()
                .map(|u| Ulimit {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            remove_mount_stubs_recursive: meta.remove_mount_stubs_recursive,
            valid_exit_codes: meta.valid_exit_codes.clone(),
        },
        mounts,
        network,
        secret_env: e
            .secretenv
            .iter()
            .map(|s| SecretEnv {
                id: s.id.clone(),
                name: s.name.clone(),
                optional: s.optional,
            })
            .collect(),
    })
}

fn mount_from_pb(cx: &Ctx<'_>, m: &pb::Mount, n: usize) -> Result<Mount, LlbError> {
    let at = format!("mount at '{}'", m.dest);
    if !m.dest.starts_with('/') {
        return Err(cx.invalid(format!("{at}: the destination must be an absolute path")));
    }
    if !m.result_id.is_empty() {
        return Err(cx.unsupported(format!("{at}: resultID (mounting a gateway result)")));
    }
    let ty = pb::MountType::try_from(m.mount_type).map_err(|_| {
        cx.invalid(format!(
            "{at}: mountType has unknown value {}",
            m.mount_type
        ))
    })?;
    let content_cache = match pb::MountContentCache::try_from(m.content_cache) {
        Ok(pb::MountContentCache::Default) => ContentCache::Default,
        Ok(pb::MountContentCache::On) => ContentCache::On,
        Ok(pb::MountContentCache::Off) => ContentCache::Off,
        Err(_) => {
            return Err(cx.invalid(format!(
                "{at}: contentCache has unknown value {}",
                m.content_cache
            )))
        }
    };
    let stray = |name: &str, set: bool| -> Result<(), LlbError> {
        if set {
            Err(cx.invalid(format!(
                "{at}: a {} mount cannot carry {name}",
                ty.as_str_name()
            )))
        } else {
            Ok(())
        }
    };
    stray(
        "TmpfsOpt",
        m.tmpfs_opt.is_some() && ty != pb::MountType::Tmpfs,
    )?;
    stray(
        "cacheOpt",
        m.cache_opt.is_some() && ty != pb::MountType::Cache,
    )?;
    stray(
        "secretOpt",
        m.secret_opt.is_some() && ty != pb::MountType::Secret,
    )?;
    stray("SSHOpt", m.ssh_opt.is_some() && ty != pb::MountType::Ssh)?;
    if ty != pb::MountType::Bind {
        stray("contentCache", content_cache != ContentCache::Default)?;
    }
    let (kind, output) = match ty {
        pb::MountType::Bind => (
            MountKind::Bind {
                input: optional_input(cx, &at, m.input, n)?,
                selector: m.selector.clone(),
                content_cache,
            },
            optional_output(cx, &at, m.output)?,
        ),
        pb::MountType::Cache => {
            let opt = m.cache_opt.clone().unwrap_or_default();
            let sharing = match pb::CacheSharingOpt::try_from(opt.sharing) {
                Ok(pb::CacheSharingOpt::Shared) => CacheSharing::Shared,
                Ok(pb::CacheSharingOpt::Private) => CacheSharing::Private,
                Ok(pb::CacheSharingOpt::Locked) => CacheSharing::Locked,
                Err(_) => {
                    return Err(cx.invalid(format!(
                        "{at}: cache sharing has unknown value {}",
                        opt.sharing
                    )))
                }
            };
            if optional_output(cx, &at, m.output)?.is_some() {
                return Err(cx.unsupported(format!("{at}: an output from a cache mount")));
            }
            // BuildKit names a cache without an id after its mount point.
            let id = if opt.id.is_empty() {
                m.dest.clone()
            } else {
                opt.id
            };
            (
                MountKind::Cache {
                    id,
                    sharing,
                    input: optional_input(cx, &at, m.input, n)?,
                    selector: m.selector.clone(),
                },
                None,
            )
        }
        pb::MountType::Tmpfs => {
            if m.input != -1 {
                return Err(cx.invalid(format!(
                    "{at}: a tmpfs mount takes no input (input must be -1)"
                )));
            }
            if optional_output(cx, &at, m.output)?.is_some() {
                return Err(cx.unsupported(format!("{at}: an output from a tmpfs mount")));
            }
            let size = m.tmpfs_opt.as_ref().map_or(0, |t| t.size);
            if size < 0 {
                return Err(cx.invalid(format!("{at}: negative tmpfs size {size}")));
            }
            (
                MountKind::Tmpfs {
                    size: (size > 0).then_some(size as u64),
                },
                None,
            )
        }
        pb::MountType::Secret => {
            if m.input != -1 {
                return Err(cx.invalid(format!(
                    "{at}: a secret mount takes no input (input must be -1)"
                )));
            }
            let s = m.secret_opt.clone().unwrap_or_default();
            if s.id.is_empty() {
                return Err(cx.invalid(format!("{at}: a secret mount needs secretOpt.ID")));
            }
            // BuildKit's client leaves `output` at 0 for secret mounts and its executor never
            // reads it: a secret mount has no output, whatever the field says.
            (
                MountKind::Secret(SecretMount {
                    id: s.id,
                    uid: s.uid,
                    gid: s.gid,
                    mode: s.mode,
                    optional: s.optional,
                }),
                None,
            )
        }
        pb::MountType::Ssh => return Err(cx.unsupported("mount type SSH")),
    };
    Ok(Mount {
        dest: m.dest.clone(),
        kind,
        readonly: m.readonly,
        output,
    })
}

fn file_from_pb(cx: &Ctx<'_>, f: &pb::FileOp, n: usize) -> Result<FileOp, LlbError> {
    if f.actions.is_empty() {
        return Err(cx.invalid("a file op needs at least one action"));
    }
    let mut actions = Vec::with_capacity(f.actions.len());
    for (i, a) in f.actions.iter().enumerate() {
        let what = format!("action #{i}");
        let input = file_input(cx, &what, a.input, n, i)?;
        let secondary_input = file_input(
            cx,
            &format!("{what} (secondaryInput)"),
            a.secondary_input,
            n,
            i,
        )?;
        let output = optional_output(cx, &what, a.output)?;
        let kind = match &a.action {
            None => return Err(cx.invalid(format!("{what} has no action"))),
            Some(pb::file_action::Action::Copy(c)) => {
                if !c.mode_str.is_empty() {
                    return Err(cx.unsupported(format!(
                        "{what}: copy with modeStr '{}' (symbolic chmod)",
                        c.mode_str
                    )));
                }
                if !c.required_paths.is_empty() {
                    return Err(cx.unsupported(format!("{what}: copy with required_paths")));
                }
                let mode = match c.mode {
                    -1 => None,
                    m if m >= 0 => Some(m as u32),
                    m => return Err(cx.invalid(format!("{what}: invalid copy mode {m}"))),
                };
                FileActionKind::Copy(Copy {
                    src: c.src.clone(),
                    dest: c.dest.clone(),
                    owner: chown_from_pb(cx, &what, c.owner.as_ref(), n, i)?,
                    mode,
                    follow_symlink: c.follow_symlink,
                    dir_copy_contents: c.dir_copy_contents,
                    create_dest_path: c.create_dest_path,
                    allow_wildcard: c.allow_wildcard,
                    allow_empty_wildcard: c.allow_empty_wildcard,
                    timestamp: timestamp(c.timestamp),
                    include_patterns: c.include_patterns.clone(),
                    exclude_patterns: c.exclude_patterns.clone(),
                    always_replace_existing_dest_paths: c.always_replace_existing_dest_paths,
                    attempt_unpack: c.attempt_unpack_docker_compatibility,
                })
            }
            Some(pb::file_action::Action::Mkfile(m)) => FileActionKind::Mkfile(Mkfile {
                path: m.path.clone(),
                mode: file_mode(cx, &what, m.mode)?,
                data: m.data.clone(),
                owner: chown_from_pb(cx, &what, m.owner.as_ref(), n, i)?,
                timestamp: timestamp(m.timestamp),
            }),
            Some(pb::file_action::Action::Mkdir(m)) => FileActionKind::Mkdir(Mkdir {
                path: m.path.clone(),
                mode: file_mode(cx, &what, m.mode)?,
                make_parents: m.make_parents,
                owner: chown_from_pb(cx, &what, m.owner.as_ref(), n, i)?,
                timestamp: timestamp(m.timestamp),
            }),
            Some(pb::file_action::Action::Rm(r)) => FileActionKind::Rm(Rm {
                path: r.path.clone(),
                allow_not_found: r.allow_not_found,
                allow_wildcard: r.allow_wildcard,
            }),
            Some(pb::file_action::Action::Symlink(s)) => FileActionKind::Symlink(Symlink {
                oldpath: s.oldpath.clone(),
                newpath: s.newpath.clone(),
                owner: chown_from_pb(cx, &what, s.owner.as_ref(), n, i)?,
                timestamp: timestamp(s.timestamp),
            }),
        };
        let path = match &kind {
            FileActionKind::Copy(c) => &c.dest,
            FileActionKind::Mkfile(m) => &m.path,
            FileActionKind::Mkdir(m) => &m.path,
            FileActionKind::Rm(r) => &r.path,
            FileActionKind::Symlink(s) => &s.newpath,
        };
        if !path.starts_with('/') {
            return Err(cx.invalid(format!("{what}: path '{path}' must be absolute")));
        }
        if !matches!(kind, FileActionKind::Copy(_)) && secondary_input != FileInput::Scratch {
            return Err(cx.invalid(format!(
                "{what}: only copy uses secondaryInput, it must be -1"
            )));
        }
        actions.push(FileAction {
            input,
            secondary_input,
            output,
            kind,
        });
    }
    check_outputs(cx, actions.iter().filter_map(|a| a.output))?;
    Ok(FileOp { actions })
}

/// BuildKit's numbering: an op input index, or `n_inputs + k` for the result of action `k`
/// (which must come before action `current`), or -1 for scratch.
fn file_input(
    cx: &Ctx<'_>,
    what: &str,
    i: i64,
    n: usize,
    current: usize,
) -> Result<FileInput, LlbError> {
    match i {
        -1 => Ok(FileInput::Scratch),
        i if i >= 0 && (i as usize) < n => Ok(FileInput::Input(i as usize)),
        i if i >= 0 && (i as usize) < n + current => Ok(FileInput::Action(i as usize - n)),
        i => Err(cx.invalid(format!(
            "{what} refers to index {i}, which is neither one of the op's {n} input(s) nor an earlier action"
        ))),
    }
}

fn file_mode(cx: &Ctx<'_>, what: &str, mode: i32) -> Result<u32, LlbError> {
    u32::try_from(mode).map_err(|_| cx.invalid(format!("{what}: invalid mode {mode}")))
}

fn timestamp(t: i64) -> Option<i64> {
    (t != -1).then_some(t)
}

fn chown_from_pb(
    cx: &Ctx<'_>,
    what: &str,
    c: Option<&pb::ChownOpt>,
    n: usize,
    current: usize,
) -> Result<Option<Chown>, LlbError> {
    let Some(c) = c else { return Ok(None) };
    let user = |u: Option<&pb::UserOpt>| -> Result<Option<UserRef>, LlbError> {
        match u.and_then(|u| u.user.as_ref()) {
            None => Ok(None),
            Some(pb::user_opt::User::ById(id)) => Ok(Some(UserRef::Id(*id))),
            Some(pb::user_opt::User::ByName(named)) => Ok(Some(UserRef::Name {
                name: named.name.clone(),
                input: file_input(
                    cx,
                    &format!("{what} (owner '{}')", named.name),
                    named.input,
                    n,
                    current,
                )?,
            })),
        }
    };
    Ok(Some(Chown {
        user: user(c.user.as_ref())?,
        group: user(c.group.as_ref())?,
    }))
}

/// Converts wire metadata into typed metadata; fields oxkit does not support are errors.
pub(crate) fn metadata_from_pb(key: &str, m: &pb::OpMetadata) -> Result<OpMetadata, LlbError> {
    if m.linux_resources.is_some() {
        return Err(LlbError::Metadata {
            digest: key.to_string(),
            problem: "linux_resources (per-step resource limits) are not supported by oxkit".into(),
        });
    }
    Ok(OpMetadata {
        ignore_cache: m.ignore_cache,
        description: m.description.clone(),
        export_cache: m.export_cache.as_ref().map(|e| e.value),
        caps: m.caps.clone(),
        progress_group: m.progress_group.as_ref().map(|p| ProgressGroup {
            id: p.id.clone(),
            name: p.name.clone(),
            weak: p.weak,
        }),
    })
}

// ---- typed -> wire, for the builder ----

/// Wire form of a typed op's operation; `n_inputs` is the number of inputs the op will carry.
pub(crate) fn op_kind_to_pb(op: &Op, n_inputs: usize) -> pb::op::Op {
    match op {
        Op::Source(s) => source_to_pb(&s.identifier, &s.attrs),
        Op::Exec(e) => pb::op::Op::Exec(exec_to_pb(e)),
        Op::File(f) => pb::op::Op::File(pb::FileOp {
            actions: f
                .actions
                .iter()
                .map(|a| file_action_to_pb(a, n_inputs))
                .collect(),
        }),
        Op::Merge(m) => pb::op::Op::Merge(pb::MergeOp {
            inputs: m
                .inputs
                .iter()
                .map(|&i| pb::MergeInput { input: i as i64 })
                .collect(),
        }),
    }
}

/// Wire form of a source operation.
pub(crate) fn source_to_pb(
    identifier: &str,
    attrs: &std::collections::BTreeMap<String, String>,
) -> pb::op::Op {
    pb::op::Op::Source(pb::SourceOp {
        identifier: identifier.to_string(),
        attrs: attrs.clone(),
    })
}

/// A whole wire op; `inputs` are already resolved to digests by the caller.
pub(crate) fn wrap_op(
    kind: pb::op::Op,
    inputs: Vec<pb::Input>,
    platform: Option<&Platform>,
) -> pb::Op {
    pb::Op {
        inputs,
        op: Some(kind),
        platform: platform.map(|p| pb::Platform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            os_version: p.os_version.clone(),
            os_features: p.os_features.clone(),
        }),
        // BuildKit's client always writes an empty constraints message.
        constraints: Some(pb::WorkerConstraints::default()),
    }
}

fn exec_to_pb(e: &ExecOp) -> pb::ExecOp {
    let m = &e.meta;
    pb::ExecOp {
        meta: Some(pb::Meta {
            args: m.args.clone(),
            env: m.env.clone(),
            cwd: m.cwd.clone(),
            user: m.user.clone(),
            proxy_env: m.proxy_env.as_ref().map(|p| pb::ProxyEnv {
                http_proxy: p.http_proxy.clone(),
                https_proxy: p.https_proxy.clone(),
                ftp_proxy: p.ftp_proxy.clone(),
                no_proxy: p.no_proxy.clone(),
                all_proxy: p.all_proxy.clone(),
            }),
            extra_hosts: m
                .extra_hosts
                .iter()
                .map(|h| pb::HostIp {
                    host: h.host.clone(),
                    ip: h.ip.clone(),
                })
                .collect(),
            hostname: m.hostname.clone(),
            ulimit: m
                .ulimits
                .iter()
                .map(|u| pb::Ulimit {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            cgroup_parent: String::new(),
            remove_mount_stubs_recursive: m.remove_mount_stubs_recursive,
            valid_exit_codes: m.valid_exit_codes.clone(),
        }),
        mounts: e.mounts.iter().map(mount_to_pb).collect(),
        network: match e.network {
            NetMode::Sandbox => pb::NetMode::Unset,
            NetMode::Host => pb::NetMode::Host,
            NetMode::None => pb::NetMode::None,
        } as i32,
        security: pb::SecurityMode::Sandbox as i32,
        secretenv: e
            .secret_env
            .iter()
            .map(|s| pb::SecretEnv {
                id: s.id.clone(),
                name: s.name.clone(),
                optional: s.optional,
            })
            .collect(),
        cdi_devices: vec![],
    }
}

fn idx(i: Option<usize>) -> i64 {
    i.map_or(-1, |i| i as i64)
}

fn mount_to_pb(m: &Mount) -> pb::Mount {
    let mut p = pb::Mount {
        dest: m.dest.clone(),
        readonly: m.readonly,
        output: idx(m.output),
        input: -1,
        ..Default::default()
    };
    match &m.kind {
        MountKind::Bind {
            input,
            selector,
            content_cache,
        } => {
            p.mount_type = pb::MountType::Bind as i32;
            p.input = idx(*input);
            p.selector = selector.clone();
            p.content_cache = match content_cache {
                ContentCache::Default => pb::MountContentCache::Default,
                ContentCache::On => pb::MountContentCache::On,
                ContentCache::Off => pb::MountContentCache::Off,
            } as i32;
        }
        MountKind::Cache {
            id,
            sharing,
            input,
            selector,
        } => {
            p.mount_type = pb::MountType::Cache as i32;
            p.input = idx(*input);
            p.selector = selector.clone();
            p.cache_opt = Some(pb::CacheOpt {
                id: id.clone(),
                sharing: match sharing {
                    CacheSharing::Shared => pb::CacheSharingOpt::Shared,
                    CacheSharing::Private => pb::CacheSharingOpt::Private,
                    CacheSharing::Locked => pb::CacheSharingOpt::Locked,
                } as i32,
            });
        }
        MountKind::Tmpfs { size } => {
            p.mount_type = pb::MountType::Tmpfs as i32;
            p.tmpfs_opt = Some(pb::TmpfsOpt {
                size: size.map_or(0, |s| s as i64),
            });
        }
        MountKind::Secret(s) => {
            p.mount_type = pb::MountType::Secret as i32;
            // As BuildKit's client writes it (see mount_from_pb).
            p.output = 0;
            p.secret_opt = Some(pb::SecretOpt {
                id: s.id.clone(),
                uid: s.uid,
                gid: s.gid,
                mode: s.mode,
                optional: s.optional,
            });
        }
    }
    p
}

fn file_input_to_pb(i: FileInput, n: usize) -> i64 {
    match i {
        FileInput::Scratch => -1,
        FileInput::Input(i) => i as i64,
        FileInput::Action(k) => (n + k) as i64,
    }
}

fn chown_to_pb(c: &Option<Chown>, n: usize) -> Option<pb::ChownOpt> {
    let user = |u: &Option<UserRef>| {
        u.as_ref().map(|u| pb::UserOpt {
            user: Some(match u {
                UserRef::Id(id) => pb::user_opt::User::ById(*id),
                UserRef::Name { name, input } => pb::user_opt::User::ByName(pb::NamedUserOpt {
                    name: name.clone(),
                    input: file_input_to_pb(*input, n),
                }),
            }),
        })
    };
    c.as_ref().map(|c| pb::ChownOpt {
        user: user(&c.user),
        group: user(&c.group),
    })
}

fn file_action_to_pb(a: &FileAction, n: usize) -> pb::FileAction {
    use pb::file_action::Action;
    let action = match &a.kind {
        FileActionKind::Copy(c) => Action::Copy(pb::FileActionCopy {
            src: c.src.clone(),
            dest: c.dest.clone(),
            owner: chown_to_pb(&c.owner, n),
            mode: c.mode.map_or(-1, |m| m as i32),
            follow_symlink: c.follow_symlink,
            dir_copy_contents: c.dir_copy_contents,
            attempt_unpack_docker_compatibility: c.attempt_unpack,
            create_dest_path: c.create_dest_path,
            allow_wildcard: c.allow_wildcard,
            allow_empty_wildcard: c.allow_empty_wildcard,
            timestamp: c.timestamp.unwrap_or(-1),
            include_patterns: c.include_patterns.clone(),
            exclude_patterns: c.exclude_patterns.clone(),
            always_replace_existing_dest_paths: c.always_replace_existing_dest_paths,
            mode_str: String::new(),
            required_paths: vec![],
        }),
        FileActionKind::Mkfile(m) => Action::Mkfile(pb::FileActionMkFile {
            path: m.path.clone(),
            mode: m.mode as i32,
            data: m.data.clone(),
            owner: chown_to_pb(&m.owner, n),
            timestamp: m.timestamp.unwrap_or(-1),
        }),
        FileActionKind::Mkdir(m) => Action::Mkdir(pb::FileActionMkDir {
            path: m.path.clone(),
            mode: m.mode as i32,
            make_parents: m.make_parents,
            owner: chown_to_pb(&m.owner, n),
            timestamp: m.timestamp.unwrap_or(-1),
        }),
        FileActionKind::Rm(r) => Action::Rm(pb::FileActionRm {
            path: r.path.clone(),
            allow_not_found: r.allow_not_found,
            allow_wildcard: r.allow_wildcard,
        }),
        FileActionKind::Symlink(s) => Action::Symlink(pb::FileActionSymlink {
            oldpath: s.oldpath.clone(),
            newpath: s.newpath.clone(),
            owner: chown_to_pb(&s.owner, n),
            timestamp: s.timestamp.unwrap_or(-1),
        }),
    };
    pb::FileAction {
        input: file_input_to_pb(a.input, n),
        secondary_input: file_input_to_pb(a.secondary_input, n),
        output: idx(a.output),
        action: Some(action),
    }
}

/// Wire form of typed metadata.
pub(crate) fn metadata_to_pb(m: &OpMetadata) -> pb::OpMetadata {
    pb::OpMetadata {
        ignore_cache: m.ignore_cache,
        description: m.description.clone(),
        export_cache: m.export_cache.map(|value| pb::ExportCache { value }),
        caps: m.caps.clone(),
        progress_group: m.progress_group.as_ref().map(|p| pb::ProgressGroup {
            id: p.id.clone(),
            name: p.name.clone(),
            weak: p.weak,
        }),
        linux_resources: None,
    }
}
