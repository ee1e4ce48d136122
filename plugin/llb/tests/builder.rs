//! The builder API: what it writes parses back into the graph that was described, and the same
//! description always gives the same bytes.

use oxkit_llb::op::*;
use oxkit_llb::source::{LocalSource, Source};
use oxkit_llb::{
    dump_llb, image, image_with, local_with, merge, mkdir, mkfile, scratch, CopyOptions,
    FileActions, Graph, ImageOptions, LocalOptions, MkdirOptions, MountSpec, Owner, RmOptions,
    State,
};

fn amd64() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        ..Default::default()
    }
}

fn busybox() -> State {
    image_with(
        "busybox",
        ImageOptions {
            platform: Some(amd64()),
            ..Default::default()
        },
    )
}

fn hello() -> State {
    busybox()
        .sh("echo hello > /hello.txt")
        .custom_name("write hello")
        .root()
}

fn graph(s: &State) -> Graph {
    let def = s.marshal().unwrap();
    let g = Graph::from_bytes(&def.to_bytes()).unwrap();
    assert_eq!(g, def.parse().unwrap());
    g
}

#[test]
fn hello_marshals_to_image_plus_exec() {
    let g = graph(&hello());
    assert_eq!(g.vertices().len(), 2);
    let [img, run] = g.vertices() else { panic!() };
    let Op::Source(s) = &img.op else { panic!() };
    assert_eq!(
        s.identifier,
        "docker-image://docker.io/library/busybox:latest"
    );
    assert_eq!(img.platform, Some(amd64()));
    let Op::Exec(e) = &run.op else { panic!() };
    assert_eq!(e.meta.args, ["/bin/sh", "-c", "echo hello > /hello.txt"]);
    assert_eq!(
        e.meta.env,
        [format!("PATH={}", oxkit_llb::attr::DEFAULT_PATH_ENV)]
    );
    assert_eq!(e.meta.cwd, "/");
    assert_eq!(e.network, NetMode::Sandbox);
    assert_eq!(
        run.inputs,
        [oxkit_llb::Edge {
            digest: img.digest.clone(),
            output: 0
        }]
    );
    assert_eq!(run.metadata.custom_name(), Some("write hello"));
    assert_eq!(run.name(), "write hello");
    assert_eq!(
        img.name(),
        "docker-image://docker.io/library/busybox:latest"
    );
    assert_eq!(
        g.result(),
        Some(&oxkit_llb::Edge {
            digest: run.digest.clone(),
            output: 0
        })
    );
    let (_, tmd) = g.terminal().unwrap();
    assert_eq!(
        tmd.caps.keys().collect::<Vec<_>>(),
        ["constraints", "meta.description", "platform"]
    );
}

#[test]
fn marshalling_is_deterministic() {
    let a = hello().marshal().unwrap().to_bytes();
    let b = hello().marshal().unwrap().to_bytes();
    assert_eq!(a, b, "two independent builds of the same graph");
    let s = hello();
    assert_eq!(
        s.marshal().unwrap().to_bytes(),
        s.marshal().unwrap().to_bytes()
    );
    // Attribute maps are sorted whatever order options were given in.
    let l1 = local_with(
        "context",
        LocalOptions {
            exclude_patterns: vec!["a".into()],
            shared_key_hint: Some("k".into()),
            ..Default::default()
        },
    );
    let l2 = local_with(
        "context",
        LocalOptions {
            shared_key_hint: Some("k".into()),
            exclude_patterns: vec!["a".into()],
            ..Default::default()
        },
    );
    assert_eq!(
        l1.marshal().unwrap().to_bytes(),
        l2.marshal().unwrap().to_bytes()
    );
}

#[test]
fn digests_are_stable_across_releases() {
    // If this changes, every cache key of every user changes: only on purpose.
    let g = graph(&busybox().run(["true"]).root());
    let digests: Vec<&str> = g.vertices().iter().map(|v| v.digest.as_str()).collect();
    assert_eq!(
        digests,
        [
            "sha256:08a03f3ffe5fba421a6403c31e153425ced631d108868f30e04985f99d69326e",
            "sha256:0ca10857a5d427f185b41d7ced52b57a4318991f9a1e22206cfa61648aa0fba3",
        ]
    );
}

/// The same graph written by BuildKit (a Dockerfile `FROM busybox`, `RUN echo hello > /newfile`,
/// `RUN test -s /newfile`, built for linux/amd64; digests from a public `buildctl debug dump-llb
/// --dot` output) has exactly these vertex ids: oxkit writes the same bytes BuildKit does.
#[test]
fn digests_match_what_buildkit_writes_for_the_same_graph() {
    let st = busybox()
        .sh("echo hello > /newfile")
        .root()
        .sh("test -s /newfile")
        .root();
    let def = st.marshal().unwrap();
    let digests: Vec<String> = def
        .as_pb()
        .def
        .iter()
        .map(|b| oxkit_llb::Digest::from_bytes(b).to_string())
        .collect();
    assert_eq!(
        digests,
        [
            "sha256:08a03f3ffe5fba421a6403c31e153425ced631d108868f30e04985f99d69326e", // docker-image://docker.io/library/busybox:latest
            "sha256:86576b45c26679ce5a3c5b0ae3e7776a52e2f8efc0e3b201d868db3f641b24d6", // /bin/sh -c echo hello > /newfile
            "sha256:234266d1d6afb8793d0745c8972a7e98dbf3d7f83c96510bad5fd8454595c3b9", // /bin/sh -c test -s /newfile
            "sha256:58e1767e108e91a0e120189bdc7f79590dee3521dd343b3f7ad32df17b8fa412", // terminal
        ]
    );
}

#[test]
fn metadata_does_not_change_digests() {
    let plain = graph(&busybox().run(["true"]).root());
    let named = graph(
        &busybox()
            .run(["true"])
            .custom_name("noop")
            .ignore_cache()
            .root(),
    );
    assert_eq!(plain.result(), named.result());
    let v = named.vertex(&named.result().unwrap().digest).unwrap();
    assert!(v.metadata.ignore_cache);
    let src = graph(
        &busybox()
            .custom_name("base")
            .description("com.example", "x"),
    );
    assert_eq!(src.vertices()[0].metadata.description.len(), 2);
    assert_eq!(src.vertices()[0].digest, plain.vertices()[0].digest);
}

#[test]
fn run_with_mounts_and_outputs() {
    let ctx = local_with(
        "context",
        LocalOptions {
            include_patterns: vec!["src/".into(), "Cargo.*".into()],
            exclude_patterns: vec!["target".into()],
            follow_paths: vec!["Cargo.toml".into()],
            shared_key_hint: Some("context".into()),
            ..Default::default()
        },
    );
    let e = busybox()
        .env("CARGO_HOME", "/cargo")
        .dir("/src")
        .user("builder")
        .network(NetMode::None)
        .run(["cargo", "build"])
        .env("RUSTFLAGS", "-Cdebuginfo=0")
        .hostname("b")
        .add_host("reg", "10.0.0.1")
        .secret_env("tok", "TOKEN", true)
        .mount(MountSpec::bind("/src", &ctx).selector("/app").readonly())
        .mount(MountSpec::bind("out", &oxkit_llb::scratch()))
        .mount(MountSpec::cache("/cargo/registry", "registry").sharing(CacheSharing::Locked))
        .mount(MountSpec::tmpfs("/tmp").size(1 << 20))
        .mount(MountSpec::secret("/run/secrets/npm", "npm").owner_mode(1000, 1000, 0o440))
        .mount(MountSpec::secret("", "token").optional())
        .exec();
    let out = e
        .mount_output("/src/out")
        .expect("writable mount has an output");
    assert!(
        e.mount_output("/src").is_none(),
        "read-only mounts have no output"
    );
    let both = merge(&[e.root(), out.clone()]);
    let g = graph(&both);
    let Op::Merge(m) = &g.vertex(&g.result().unwrap().digest).unwrap().op else {
        panic!()
    };
    assert_eq!(m.inputs, [0, 1]);
    let run = g
        .vertices()
        .iter()
        .find(|v| matches!(v.op, Op::Exec(_)))
        .unwrap();
    let Op::Exec(x) = &run.op else { panic!() };
    assert_eq!(
        x.meta.env,
        [
            "CARGO_HOME=/cargo",
            "RUSTFLAGS=-Cdebuginfo=0",
            &format!("PATH={}", oxkit_llb::attr::DEFAULT_PATH_ENV)
        ]
    );
    assert_eq!(
        (
            x.meta.cwd.as_str(),
            x.meta.user.as_str(),
            x.meta.hostname.as_str()
        ),
        ("/src", "builder", "b")
    );
    assert_eq!(x.network, NetMode::None);
    assert_eq!(
        x.secret_env,
        [SecretEnv {
            id: "tok".into(),
            name: "TOKEN".into(),
            optional: true
        }]
    );
    assert_eq!(
        run.inputs.len(),
        2,
        "image and context; scratch is not an input"
    );
    let dests: Vec<(&str, Option<usize>)> = x
        .mounts
        .iter()
        .map(|m| (m.dest.as_str(), m.output))
        .collect();
    assert_eq!(
        dests,
        [
            ("/", Some(0)),
            ("/src", None),
            ("/src/out", Some(1)),
            ("/cargo/registry", None),
            ("/tmp", None),
            ("/run/secrets/npm", None),
            ("/run/secrets/token", None)
        ]
    );
    assert_eq!(
        x.mounts[6].kind,
        MountKind::Secret(SecretMount {
            id: "token".into(),
            uid: 0,
            gid: 0,
            mode: 0o400,
            optional: true
        }),
        "no destination: /run/secrets/<id>, root-owned, mode 0400"
    );
    assert_eq!(
        x.mounts[1].kind,
        MountKind::Bind {
            input: Some(1),
            selector: "/app".into(),
            content_cache: ContentCache::Default
        }
    );
    assert!(x.mounts[1].readonly);
    assert_eq!(
        x.mounts[2].kind,
        MountKind::Bind {
            input: None,
            selector: String::new(),
            content_cache: ContentCache::Default
        }
    );
    assert_eq!(
        x.mounts[3].kind,
        MountKind::Cache {
            id: "registry".into(),
            sharing: CacheSharing::Locked,
            input: None,
            selector: String::new()
        }
    );
    assert_eq!(
        x.mounts[4].kind,
        MountKind::Tmpfs {
            size: Some(1 << 20)
        }
    );
    assert_eq!(
        x.mounts[5].kind,
        MountKind::Secret(SecretMount {
            id: "npm".into(),
            uid: 1000,
            gid: 1000,
            mode: 0o440,
            optional: false
        })
    );
    let ctxv = g.vertex(&run.inputs[1].digest).unwrap();
    let Op::Source(s) = &ctxv.op else { panic!() };
    assert_eq!(
        s.source,
        Source::Local(LocalSource {
            name: "context".into(),
            include_patterns: vec!["src/".into(), "Cargo.*".into()],
            exclude_patterns: vec!["target".into()],
            follow_paths: vec!["Cargo.toml".into()],
            shared_key_hint: Some("context".into()),
            ..Default::default()
        })
    );
    assert_eq!(s.attrs["local.excludepatterns"], r#"["target"]"#);
    // The merge's second input is the exec's output 1.
    let mv = g.vertex(&g.result().unwrap().digest).unwrap();
    assert_eq!(
        mv.inputs[1],
        oxkit_llb::Edge {
            digest: run.digest.clone(),
            output: 1
        }
    );
    // The root keeps the step's defaults; a mount's output keeps those of the state mounted.
    assert_eq!(out.get_dir(), "/");
    assert_eq!(e.root().get_dir(), "/src");
    assert_eq!(e.root().get_env("CARGO_HOME"), Some("/cargo"));
}

#[test]
fn file_actions_chain_into_one_op() {
    let ctx = oxkit_llb::local("context");
    let st = busybox().dir("/app").file(
        mkdir("bin", 0o755)
            .mkdir_with(
                "/var/log/app",
                0o750,
                MkdirOptions {
                    make_parents: true,
                    owner: Some(Owner::Ids(1, 2)),
                    ..Default::default()
                },
            )
            .mkfile("VERSION", 0o644, "1.0\n")
            .copy(
                &ctx,
                "src",
                "./",
                CopyOptions {
                    owner: Some(Owner::Names("app".into(), None)),
                    mode: Some(0o640),
                    follow_symlinks: true,
                    copy_dir_contents: true,
                    create_dest_path: true,
                    allow_wildcard: true,
                    include_patterns: vec!["*.rs".into()],
                    exclude_patterns: vec!["tests".into()],
                    ..Default::default()
                },
            )
            .rm_with(
                "/tmp/*",
                RmOptions {
                    allow_not_found: true,
                    allow_wildcard: true,
                },
            )
            .symlink("/app/bin/tool", "/usr/bin/tool"),
    );
    let g = graph(&st);
    let v = g.vertex(&g.result().unwrap().digest).unwrap();
    assert_eq!(v.platform, None);
    assert_eq!(v.inputs.len(), 2);
    let Op::File(f) = &v.op else { panic!() };
    let a = &f.actions;
    assert_eq!(a.len(), 6);
    assert_eq!(a[0].input, FileInput::Input(0));
    for (k, action) in a.iter().enumerate().skip(1) {
        assert_eq!(action.input, FileInput::Action(k - 1));
    }
    let outputs: Vec<Option<usize>> = a.iter().map(|x| x.output).collect();
    assert_eq!(outputs, [None, None, None, None, None, Some(0)]);
    assert_eq!(
        a[0].kind,
        FileActionKind::Mkdir(Mkdir {
            path: "/app/bin".into(),
            mode: 0o755,
            ..Default::default()
        })
    );
    let FileActionKind::Mkdir(m) = &a[1].kind else {
        panic!()
    };
    assert!(m.make_parents);
    assert_eq!(
        m.owner,
        Some(Chown {
            user: Some(UserRef::Id(1)),
            group: Some(UserRef::Id(2))
        })
    );
    assert_eq!(
        a[2].kind,
        FileActionKind::Mkfile(Mkfile {
            path: "/app/VERSION".into(),
            mode: 0o644,
            data: b"1.0\n".to_vec(),
            ..Default::default()
        })
    );
    assert_eq!(a[3].secondary_input, FileInput::Input(1));
    let FileActionKind::Copy(c) = &a[3].kind else {
        panic!()
    };
    assert_eq!(
        (c.src.as_str(), c.dest.as_str(), c.mode),
        ("/src", "/app/", Some(0o640))
    );
    assert!(c.follow_symlink && c.dir_copy_contents && c.create_dest_path && c.allow_wildcard);
    assert_eq!(
        c.owner,
        Some(Chown {
            user: Some(UserRef::Name {
                name: "app".into(),
                input: FileInput::Input(0)
            }),
            group: None
        })
    );
    assert_eq!(
        a[4].kind,
        FileActionKind::Rm(Rm {
            path: "/tmp/*".into(),
            allow_not_found: true,
            allow_wildcard: true
        })
    );
    let FileActionKind::Symlink(s) = &a[5].kind else {
        panic!()
    };
    assert_eq!(
        (s.oldpath.as_str(), s.newpath.as_str()),
        ("/app/bin/tool", "/usr/bin/tool")
    );
}

#[test]
fn scratch_and_trivial_cases() {
    assert!(scratch().marshal().unwrap().as_pb().def.is_empty());
    assert!(graph(&scratch()).result().is_none());
    // A file op on scratch has no inputs.
    let g = graph(&scratch().file(mkfile("/f", 0o600, "x")));
    let v = &g.vertices()[0];
    assert!(v.inputs.is_empty());
    let Op::File(f) = &v.op else { panic!() };
    assert_eq!(f.actions[0].input, FileInput::Scratch);
    // Merging one state is that state; scratch adds nothing.
    let b = busybox();
    assert_eq!(
        merge(&[scratch(), b.clone()]).marshal().unwrap(),
        b.marshal().unwrap()
    );
    assert!(merge(&[]).is_scratch());
    assert_eq!(
        b.file(FileActions::new()).marshal().unwrap(),
        b.marshal().unwrap()
    );
    // A shared base appears once.
    let x = b.run(["a"]).root();
    let y = b.run(["b"]).root();
    let g = graph(&merge(&[x, y]));
    assert_eq!(g.vertices().len(), 4);
}

#[test]
fn builder_reports_what_it_cannot_write() {
    let err = image("Not A Reference")
        .run(["true"])
        .root()
        .marshal()
        .unwrap_err();
    assert!(
        err.to_string().contains("not a valid repository name"),
        "{err}"
    );
    let err = busybox()
        .run(Vec::<String>::new())
        .root()
        .marshal()
        .unwrap_err();
    assert!(err.to_string().contains("has no args"), "{err}");
}

#[test]
fn dump_llb_prints_one_json_object_per_op() {
    let def = hello().marshal().unwrap();
    let out = dump_llb(&def).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let g = def.parse().unwrap();
    assert_eq!(v[0]["Digest"], g.vertices()[0].digest.as_str());
    assert_eq!(
        v[0]["Op"]["Op"]["source"]["identifier"],
        "docker-image://docker.io/library/busybox:latest"
    );
    assert_eq!(
        v[0]["Op"]["platform"],
        serde_json::json!({"Architecture": "amd64", "OS": "linux"})
    );
    assert_eq!(v[0]["Op"]["constraints"], serde_json::json!({}));
    assert_eq!(v[0]["OpMetadata"], serde_json::json!({}));
    assert_eq!(
        v[1]["Op"]["Op"]["exec"]["mounts"],
        serde_json::json!([{"dest": "/"}])
    );
    assert_eq!(
        v[1]["Op"]["inputs"][0]["digest"],
        g.vertices()[0].digest.as_str()
    );
    assert_eq!(
        v[1]["OpMetadata"]["description"]["llb.customname"],
        "write hello"
    );
    assert_eq!(
        v[1]["Op"]["Op"]["exec"]["meta"]["args"][2],
        "echo hello > /hello.txt"
    );
    assert!(
        lines[1].contains(r#""echo hello \u003e /hello.txt""#),
        "escaped as Go does: {}",
        lines[1]
    );
    assert_eq!(
        v[2]["Op"],
        serde_json::json!({"inputs": [{"digest": g.result().unwrap().digest.as_str()}], "Op": {}})
    );
    assert_eq!(v[2]["OpMetadata"]["caps"]["platform"], true);
}

/// A resolver that answers from a table and records what it was asked.
struct FakeResolver {
    config: &'static str,
    asked: std::sync::Mutex<Vec<(String, Option<Platform>)>>,
}

impl oxkit_llb::ImageMetaResolver for FakeResolver {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: Option<&Platform>,
    ) -> Result<oxkit_llb::ResolvedImageConfig, Box<dyn std::error::Error + Send + Sync>> {
        self.asked
            .lock()
            .unwrap()
            .push((reference.to_string(), platform.cloned()));
        if reference.contains("missing") {
            return Err("no such image in the store".into());
        }
        Ok(oxkit_llb::ResolvedImageConfig {
            digest: format!("sha256:{}", "d".repeat(64)),
            config: self.config.as_bytes().to_vec(),
        })
    }
}

fn resolved(reference: &str, resolver: &std::sync::Arc<FakeResolver>) -> State {
    image_with(
        reference,
        ImageOptions {
            platform: Some(amd64()),
            meta_resolver: Some(resolver.clone()),
            ..Default::default()
        },
    )
}

#[test]
fn a_resolved_image_config_gives_later_steps_its_env_dir_and_user() {
    let resolver = std::sync::Arc::new(FakeResolver {
        config: r#"{"architecture":"amd64","os":"linux","config":{
            "Env":["PATH=/custom/bin:/bin","FOO=bar"],"WorkingDir":"/app","User":"nobody",
            "Entrypoint":["/entry"],"Cmd":["serve"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        asked: Default::default(),
    });
    let base = resolved("busybox", &resolver);
    assert_eq!(
        *resolver.asked.lock().unwrap(),
        [(
            "docker.io/library/busybox:latest".to_string(),
            Some(amd64())
        )]
    );
    let config = base.image_config().expect("resolved");
    assert_eq!(
        (config.entrypoint.as_slice(), config.cmd.as_slice()),
        (&["/entry".to_string()][..], &["serve".to_string()][..])
    );
    assert_eq!(
        base.image_digest_and_config().map(|r| r.digest.len()),
        Some(71)
    );
    let g = graph(&base.sh("true").root());
    let [img, run] = g.vertices() else { panic!() };
    let Op::Source(s) = &img.op else { panic!() };
    assert_eq!(
        s.identifier, "docker-image://docker.io/library/busybox:latest",
        "the reference is not pinned"
    );
    let Op::Exec(e) = &run.op else { panic!() };
    assert_eq!(e.meta.env, ["PATH=/custom/bin:/bin", "FOO=bar"]);
    assert_eq!(e.meta.cwd, "/app");
    assert_eq!(e.meta.user, "nobody");

    // A step's own settings still win, and an unresolved image has no config.
    let g = graph(
        &resolved("busybox", &resolver)
            .env("FOO", "mine")
            .dir("sub")
            .sh("true")
            .root(),
    );
    let Op::Exec(e) = &g.vertices()[1].op else {
        panic!()
    };
    assert_eq!(e.meta.env, ["PATH=/custom/bin:/bin", "FOO=mine"]);
    assert_eq!(e.meta.cwd, "/app/sub");
    assert!(busybox().image_config().is_none());
}

#[test]
fn an_image_config_that_cannot_be_resolved_fails_at_marshal() {
    let resolver = std::sync::Arc::new(FakeResolver {
        config: "not json",
        asked: Default::default(),
    });
    for (reference, needle) in [
        ("missing", "no such image in the store"),
        ("busybox", "config is not valid"),
    ] {
        let st = resolved(reference, &resolver).sh("true").root();
        let err = st.marshal().unwrap_err();
        assert!(
            matches!(&err, oxkit_llb::LlbError::ImageConfig { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(needle) && text.contains(&format!("library/{reference}")),
            "{text}"
        );
    }
}

#[test]
fn a_seeded_cache_mount_is_written_as_its_input_and_selector() {
    let seed = scratch().file(mkdir("/cache", 0o700));
    let base = busybox();
    let run = base
        .sh("true")
        .mount(
            MountSpec::cache("/c", "owned")
                .seed(&seed)
                .selector("/cache"),
        )
        .mount(MountSpec::cache("/r", "from-root").seed(&base))
        .mount(MountSpec::cache("/s", "scratch").seed(&scratch()))
        .mount(MountSpec::cache("/p", "plain"))
        .root();
    let g = graph(&run);
    let exec = g
        .vertices()
        .iter()
        .find(|v| matches!(v.op, Op::Exec(_)))
        .unwrap();
    let Op::Exec(x) = &exec.op else { panic!() };
    assert_eq!(
        exec.inputs.len(),
        2,
        "the image (shared with the root) and the mkdir"
    );
    let caches: Vec<_> = x.mounts[1..]
        .iter()
        .map(|m| match &m.kind {
            MountKind::Cache {
                id,
                input,
                selector,
                ..
            } => (id.as_str(), *input, selector.as_str(), m.output),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        caches,
        [
            ("owned", Some(1), "/cache", None),
            ("from-root", Some(0), "", None),
            ("scratch", None, "", None),
            ("plain", None, "", None),
        ]
    );
}

/// `attemptUnpackDockerCompatibility` (field 7 of `FileActionCopy`) survives the builder, the
/// wire and parsing in both directions, and `dump_llb` shows it.
#[test]
fn copy_attempt_unpack_round_trips_through_the_wire() {
    let ctx = scratch().file(mkfile("/a.tar", 0o644, "x"));
    let copy = |unpack: bool| {
        busybox().file(FileActions::new().copy(
            &ctx,
            "/a.tar",
            "/opt/",
            CopyOptions {
                attempt_unpack_docker_compatibility: unpack,
                ..Default::default()
            },
        ))
    };
    let flag = |st: &State| -> (bool, bool) {
        let def = st.marshal().unwrap();
        let g = graph(st);
        let v = g.vertex(&g.result().unwrap().digest).unwrap();
        let Op::File(f) = &v.op else { panic!() };
        let FileActionKind::Copy(c) = &f.actions[0].kind else {
            panic!()
        };
        let dump = dump_llb(&def).unwrap();
        let wire = dump
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                v["Op"]["Op"]["file"]["actions"][0]["Action"]["copy"]
                    ["attemptUnpackDockerCompatibility"]
                    .as_bool()
            })
            .next_back()
            .unwrap_or(false);
        (c.attempt_unpack, wire)
    };
    assert_eq!(flag(&copy(true)), (true, true));
    assert_eq!(flag(&copy(false)), (false, false));
    // The flag is part of the op, so of its digest.
    let d = |st: &State| graph(st).result().unwrap().digest.clone();
    assert_ne!(d(&copy(true)), d(&copy(false)));
}
