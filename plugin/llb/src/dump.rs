//! The JSON that `buildctl debug dump-llb` prints, for `oxctl debug dump-llb`: one object per op,
//! `{"Op":…,"Digest":"sha256:…","OpMetadata":…}`, one per line, with BuildKit's field names
//! (the protobuf field names), zero values omitted, enums as numbers and bytes as base64, as
//! Go's `encoding/json` writes BuildKit's `pb` structs. Nothing is validated: it shows what is
//! there, including ops oxkit would reject.

use crate::error::LlbError;
use crate::graph::Definition;
use crate::pb;
use crate::Digest;
use prost::Message;

/// One JSON line per op of `def`, in definition order.
pub fn dump_llb(def: &Definition) -> Result<String, LlbError> {
    let mut out = String::new();
    let empty = pb::OpMetadata::default();
    for (index, bytes) in def.as_pb().def.iter().enumerate() {
        let digest = Digest::from_bytes(bytes);
        let op = pb::Op::decode(bytes.as_slice()).map_err(|source| LlbError::DecodeOp {
            index,
            digest: digest.clone(),
            source,
        })?;
        let md = def.as_pb().metadata.get(digest.as_str()).unwrap_or(&empty);
        let mut o = Obj::new();
        o.raw("Op", op_json(&op));
        o.raw("Digest", jstr(digest.as_str()));
        o.raw("OpMetadata", metadata_json(md));
        out.push_str(&o.finish());
        out.push('\n');
    }
    Ok(out)
}

/// A JSON object written field by field, in order, with Go's `omitempty` for zero values.
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }
    fn raw(&mut self, k: &str, v: String) -> &mut Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&jstr(k));
        self.0.push(':');
        self.0.push_str(&v);
        self
    }
    fn str(&mut self, k: &str, v: &str) -> &mut Obj {
        if !v.is_empty() {
            self.raw(k, jstr(v));
        }
        self
    }
    fn int(&mut self, k: &str, v: impl Into<i128>) -> &mut Obj {
        let v = v.into();
        if v != 0 {
            self.raw(k, v.to_string());
        }
        self
    }
    fn bool(&mut self, k: &str, v: bool) -> &mut Obj {
        if v {
            self.raw(k, "true".into());
        }
        self
    }
    fn strs(&mut self, k: &str, v: &[String]) -> &mut Obj {
        if !v.is_empty() {
            self.raw(
                k,
                format!(
                    "[{}]",
                    v.iter().map(|s| jstr(s)).collect::<Vec<_>>().join(",")
                ),
            );
        }
        self
    }
    fn list<T>(&mut self, k: &str, v: &[T], f: impl Fn(&T) -> String) -> &mut Obj {
        if !v.is_empty() {
            self.raw(
                k,
                format!("[{}]", v.iter().map(f).collect::<Vec<_>>().join(",")),
            );
        }
        self
    }
    fn opt<T>(&mut self, k: &str, v: Option<&T>, f: impl Fn(&T) -> String) -> &mut Obj {
        if let Some(v) = v {
            self.raw(k, f(v));
        }
        self
    }
    fn map<V>(
        &mut self,
        k: &str,
        m: &std::collections::BTreeMap<String, V>,
        f: impl Fn(&V) -> String,
    ) -> &mut Obj {
        if !m.is_empty() {
            let mut inner = Obj::new();
            for (mk, mv) in m {
                inner.raw(mk, f(mv));
            }
            self.raw(k, inner.finish());
        }
        self
    }
    fn finish(&mut self) -> String {
        self.0.push('}');
        std::mem::take(&mut self.0)
    }
}

/// A JSON string as Go's encoding/json writes it (HTML-sensitive characters escaped).
fn jstr(s: &str) -> String {
    let plain = serde_json::to_string(s).expect("strings serialize");
    if !plain.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return plain;
    }
    plain
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn op_json(op: &pb::Op) -> String {
    let mut kind = Obj::new();
    match &op.op {
        Some(pb::op::Op::Exec(e)) => kind.raw("exec", exec_json(e)),
        Some(pb::op::Op::Source(s)) => kind.raw(
            "source",
            Obj::new()
                .str("identifier", &s.identifier)
                .map("attrs", &s.attrs, |v| jstr(v))
                .finish(),
        ),
        Some(pb::op::Op::File(f)) => kind.raw(
            "file",
            Obj::new()
                .list("actions", &f.actions, file_action_json)
                .finish(),
        ),
        Some(pb::op::Op::Build(b)) => kind.raw(
            "build",
            Obj::new()
                .int("builder", b.builder)
                .map("inputs", &b.inputs, |i| {
                    Obj::new().int("input", i.input).finish()
                })
                .opt("def", b.def.as_ref(), |d| {
                    Obj::new()
                        .list("def", &d.def, |b| jstr(&base64(b)))
                        .finish()
                })
                .map("attrs", &b.attrs, |v| jstr(v))
                .finish(),
        ),
        Some(pb::op::Op::Merge(m)) => kind.raw(
            "merge",
            Obj::new()
                .list("inputs", &m.inputs, |i| {
                    Obj::new().int("input", i.input).finish()
                })
                .finish(),
        ),
        Some(pb::op::Op::Diff(d)) => kind.raw(
            "diff",
            Obj::new()
                .opt("lower", d.lower.as_ref(), |i| {
                    Obj::new().int("input", i.input).finish()
                })
                .opt("upper", d.upper.as_ref(), |i| {
                    Obj::new().int("input", i.input).finish()
                })
                .finish(),
        ),
        Some(pb::op::Op::Passthrough(p)) => kind.raw(
            "passthrough",
            Obj::new()
                .str("id", &p.id)
                .list("outputs", &p.outputs, |o| o.to_string())
                .finish(),
        ),
        None => &mut kind,
    };
    Obj::new()
        .list("inputs", &op.inputs, |i| {
            Obj::new()
                .str("digest", &i.digest)
                .int("index", i.index)
                .finish()
        })
        .raw("Op", kind.finish())
        .opt("platform", op.platform.as_ref(), |p| {
            Obj::new()
                .str("Architecture", &p.architecture)
                .str("OS", &p.os)
                .str("Variant", &p.variant)
                .str("OSVersion", &p.os_version)
                .strs("OSFeatures", &p.os_features)
                .finish()
        })
        .opt("constraints", op.constraints.as_ref(), |c| {
            Obj::new().strs("filter", &c.filter).finish()
        })
        .finish()
}

fn exec_json(e: &pb::ExecOp) -> String {
    Obj::new()
        .opt("meta", e.meta.as_ref(), |m| {
            Obj::new()
                .strs("args", &m.args)
                .strs("env", &m.env)
                .str("cwd", &m.cwd)
                .str("user", &m.user)
                .opt("proxy_env", m.proxy_env.as_ref(), |p| {
                    Obj::new()
                        .str("http_proxy", &p.http_proxy)
                        .str("https_proxy", &p.https_proxy)
                        .str("ftp_proxy", &p.ftp_proxy)
                        .str("no_proxy", &p.no_proxy)
                        .str("all_proxy", &p.all_proxy)
                        .finish()
                })
                .list("extraHosts", &m.extra_hosts, |h| {
                    Obj::new().str("Host", &h.host).str("IP", &h.ip).finish()
                })
                .str("hostname", &m.hostname)
                .list("ulimit", &m.ulimit, |u| {
                    Obj::new()
                        .str("Name", &u.name)
                        .int("Soft", u.soft)
                        .int("Hard", u.hard)
                        .finish()
                })
                .str("cgroupParent", &m.cgroup_parent)
                .bool("removeMountStubsRecursive", m.remove_mount_stubs_recursive)
                .list("validExitCodes", &m.valid_exit_codes, |c| c.to_string())
                .finish()
        })
        .list("mounts", &e.mounts, mount_json)
        .int("network", e.network)
        .int("security", e.security)
        .list("secretenv", &e.secretenv, |s| {
            Obj::new()
                .str("ID", &s.id)
                .str("name", &s.name)
                .bool("optional", s.optional)
                .finish()
        })
        .list("cdiDevices", &e.cdi_devices, |d| {
            Obj::new()
                .str("name", &d.name)
                .bool("optional", d.optional)
                .finish()
        })
        .finish()
}

fn secret_like(id: &str, uid: u32, gid: u32, mode: u32, optional: bool) -> String {
    Obj::new()
        .str("ID", id)
        .int("uid", uid)
        .int("gid", gid)
        .int("mode", mode)
        .bool("optional", optional)
        .finish()
}

fn mount_json(m: &pb::Mount) -> String {
    Obj::new()
        .int("input", m.input)
        .str("selector", &m.selector)
        .str("dest", &m.dest)
        .int("output", m.output)
        .bool("readonly", m.readonly)
        .int("mountType", m.mount_type)
        .opt("TmpfsOpt", m.tmpfs_opt.as_ref(), |t| {
            Obj::new().int("size", t.size).finish()
        })
        .opt("cacheOpt", m.cache_opt.as_ref(), |c| {
            Obj::new()
                .str("ID", &c.id)
                .int("sharing", c.sharing)
                .finish()
        })
        .opt("secretOpt", m.secret_opt.as_ref(), |s| {
            secret_like(&s.id, s.uid, s.gid, s.mode, s.optional)
        })
        .opt("SSHOpt", m.ssh_opt.as_ref(), |s| {
            secret_like(&s.id, s.uid, s.gid, s.mode, s.optional)
        })
        .str("resultID", &m.result_id)
        .int("contentCache", m.content_cache)
        .finish()
}

fn chown_json(c: &pb::ChownOpt) -> String {
    let user = |u: &pb::UserOpt| {
        let mut inner = Obj::new();
        match &u.user {
            Some(pb::user_opt::User::ByName(n)) => {
                inner.raw(
                    "byName",
                    Obj::new()
                        .str("name", &n.name)
                        .int("input", n.input)
                        .finish(),
                );
            }
            Some(pb::user_opt::User::ById(id)) => {
                inner.int("byId", *id);
            }
            None => {}
        }
        Obj::new().raw("User", inner.finish()).finish()
    };
    Obj::new()
        .opt("user", c.user.as_ref(), user)
        .opt("group", c.group.as_ref(), user)
        .finish()
}

fn file_action_json(a: &pb::FileAction) -> String {
    use pb::file_action::Action;
    let mut action = Obj::new();
    match &a.action {
        Some(Action::Copy(c)) => action.raw(
            "copy",
            Obj::new()
                .str("src", &c.src)
                .str("dest", &c.dest)
                .opt("owner", c.owner.as_ref(), chown_json)
                .int("mode", c.mode)
                .bool("followSymlink", c.follow_symlink)
                .bool("dirCopyContents", c.dir_copy_contents)
                .bool(
                    "attemptUnpackDockerCompatibility",
                    c.attempt_unpack_docker_compatibility,
                )
                .bool("createDestPath", c.create_dest_path)
                .bool("allowWildcard", c.allow_wildcard)
                .bool("allowEmptyWildcard", c.allow_empty_wildcard)
                .int("timestamp", c.timestamp)
                .strs("include_patterns", &c.include_patterns)
                .strs("exclude_patterns", &c.exclude_patterns)
                .bool(
                    "alwaysReplaceExistingDestPaths",
                    c.always_replace_existing_dest_paths,
                )
                .str("modeStr", &c.mode_str)
                .strs("required_paths", &c.required_paths)
                .finish(),
        ),
        Some(Action::Mkfile(m)) => action.raw(
            "mkfile",
            Obj::new()
                .str("path", &m.path)
                .int("mode", m.mode)
                .str("data", &base64(&m.data))
                .opt("owner", m.owner.as_ref(), chown_json)
                .int("timestamp", m.timestamp)
                .finish(),
        ),
        Some(Action::Mkdir(m)) => action.raw(
            "mkdir",
            Obj::new()
                .str("path", &m.path)
                .int("mode", m.mode)
                .bool("makeParents", m.make_parents)
                .opt("owner", m.owner.as_ref(), chown_json)
                .int("timestamp", m.timestamp)
                .finish(),
        ),
        Some(Action::Rm(r)) => action.raw(
            "rm",
            Obj::new()
                .str("path", &r.path)
                .bool("allowNotFound", r.allow_not_found)
                .bool("allowWildcard", r.allow_wildcard)
                .finish(),
        ),
        Some(Action::Symlink(s)) => action.raw(
            "symlink",
            Obj::new()
                .str("oldpath", &s.oldpath)
                .str("newpath", &s.newpath)
                .opt("owner", s.owner.as_ref(), chown_json)
                .int("timestamp", s.timestamp)
                .finish(),
        ),
        None => &mut action,
    };
    Obj::new()
        .raw("input", a.input.to_string())
        .raw("secondaryInput", a.secondary_input.to_string())
        .raw("output", a.output.to_string())
        .raw("Action", action.finish())
        .finish()
}

fn metadata_json(m: &pb::OpMetadata) -> String {
    Obj::new()
        .bool("ignore_cache", m.ignore_cache)
        .map("description", &m.description, |v| jstr(v))
        .opt("export_cache", m.export_cache.as_ref(), |e| {
            Obj::new().bool("Value", e.value).finish()
        })
        .map("caps", &m.caps, |v| v.to_string())
        .opt("progress_group", m.progress_group.as_ref(), |p| {
            Obj::new()
                .str("id", &p.id)
                .str("name", &p.name)
                .bool("weak", p.weak)
                .finish()
        })
        .opt("linux_resources", m.linux_resources.as_ref(), |r| {
            Obj::new()
                .int("memory", r.memory)
                .int("memorySwap", r.memory_swap)
                .int("cpuShares", r.cpu_shares)
                .int("cpuPeriod", r.cpu_period)
                .int("cpuQuota", r.cpu_quota)
                .str("cpusetCpus", &r.cpuset_cpus)
                .str("cpusetMems", &r.cpuset_mems)
                .finish()
        })
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        for (data, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("hello\n", "aGVsbG8K"),
        ] {
            assert_eq!(base64(data.as_bytes()), want);
        }
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    /// The shapes BuildKit's own JSON tests (solver/pb/json_test.go) expect for these ops.
    #[test]
    fn ops_print_like_buildkit() {
        let exec = pb::Op {
            op: Some(pb::op::Op::Exec(pb::ExecOp {
                meta: Some(pb::Meta {
                    args: vec!["echo".into(), "Hello".into(), "World".into()],
                    ..Default::default()
                }),
                mounts: vec![pb::Mount {
                    dest: "/".into(),
                    readonly: true,
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            json(&op_json(&exec)),
            json(
                r#"{"Op":{"exec":{"meta":{"args":["echo","Hello","World"]},"mounts":[{"dest":"/","readonly":true}]}}}"#
            )
        );

        let source = pb::Op {
            op: Some(pb::op::Op::Source(pb::SourceOp {
                identifier: "local://context".into(),
                attrs: Default::default(),
            })),
            constraints: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            op_json(&source),
            r#"{"Op":{"source":{"identifier":"local://context"}},"constraints":{}}"#
        );

        let file = pb::Op {
            op: Some(pb::op::Op::File(pb::FileOp {
                actions: vec![pb::FileAction {
                    input: 1,
                    output: 2,
                    action: Some(pb::file_action::Action::Copy(pb::FileActionCopy {
                        src: "/foo".into(),
                        dest: "/bar".into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        assert_eq!(
            json(&op_json(&file)),
            json(
                r#"{"Op":{"file":{"actions":[{"Action":{"copy":{"src":"/foo","dest":"/bar"}},"input":1,"secondaryInput":0,"output":2}]}}}"#
            )
        );

        let build = pb::Op {
            op: Some(pb::op::Op::Build(pb::BuildOp {
                def: Some(Default::default()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(op_json(&build), r#"{"Op":{"build":{"def":{}}}}"#);

        let merge = pb::Op {
            op: Some(pb::op::Op::Merge(pb::MergeOp {
                inputs: vec![pb::MergeInput { input: 0 }, pb::MergeInput { input: 1 }],
            })),
            ..Default::default()
        };
        assert_eq!(
            op_json(&merge),
            r#"{"Op":{"merge":{"inputs":[{},{"input":1}]}}}"#
        );

        let diff = pb::Op {
            op: Some(pb::op::Op::Diff(pb::DiffOp {
                lower: Some(pb::LowerDiffInput { input: 0 }),
                upper: Some(pb::UpperDiffInput { input: 1 }),
            })),
            ..Default::default()
        };
        assert_eq!(
            op_json(&diff),
            r#"{"Op":{"diff":{"lower":{},"upper":{"input":1}}}}"#
        );
    }

    #[test]
    fn file_actions_print_like_buildkit() {
        let mkfile = pb::FileAction {
            action: Some(pb::file_action::Action::Mkfile(pb::FileActionMkFile {
                path: "/foo".into(),
                data: b"Hello, World!".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            json(&file_action_json(&mkfile)),
            json(
                r#"{"Action":{"mkfile":{"path":"/foo","data":"SGVsbG8sIFdvcmxkIQ=="}},"input":0,"secondaryInput":0,"output":0}"#
            )
        );
        let owned = pb::FileAction {
            action: Some(pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                path: "/foo/bar".into(),
                make_parents: true,
                owner: Some(pb::ChownOpt {
                    user: Some(pb::UserOpt {
                        user: Some(pb::user_opt::User::ByName(pb::NamedUserOpt {
                            name: "app".into(),
                            input: 0,
                        })),
                    }),
                    group: Some(pb::UserOpt {
                        user: Some(pb::user_opt::User::ById(1000)),
                    }),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            json(&file_action_json(&owned)),
            json(
                r#"{"Action":{"mkdir":{"path":"/foo/bar","makeParents":true,"owner":{"user":{"User":{"byName":{"name":"app"}}},"group":{"User":{"byId":1000}}}}},"input":0,"secondaryInput":0,"output":0}"#
            )
        );
    }

    #[test]
    fn strings_are_escaped_like_go() {
        assert_eq!(jstr("a<b>&\"c\""), r#""a\u003cb\u003e\u0026\"c\"""#);
    }
}
