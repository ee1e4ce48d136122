//! Wire compatibility: definitions encoded field by field exactly as BuildKit's schema lays them
//! out (and as its Go `client/llb` writes them), by a hand-written protobuf encoder that shares
//! nothing with prost, must decode into the right typed graph; and prost must encode the same
//! messages to the same bytes.

use oxkit_llb::op::*;
use oxkit_llb::pb;
use oxkit_llb::source::*;
use oxkit_llb::{Definition, Digest, Graph, LlbError};
use prost::Message;

/// A minimal protobuf writer: fields in the order they are written.
#[derive(Default, Clone)]
struct W(Vec<u8>);

impl W {
    fn new() -> W {
        W::default()
    }
    fn raw_varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    /// A varint field (int32/int64/uint32/bool/enum); negative int64s take ten bytes.
    fn int(mut self, field: u32, v: i64) -> W {
        self.raw_varint(u64::from(field) << 3);
        self.raw_varint(v as u64);
        self
    }
    fn bytes(mut self, field: u32, b: &[u8]) -> W {
        self.raw_varint((u64::from(field) << 3) | 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, field: u32, s: &str) -> W {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: W) -> W {
        self.bytes(field, &m.0)
    }
    /// A `map<string,string>` entry.
    fn map_entry(self, field: u32, k: &str, v: &str) -> W {
        self.msg(field, W::new().str(1, k).str(2, v))
    }
}

// Field numbers from BuildKit's solver/pb/ops.proto.
mod f {
    pub const OP_INPUTS: u32 = 1;
    pub const OP_EXEC: u32 = 2;
    pub const OP_SOURCE: u32 = 3;
    pub const OP_FILE: u32 = 4;
    pub const OP_MERGE: u32 = 6;
    pub const OP_DIFF: u32 = 7;
    pub const OP_PLATFORM: u32 = 10;
    pub const OP_CONSTRAINTS: u32 = 11;
    pub const DEF_DEF: u32 = 1;
    pub const DEF_METADATA: u32 = 2;
}

fn platform() -> W {
    W::new().str(1, "amd64").str(2, "linux")
}

fn input(d: &Digest, index: i64) -> W {
    let w = W::new().str(1, d.as_str());
    if index != 0 {
        w.int(2, index)
    } else {
        w
    }
}

fn terminal(d: &Digest) -> W {
    W::new().msg(f::OP_INPUTS, input(d, 0))
}

/// `Definition{def: ops…, metadata: {digest: OpMetadata{caps…}}}`
fn definition(ops: &[&W], metadata: &[(&Digest, W)]) -> Vec<u8> {
    let mut d = W::new();
    for op in ops {
        d = d.bytes(f::DEF_DEF, &op.0);
    }
    for (digest, md) in metadata {
        d = d.msg(
            f::DEF_METADATA,
            W::new().str(1, digest.as_str()).msg(2, md.clone()),
        );
    }
    d.0
}

fn caps(names: &[&str]) -> W {
    let mut w = W::new();
    for n in names {
        w = w.msg(5, W::new().str(1, n).int(2, 1));
    }
    w
}

fn image_op(reference: &str) -> W {
    W::new()
        .msg(
            f::OP_SOURCE,
            W::new().str(1, &format!("docker-image://{reference}")),
        )
        .msg(f::OP_PLATFORM, platform())
        .msg(f::OP_CONSTRAINTS, W::new())
}

fn dg(w: &W) -> Digest {
    Digest::from_bytes(&w.0)
}

/// prost must re-encode each op to the very same bytes: same field numbers, same order.
fn assert_prost_reencodes(bytes: &[u8]) {
    let def = pb::Definition::decode(bytes).unwrap();
    for op in &def.def {
        assert_eq!(pb::Op::decode(op.as_slice()).unwrap().encode_to_vec(), *op);
    }
    assert_eq!(def.encode_to_vec(), bytes);
}

#[test]
fn source_op_encodes_like_buildkits_fixture() {
    // The SourceOp of BuildKit's solver/pb proto_test.go, whose marshalled form is its
    // testdata/SourceOp.bin: map entries sorted by key.
    let hand = W::new()
        .str(1, "docker-image://docker.io/library/foo:latest")
        .map_entry(2, "a", "foo")
        .map_entry(2, "b", "bar")
        .map_entry(2, "c", "baz");
    let ours = pb::SourceOp {
        identifier: "docker-image://docker.io/library/foo:latest".into(),
        attrs: [("c", "baz"), ("a", "foo"), ("b", "bar")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(hand.0.len(), 75);
    assert_eq!(ours.encode_to_vec(), hand.0);
}

#[test]
fn image_source_definition_decodes() {
    let img = image_op("docker.io/library/busybox:latest");
    let term = terminal(&dg(&img));
    let bytes = definition(
        &[&img, &term],
        &[
            (&dg(&img), caps(&["source.image"])),
            (&dg(&term), caps(&["constraints", "platform"])),
        ],
    );
    assert_prost_reencodes(&bytes);
    let g = Graph::from_bytes(&bytes).unwrap();
    assert_eq!(g.vertices().len(), 1);
    let v = &g.vertices()[0];
    assert_eq!(v.digest, dg(&img));
    assert_eq!(g.result().unwrap().digest, dg(&img));
    let Op::Source(s) = &v.op else {
        panic!("not a source: {:?}", v.op)
    };
    assert_eq!(
        s.source,
        Source::Image(ImageSource {
            reference: ImageRef::parse("busybox").unwrap(),
            resolve_mode: ResolveMode::Default
        })
    );
    assert_eq!(
        v.platform,
        Some(Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            ..Default::default()
        })
    );
    assert_eq!(v.metadata.caps.get("source.image"), Some(&true));
    let (td, tmd) = g.terminal().unwrap();
    assert_eq!(*td, dg(&term));
    assert_eq!(tmd.caps.len(), 2);
}

#[test]
fn exec_op_with_every_supported_mount_decodes() {
    let img = image_op("docker.io/library/golang:1.22");
    let exec = W::new()
        .msg(f::OP_INPUTS, input(&dg(&img), 0))
        .msg(
            f::OP_EXEC,
            W::new()
                .msg(
                    1, // meta
                    W::new()
                        .str(1, "/bin/sh")
                        .str(1, "-c")
                        .str(1, "go build ./...")
                        .str(2, "PATH=/usr/local/go/bin:/usr/bin:/bin")
                        .str(2, "CGO_ENABLED=0")
                        .str(3, "/src")
                        .str(4, "builder")
                        .msg(6, W::new().str(1, "registry").str(2, "10.0.0.2"))
                        .str(7, "buildhost")
                        .bytes(12, &[0x00, 0x01]), // packed validExitCodes [0, 1]
                )
                // root: input 0, output 0 (zero values omitted)
                .msg(2, W::new().str(3, "/"))
                // read-only bind of a subdirectory, no output
                .msg(
                    2,
                    W::new()
                        .str(2, "/cmd")
                        .str(3, "/mnt/cmd")
                        .int(4, -1)
                        .int(5, 1),
                )
                // secret: input -1, output left at 0 as BuildKit's client writes it
                .msg(
                    2,
                    W::new()
                        .int(1, -1)
                        .str(3, "/run/secrets/token")
                        .int(6, 1)
                        .msg(21, W::new().str(1, "token").int(4, 0o400)),
                )
                // cache, locked
                .msg(
                    2,
                    W::new()
                        .int(1, -1)
                        .str(3, "/root/.cache/go-build")
                        .int(4, -1)
                        .int(6, 3)
                        .msg(20, W::new().str(1, "gocache").int(2, 2)),
                )
                // tmpfs, 64 MiB
                .msg(
                    2,
                    W::new()
                        .int(1, -1)
                        .str(3, "/tmp")
                        .int(4, -1)
                        .int(6, 4)
                        .msg(19, W::new().int(1, 64 << 20)),
                )
                .int(3, 2) // network NONE
                .msg(5, W::new().str(1, "npmrc").str(2, "NPM_TOKEN").int(3, 1)),
        )
        .msg(f::OP_PLATFORM, platform())
        .msg(f::OP_CONSTRAINTS, W::new());
    let term = terminal(&dg(&exec));
    let bytes = definition(&[&img, &exec, &term], &[]);
    assert_prost_reencodes(&bytes);
    let g = Graph::from_bytes(&bytes).unwrap();
    assert_eq!(g.vertices().len(), 2);
    assert_eq!(g.vertices()[0].digest, dg(&img), "inputs come first");
    let v = g.vertex(&dg(&exec)).unwrap();
    assert_eq!(
        v.inputs,
        vec![oxkit_llb::Edge {
            digest: dg(&img),
            output: 0
        }]
    );
    let Op::Exec(e) = &v.op else { panic!() };
    assert_eq!(e.meta.args, ["/bin/sh", "-c", "go build ./..."]);
    assert_eq!(
        e.meta.env,
        ["PATH=/usr/local/go/bin:/usr/bin:/bin", "CGO_ENABLED=0"]
    );
    assert_eq!(
        (
            e.meta.cwd.as_str(),
            e.meta.user.as_str(),
            e.meta.hostname.as_str()
        ),
        ("/src", "builder", "buildhost")
    );
    assert_eq!(
        e.meta.extra_hosts,
        [HostIp {
            host: "registry".into(),
            ip: "10.0.0.2".into()
        }]
    );
    assert_eq!(e.meta.valid_exit_codes, [0, 1]);
    assert_eq!(e.network, NetMode::None);
    assert_eq!(
        e.secret_env,
        [SecretEnv {
            id: "npmrc".into(),
            name: "NPM_TOKEN".into(),
            optional: true
        }]
    );
    let want = vec![
        Mount {
            dest: "/".into(),
            kind: MountKind::Bind {
                input: Some(0),
                selector: String::new(),
                content_cache: ContentCache::Default,
            },
            readonly: false,
            output: Some(0),
        },
        Mount {
            dest: "/mnt/cmd".into(),
            kind: MountKind::Bind {
                input: Some(0),
                selector: "/cmd".into(),
                content_cache: ContentCache::Default,
            },
            readonly: true,
            output: None,
        },
        Mount {
            dest: "/run/secrets/token".into(),
            kind: MountKind::Secret(SecretMount {
                id: "token".into(),
                uid: 0,
                gid: 0,
                mode: 0o400,
                optional: false,
            }),
            readonly: false,
            output: None,
        },
        Mount {
            dest: "/root/.cache/go-build".into(),
            kind: MountKind::Cache {
                id: "gocache".into(),
                sharing: CacheSharing::Locked,
                input: None,
                selector: String::new(),
            },
            readonly: false,
            output: None,
        },
        Mount {
            dest: "/tmp".into(),
            kind: MountKind::Tmpfs {
                size: Some(64 << 20),
            },
            readonly: false,
            output: None,
        },
    ];
    assert_eq!(e.mounts, want);
    assert_eq!(v.op.num_outputs(), 1);
}

#[test]
fn file_op_chain_decodes_with_buildkits_action_numbering() {
    let img = image_op("docker.io/library/alpine:3.19");
    let ctx = W::new()
        .msg(
            f::OP_SOURCE,
            W::new()
                .str(1, "local://context")
                .map_entry(2, "local.excludepatterns", r#"["target",".git"]"#)
                .map_entry(2, "local.followpaths", r#"["Cargo.toml"]"#)
                .map_entry(2, "local.sharedkeyhint", "context"),
        )
        .msg(f::OP_PLATFORM, platform())
        .msg(f::OP_CONSTRAINTS, W::new());
    let chown = W::new()
        .msg(1, W::new().msg(1, W::new().str(1, "app"))) // user byName "app", input 0
        .msg(2, W::new().int(2, 1000)); // group byID 1000
    let file = W::new()
        .msg(f::OP_INPUTS, input(&dg(&img), 0))
        .msg(f::OP_INPUTS, input(&dg(&ctx), 0))
        .msg(
            f::OP_FILE,
            W::new()
                // FileOp.actions is field 2
                .msg(
                    2,
                    W::new().int(2, 1).int(3, -1).msg(
                        4,
                        W::new()
                            .str(1, "/src")
                            .str(2, "/app/")
                            .msg(3, chown.clone())
                            .int(4, -1)
                            .int(5, 1)
                            .int(6, 1)
                            .int(8, 1)
                            .int(9, 1)
                            .int(11, -1)
                            .str(12, "*.rs")
                            .str(13, "tests"),
                    ),
                )
                // input 2 = 2 inputs + action 0
                .msg(
                    2,
                    W::new().int(1, 2).int(2, -1).int(3, -1).msg(
                        6,
                        W::new()
                            .str(1, "/app/out/logs")
                            .int(2, 0o755)
                            .int(3, 1)
                            .int(5, -1),
                    ),
                )
                .msg(
                    2,
                    W::new().int(1, 3).int(2, -1).int(3, -1).msg(
                        5,
                        W::new()
                            .str(1, "/app/VERSION")
                            .int(2, 0o644)
                            .bytes(3, b"1.0\n")
                            .int(5, -1),
                    ),
                )
                .msg(
                    2,
                    W::new()
                        .int(1, 4)
                        .int(2, -1)
                        .int(3, -1)
                        .msg(7, W::new().str(1, "/app/*.tmp").int(2, 1).int(3, 1)),
                )
                .msg(
                    2,
                    W::new().int(1, 5).int(2, -1).msg(
                        8,
                        W::new()
                            .str(1, "/app/bin/tool")
                            .str(2, "/usr/local/bin/tool")
                            .int(4, -1),
                    ),
                ),
        );
    let term = terminal(&dg(&file));
    let bytes = definition(&[&img, &ctx, &file, &term], &[]);
    assert_prost_reencodes(&bytes);
    let g = Graph::from_bytes(&bytes).unwrap();
    let v = g.vertex(&dg(&file)).unwrap();
    assert_eq!(v.platform, None);
    let Op::File(fo) = &v.op else { panic!() };
    assert_eq!(fo.actions.len(), 5);
    let a = &fo.actions;
    assert_eq!(
        (a[0].input, a[0].secondary_input, a[0].output),
        (FileInput::Input(0), FileInput::Input(1), None)
    );
    assert_eq!(
        a[0].kind,
        FileActionKind::Copy(Copy {
            src: "/src".into(),
            dest: "/app/".into(),
            owner: Some(Chown {
                user: Some(UserRef::Name {
                    name: "app".into(),
                    input: FileInput::Input(0)
                }),
                group: Some(UserRef::Id(1000)),
            }),
            mode: None,
            follow_symlink: true,
            dir_copy_contents: true,
            create_dest_path: true,
            allow_wildcard: true,
            include_patterns: vec!["*.rs".into()],
            exclude_patterns: vec!["tests".into()],
            ..Default::default()
        })
    );
    assert_eq!(a[1].input, FileInput::Action(0));
    assert_eq!(
        a[1].kind,
        FileActionKind::Mkdir(Mkdir {
            path: "/app/out/logs".into(),
            mode: 0o755,
            make_parents: true,
            owner: None,
            timestamp: None
        })
    );
    assert_eq!(
        a[2].kind,
        FileActionKind::Mkfile(Mkfile {
            path: "/app/VERSION".into(),
            mode: 0o644,
            data: b"1.0\n".to_vec(),
            owner: None,
            timestamp: None
        })
    );
    assert_eq!(
        a[3].kind,
        FileActionKind::Rm(Rm {
            path: "/app/*.tmp".into(),
            allow_not_found: true,
            allow_wildcard: true
        })
    );
    assert_eq!((a[4].input, a[4].output), (FileInput::Action(3), Some(0)));
    assert_eq!(
        a[4].kind,
        FileActionKind::Symlink(Symlink {
            oldpath: "/app/bin/tool".into(),
            newpath: "/usr/local/bin/tool".into(),
            owner: None,
            timestamp: None
        })
    );
    let Op::Source(s) = &g.vertex(&dg(&ctx)).unwrap().op else {
        panic!()
    };
    let Source::Local(l) = &s.source else {
        panic!()
    };
    assert_eq!(l.exclude_patterns, ["target", ".git"]);
    assert_eq!(l.follow_paths, ["Cargo.toml"]);
    assert_eq!(l.shared_key_hint.as_deref(), Some("context"));
}

#[test]
fn git_source_with_buildkits_default_attrs_and_merge_decode() {
    // llb.Git always writes the auth secret names and the full URL.
    let git = W::new()
        .msg(
            f::OP_SOURCE,
            W::new()
                .str(1, "git://github.com/moby/buildkit.git#v0.12.0")
                .map_entry(2, "git.authheadersecret", "GIT_AUTH_HEADER")
                .map_entry(2, "git.authtokensecret", "GIT_AUTH_TOKEN")
                .map_entry(2, "git.fullurl", "https://github.com/moby/buildkit.git"),
        )
        .msg(f::OP_PLATFORM, platform())
        .msg(f::OP_CONSTRAINTS, W::new());
    let img = image_op("docker.io/library/busybox:latest");
    let merge = W::new()
        .msg(f::OP_INPUTS, input(&dg(&img), 0))
        .msg(f::OP_INPUTS, input(&dg(&git), 0))
        .msg(
            f::OP_MERGE,
            W::new().msg(1, W::new()).msg(1, W::new().int(1, 1)),
        )
        .msg(f::OP_CONSTRAINTS, W::new());
    let term = terminal(&dg(&merge));
    let bytes = definition(&[&img, &git, &merge, &term], &[]);
    assert_prost_reencodes(&bytes);
    let g = Graph::from_bytes(&bytes).unwrap();
    let Op::Merge(m) = &g.vertex(&dg(&merge)).unwrap().op else {
        panic!()
    };
    assert_eq!(m.inputs, [0, 1]);
    let Op::Source(s) = &g.vertex(&dg(&git)).unwrap().op else {
        panic!()
    };
    assert_eq!(
        s.source,
        Source::Git(GitSource {
            remote: "https://github.com/moby/buildkit.git".into(),
            git_ref: Some("v0.12.0".into()),
            auth_header_secret: Some("GIT_AUTH_HEADER".into()),
            auth_token_secret: Some("GIT_AUTH_TOKEN".into()),
            ..Default::default()
        })
    );
}

#[test]
fn unknown_fields_and_unsupported_ops_are_named() {
    let img = image_op("docker.io/library/busybox:latest");
    // Field 99 is not in the schema: a newer BuildKit's op.
    let newer = img.clone().str(99, "from the future");
    let term = terminal(&dg(&newer));
    let err = Graph::from_bytes(&definition(&[&newer, &term], &[])).unwrap_err();
    assert!(
        matches!(&err, LlbError::UnknownFields { field, .. } if field == "Op.field 99"),
        "{err}"
    );
    assert!(err.to_string().contains("Op.field 99"), "{err}");

    // Deep inside: field 30 of a Mount.
    let newer_mount = W::new().msg(f::OP_INPUTS, input(&dg(&img), 0)).msg(
        f::OP_EXEC,
        W::new()
            .msg(1, W::new().str(1, "true"))
            .msg(2, W::new().str(3, "/").int(30, 1)),
    );
    let term = terminal(&dg(&newer_mount));
    let err = Graph::from_bytes(&definition(&[&img, &newer_mount, &term], &[])).unwrap_err();
    assert!(
        matches!(&err, LlbError::UnknownFields { field, .. } if field == "Op.exec.mounts.field 30"),
        "{err}"
    );

    // Explicitly written zero values (legal, if not what Go writes) are not unknown fields.
    let explicit_zero = W::new()
        .msg(
            f::OP_SOURCE,
            W::new().str(1, "docker-image://docker.io/library/busybox:latest"),
        )
        .msg(f::OP_PLATFORM, platform().str(3, "").int(99, 0).str(4, ""));
    let term = terminal(&dg(&explicit_zero));
    let err = Graph::from_bytes(&definition(&[&explicit_zero, &term], &[])).unwrap_err();
    assert!(err.to_string().contains("Op.platform.field 99"), "{err}");
    let explicit_zero = W::new()
        .msg(
            f::OP_SOURCE,
            W::new().str(1, "docker-image://docker.io/library/busybox:latest"),
        )
        .msg(f::OP_PLATFORM, platform().str(3, "").str(4, ""));
    let term = terminal(&dg(&explicit_zero));
    Graph::from_bytes(&definition(&[&explicit_zero, &term], &[])).unwrap();

    let diff = W::new()
        .msg(f::OP_INPUTS, input(&dg(&img), 0))
        .msg(f::OP_DIFF, W::new().msg(1, W::new()).msg(2, W::new()));
    let term = terminal(&dg(&diff));
    let err = Graph::from_bytes(&definition(&[&img, &diff, &term], &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "op '{}': diff ops are not supported by oxkit (supported: source, exec, file, merge)",
            dg(&diff)
        )
    );

    let ssh = W::new().msg(f::OP_INPUTS, input(&dg(&img), 0)).msg(
        f::OP_EXEC,
        W::new()
            .msg(1, W::new().str(1, "true"))
            .msg(2, W::new().str(3, "/"))
            .msg(
                2,
                W::new()
                    .int(1, -1)
                    .str(3, "/run/ssh")
                    .int(6, 2)
                    .msg(22, W::new().str(1, "default")),
            ),
    );
    let term = terminal(&dg(&ssh));
    let err = Graph::from_bytes(&definition(&[&img, &ssh, &term], &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "exec op '{}': mount type SSH is not supported by oxkit",
            dg(&ssh)
        )
    );
}

#[test]
fn definitions_round_trip_through_bytes() {
    let img = image_op("docker.io/library/busybox:latest");
    let term = terminal(&dg(&img));
    let bytes = definition(
        &[&img, &term],
        &[(&dg(&term), caps(&["constraints", "platform"]))],
    );
    let def = Definition::from_bytes(&bytes).unwrap();
    assert_eq!(def.to_bytes(), bytes);
}
