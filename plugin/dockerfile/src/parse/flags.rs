//! The `--flags` of `FROM`, `RUN`, `COPY`, `ADD` and `HEALTHCHECK`: each checked against the
//! flags its instruction accepts and typed (mounts, network and security modes, durations).

use crate::instruction::{Network, RunMount, Sharing};

use super::words;

/// A flag as written: `--name[=value]`, at byte `offset` of the file.
#[derive(Debug)]
pub(super) struct RawFlag {
    /// The name without `--`.
    pub(super) name: String,
    /// The value after `=`, as written.
    pub(super) value: Option<String>,
    /// Offset of the leading `--`.
    pub(super) offset: usize,
}

/// A flag error: the offset of the flag and the message.
pub(super) type FlagError = (usize, String);

/// Checks names and duplicates; `repeatable` flags may appear more than once.
fn check(
    keyword: &str,
    flags: &[RawFlag],
    accepted: &[&str],
    repeatable: &[&str],
) -> Result<(), FlagError> {
    for (i, f) in flags.iter().enumerate() {
        if !accepted.contains(&f.name.as_str()) {
            let list = accepted
                .iter()
                .map(|a| format!("--{a}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err((
                f.offset,
                format!("unknown flag: --{} ({keyword} accepts {list})", f.name),
            ));
        }
        if !repeatable.contains(&f.name.as_str()) && flags[..i].iter().any(|g| g.name == f.name) {
            return Err((f.offset, format!("duplicate flag: --{}", f.name)));
        }
    }
    Ok(())
}

fn value(f: &RawFlag) -> Result<String, FlagError> {
    match &f.value {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err((
            f.offset,
            format!("flag --{0} needs a value (--{0}=VALUE)", f.name),
        )),
    }
}

fn boolean(f: &RawFlag) -> Result<bool, FlagError> {
    match f.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err((
            f.offset,
            format!("flag --{} expects true or false, not {v:?}", f.name),
        )),
    }
}

/// `FROM --platform`.
pub(super) fn from(flags: &[RawFlag]) -> Result<Option<String>, FlagError> {
    check("FROM", flags, &["platform"], &[])?;
    flags.first().map(value).transpose()
}

/// `RUN`'s typed flags.
#[derive(Debug, Default)]
pub(super) struct RunFlags {
    pub(super) mounts: Vec<RunMount>,
    pub(super) network: Option<Network>,
    pub(super) security: Option<String>,
}

/// `RUN --mount --network --security`.
pub(super) fn run(flags: &[RawFlag]) -> Result<RunFlags, FlagError> {
    check("RUN", flags, &["mount", "network", "security"], &["mount"])?;
    let mut out = RunFlags::default();
    for f in flags {
        let v = value(f)?;
        match f.name.as_str() {
            "mount" => out.mounts.push(mount(&v).map_err(|m| (f.offset, m))?),
            "network" => {
                out.network = Some(match v.as_str() {
                    "default" => Network::Default,
                    "none" => Network::None,
                    "host" => Network::Host,
                    _ => {
                        return Err((
                            f.offset,
                            format!("unsupported network mode {v:?} (use default, none or host)"),
                        ))
                    }
                })
            }
            _ => {
                if !matches!(v.as_str(), "sandbox" | "insecure") {
                    return Err((
                        f.offset,
                        format!("unsupported security mode {v:?} (use sandbox or insecure)"),
                    ));
                }
                out.security = Some(v);
            }
        }
    }
    Ok(out)
}

/// `COPY`'s typed flags.
#[derive(Debug, Default)]
pub(super) struct CopyFlags {
    pub(super) from: Option<String>,
    pub(super) chown: Option<String>,
    pub(super) chmod: Option<String>,
    pub(super) link: bool,
    pub(super) excludes: Vec<String>,
    pub(super) parents: bool,
}

/// `COPY --from --chown --chmod --link --exclude --parents`.
pub(super) fn copy(flags: &[RawFlag]) -> Result<CopyFlags, FlagError> {
    check(
        "COPY",
        flags,
        &["from", "chown", "chmod", "link", "exclude", "parents"],
        &["exclude"],
    )?;
    let mut out = CopyFlags::default();
    for f in flags {
        match f.name.as_str() {
            "from" => out.from = Some(value(f)?),
            "chown" => out.chown = Some(value(f)?),
            "chmod" => out.chmod = Some(value(f)?),
            "link" => out.link = boolean(f)?,
            "parents" => out.parents = boolean(f)?,
            _ => out.excludes.push(value(f)?),
        }
    }
    Ok(out)
}

/// `ADD`'s typed flags.
#[derive(Debug, Default)]
pub(super) struct AddFlags {
    pub(super) chown: Option<String>,
    pub(super) chmod: Option<String>,
    pub(super) checksum: Option<String>,
    pub(super) keep_git_dir: bool,
    pub(super) link: bool,
    pub(super) excludes: Vec<String>,
}

/// `ADD --chown --chmod --checksum --keep-git-dir --link --exclude`.
pub(super) fn add(flags: &[RawFlag]) -> Result<AddFlags, FlagError> {
    check(
        "ADD",
        flags,
        &[
            "chown",
            "chmod",
            "checksum",
            "keep-git-dir",
            "link",
            "exclude",
        ],
        &["exclude"],
    )?;
    let mut out = AddFlags::default();
    for f in flags {
        match f.name.as_str() {
            "chown" => out.chown = Some(value(f)?),
            "chmod" => out.chmod = Some(value(f)?),
            "checksum" => out.checksum = Some(value(f)?),
            "keep-git-dir" => out.keep_git_dir = boolean(f)?,
            "link" => out.link = boolean(f)?,
            _ => out.excludes.push(value(f)?),
        }
    }
    Ok(out)
}

/// `HEALTHCHECK`'s typed flags (durations in nanoseconds).
#[derive(Debug, Default)]
pub(super) struct HealthcheckFlags {
    pub(super) interval: Option<u64>,
    pub(super) timeout: Option<u64>,
    pub(super) start_period: Option<u64>,
    pub(super) start_interval: Option<u64>,
    pub(super) retries: Option<u32>,
}

/// `HEALTHCHECK --interval --timeout --start-period --start-interval --retries`.
pub(super) fn healthcheck(flags: &[RawFlag]) -> Result<HealthcheckFlags, FlagError> {
    check(
        "HEALTHCHECK",
        flags,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        &[],
    )?;
    let mut out = HealthcheckFlags::default();
    for f in flags {
        let v = value(f)?;
        if f.name == "retries" {
            let n: i64 = v.parse().map_err(|_| {
                (
                    f.offset,
                    format!("flag --retries expects a whole number, not {v:?}"),
                )
            })?;
            let n = u32::try_from(n)
                .map_err(|_| (f.offset, format!("flag --retries cannot be {n}")))?;
            out.retries = Some(n);
            continue;
        }
        let d =
            words::go_duration(&v).map_err(|m| (f.offset, format!("flag --{}: {m}", f.name)))?;
        // BuildKit's parseOptInterval: 0 means "default", anything else at least 1ms.
        if d != 0 && d < 1_000_000 {
            return Err((
                f.offset,
                format!("flag --{} cannot be less than 1ms (got {v})", f.name),
            ));
        }
        let slot = match f.name.as_str() {
            "interval" => &mut out.interval,
            "timeout" => &mut out.timeout,
            "start-period" => &mut out.start_period,
            _ => &mut out.start_interval,
        };
        *slot = Some(d);
    }
    Ok(out)
}

const MOUNT_KEYS: &str =
    "type, target, source, from, rw, ro, id, sharing, mode, uid, gid, size, required, env";

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None => Ok(true),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(format!(
            "mount option {key} expects true or false, not {v:?}"
        )),
    }
}

/// One `--mount=type=…,target=…` value (BuildKit's `parseMount`).
pub(super) fn mount(spec: &str) -> Result<RunMount, String> {
    let fields = words::csv_fields(spec).map_err(|m| format!("invalid --mount: {m}"))?;
    let mut ty = "bind".to_string();
    let mut given: Vec<&'static str> = Vec::new();
    let (mut target, mut source, mut from, mut id, mut env) = (None, None, None, None, None);
    let (mut readonly, mut sharing, mut required) = (None, Sharing::Shared, false);
    let (mut mode, mut uid, mut gid, mut size) = (None, None, None, None);
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |val: Option<String>| {
            val.filter(|v| !v.is_empty())
                .ok_or_else(|| format!("mount option {key} needs a value ({key}=...)"))
        };
        let canonical = match key.as_str() {
            "type" => {
                let v = need(val)?;
                if !matches!(v.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(format!(
                        "unsupported mount type {v:?} (use bind, cache, tmpfs, secret or ssh)"
                    ));
                }
                ty = v;
                "type"
            }
            "target" | "dst" | "destination" => {
                target = Some(need(val)?);
                "target"
            }
            "source" | "src" => {
                source = Some(need(val)?);
                "source"
            }
            "from" => {
                from = Some(need(val)?);
                "from"
            }
            "id" => {
                id = Some(need(val)?);
                "id"
            }
            "env" => {
                env = Some(need(val)?);
                "env"
            }
            "rw" | "readwrite" => {
                readonly = Some(!parse_bool(&key, val.as_deref())?);
                "rw"
            }
            "ro" | "readonly" => {
                readonly = Some(parse_bool(&key, val.as_deref())?);
                "ro"
            }
            "required" => {
                required = parse_bool(&key, val.as_deref())?;
                "required"
            }
            "sharing" => {
                sharing = match need(val)?.as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    v => {
                        return Err(format!(
                            "unsupported sharing value {v:?} (use shared, private or locked)"
                        ))
                    }
                };
                "sharing"
            }
            "mode" => {
                let v = need(val)?;
                mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| format!("mount mode {v:?} is not an octal number"))?,
                );
                "mode"
            }
            "uid" | "gid" => {
                let v = need(val)?;
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("mount {key} {v:?} is not a number"))?;
                if key == "uid" {
                    uid = Some(n);
                    "uid"
                } else {
                    gid = Some(n);
                    "gid"
                }
            }
            "size" => {
                size = Some(words::ram_in_bytes(&need(val)?)?);
                "size"
            }
            _ => {
                return Err(format!(
                    "unexpected key {key:?} in --mount (accepts {MOUNT_KEYS})"
                ))
            }
        };
        given.push(canonical);
    }
    let allowed: &[&str] = match ty.as_str() {
        "bind" => &["type", "target", "source", "from", "rw", "ro"],
        "cache" => &[
            "type", "target", "id", "sharing", "from", "source", "rw", "ro", "mode", "uid", "gid",
        ],
        "tmpfs" => &["type", "target", "size"],
        "secret" => &[
            "type", "id", "target", "env", "required", "mode", "uid", "gid",
        ],
        _ => &["type", "id", "target", "required", "mode", "uid", "gid"],
    };
    if let Some(bad) = given.iter().find(|g| !allowed.contains(g)) {
        return Err(format!("mount option {bad} is not valid for type={ty}"));
    }
    let need_target =
        |t: Option<String>| t.ok_or_else(|| format!("mount type={ty} needs target=PATH"));
    Ok(match ty.as_str() {
        "bind" => RunMount::Bind {
            target: need_target(target)?,
            source,
            from,
            readwrite: readonly == Some(false),
        },
        "cache" => RunMount::Cache {
            target: need_target(target)?,
            id,
            sharing,
            from,
            source,
            readonly: readonly == Some(true),
            mode,
            uid,
            gid,
        },
        "tmpfs" => RunMount::Tmpfs {
            target: need_target(target)?,
            size,
        },
        "secret" => {
            if id.is_none() && target.is_none() && env.is_none() {
                return Err("mount type=secret needs id=, target= or env=".into());
            }
            RunMount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            }
        }
        _ => RunMount::Ssh {
            id,
            target,
            required,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        assert_eq!(
            mount("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1").unwrap(),
            RunMount::Cache {
                target: "/root/.cache".into(),
                id: None,
                sharing: Sharing::Locked,
                from: None,
                source: None,
                readonly: false,
                mode: Some(0o700),
                uid: Some(1),
                gid: None,
            }
        );
        assert_eq!(
            mount("target=/src,from=build,src=/out,rw").unwrap(),
            RunMount::Bind {
                target: "/src".into(),
                source: Some("/out".into()),
                from: Some("build".into()),
                readwrite: true,
            }
        );
        assert_eq!(
            mount("type=tmpfs,dst=/tmp,size=64m").unwrap(),
            RunMount::Tmpfs {
                target: "/tmp".into(),
                size: Some(64 << 20),
            }
        );
        assert_eq!(
            mount("type=secret,id=tok,env=TOKEN,required=false").unwrap(),
            RunMount::Secret {
                id: Some("tok".into()),
                target: None,
                env: Some("TOKEN".into()),
                required: false,
                mode: None,
                uid: None,
                gid: None,
            }
        );
        assert_eq!(
            mount("type=ssh,required").unwrap(),
            RunMount::Ssh {
                id: None,
                target: None,
                required: true,
            }
        );
        assert_eq!(
            mount("type=cache").unwrap_err(),
            "mount type=cache needs target=PATH"
        );
        assert_eq!(
            mount("type=bind,target=/a,size=1").unwrap_err(),
            "mount option size is not valid for type=bind"
        );
        assert_eq!(
            mount("type=cache,target=/a,mode=9").unwrap_err(),
            "mount mode \"9\" is not an octal number"
        );
        assert_eq!(
            mount("type=secret").unwrap_err(),
            "mount type=secret needs id=, target= or env="
        );
        assert!(mount("type=cache,target=/a,sharing=x").is_err());
        assert!(mount("type=tmpfs,target=/a,size=lots").is_err());
        assert!(mount("type=bind,target=/a,ro=maybe").is_err());
        assert!(mount("bogus=1,target=/a").is_err());
    }
}
