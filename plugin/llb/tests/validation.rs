//! Every way a definition can be rejected, with the message a user sees.

use oxkit_llb::pb;
use oxkit_llb::{Definition, Digest, Graph, LlbError};
use prost::Message;

fn image() -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: "docker-image://docker.io/library/busybox:latest".into(),
            attrs: Default::default(),
        })),
        platform: Some(pb::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        }),
        constraints: Some(pb::WorkerConstraints::default()),
        ..Default::default()
    }
}

fn digest(op: &pb::Op) -> Digest {
    Digest::from_bytes(&op.encode_to_vec())
}

fn input(op: &pb::Op, index: i64) -> pb::Input {
    pb::Input {
        digest: digest(op).to_string(),
        index,
    }
}

fn terminal(op: &pb::Op) -> pb::Op {
    pb::Op {
        inputs: vec![input(op, 0)],
        ..Default::default()
    }
}

fn def(ops: &[&pb::Op]) -> pb::Definition {
    pb::Definition {
        def: ops.iter().map(|o| o.encode_to_vec()).collect(),
        ..Default::default()
    }
}

/// `base` -> `op` -> terminal.
fn parse_on_image(op: pb::Op) -> Result<Graph, LlbError> {
    let img = image();
    let op = pb::Op {
        inputs: if op.inputs.is_empty() {
            vec![input(&img, 0)]
        } else {
            op.inputs
        },
        ..op
    };
    Graph::parse(&def(&[&img, &op, &terminal(&op)]))
}

fn exec(e: pb::ExecOp) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::Exec(e)),
        ..Default::default()
    }
}

fn meta(args: &[&str]) -> Option<pb::Meta> {
    Some(pb::Meta {
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: "/".into(),
        ..Default::default()
    })
}

fn root() -> pb::Mount {
    pb::Mount {
        dest: "/".into(),
        ..Default::default()
    }
}

fn file(actions: Vec<pb::FileAction>) -> pb::Op {
    pb::Op {
        op: Some(pb::op::Op::File(pb::FileOp { actions })),
        ..Default::default()
    }
}

fn mkdir(input: i64, output: i64, path: &str) -> pb::FileAction {
    pb::FileAction {
        input,
        secondary_input: -1,
        output,
        action: Some(pb::file_action::Action::Mkdir(pb::FileActionMkDir {
            path: path.into(),
            mode: 0o755,
            timestamp: -1,
            ..Default::default()
        })),
    }
}

/// A copy action; `mode` 0 in `c` means "not set" (-1 on the wire).
fn copy(mut c: pb::FileActionCopy) -> pb::FileAction {
    c.src = "/a".into();
    c.dest = "/b".into();
    if c.mode == 0 {
        c.mode = -1;
    }
    c.timestamp = -1;
    pb::FileAction {
        input: 0,
        secondary_input: 0,
        output: 0,
        action: Some(pb::file_action::Action::Copy(c)),
    }
}

#[track_caller]
fn assert_err(r: Result<Graph, LlbError>, want: &str) {
    match r {
        Ok(_) => panic!("expected an error containing '{want}'"),
        Err(e) => assert!(
            e.to_string().contains(want),
            "'{e}' should contain '{want}'"
        ),
    }
}

#[test]
fn undecodable_bytes() {
    let err = Definition::from_bytes(&[0x0a, 0xff]).unwrap_err();
    assert!(matches!(err, LlbError::DecodeDefinition(_)));
    assert!(err.to_string().contains("not a valid LLB Definition"));

    let d = pb::Definition {
        def: vec![vec![0x0a, 0x05, 0x01]],
        ..Default::default()
    };
    let err = Graph::parse(&d).unwrap_err();
    assert!(matches!(err, LlbError::DecodeOp { index: 0, .. }), "{err}");
    assert!(err.to_string().contains("entry #0 of the build definition"));
}

#[test]
fn empty_definition_is_an_empty_graph() {
    let g = Graph::parse(&pb::Definition::default()).unwrap();
    assert!(g.result().is_none() && g.vertices().is_empty() && g.terminal().is_none());
}

#[test]
fn last_op_must_be_a_terminal_op() {
    let img = image();
    assert_err(Graph::parse(&def(&[&img])), "must be the terminal op: no operation and exactly one input naming the result; it is a source op");
    let two = pb::Op {
        inputs: vec![input(&img, 0), input(&img, 0)],
        ..Default::default()
    };
    assert_err(Graph::parse(&def(&[&img, &two])), "it has 2 inputs");
}

#[test]
fn inputs_must_be_in_the_definition() {
    let img = image();
    let other = pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: "local://context".into(),
            attrs: Default::default(),
        })),
        ..Default::default()
    };
    assert_err(
        Graph::parse(&def(&[&img, &terminal(&other)])),
        &format!(
            "terminal op '{}': input #0 refers to '{}', which is not an op of this definition",
            digest(&terminal(&other)),
            digest(&other)
        ),
    );
    let e = exec(pb::ExecOp {
        meta: meta(&["true"]),
        mounts: vec![root()],
        ..Default::default()
    });
    let e = pb::Op {
        inputs: vec![input(&other, 0)],
        ..e
    };
    assert_err(Graph::parse(&def(&[&img, &e, &terminal(&e)])), "exec op");
    let bad = pb::Op {
        inputs: vec![pb::Input {
            digest: "not-a-digest".into(),
            index: 0,
        }],
        ..Default::default()
    };
    assert_err(
        Graph::parse(&def(&[&img, &bad])),
        "refers to 'not-a-digest'",
    );
}

#[test]
fn input_output_indices_must_exist() {
    let img = image();
    let t = pb::Op {
        inputs: vec![input(&img, 1)],
        ..Default::default()
    };
    let err = Graph::parse(&def(&[&img, &t])).unwrap_err();
    assert!(
        matches!(
            err,
            LlbError::OutputOutOfRange {
                index: 1,
                outputs: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("asks for output 1 of"));
    let t = pb::Op {
        inputs: vec![input(&img, -1)],
        ..Default::default()
    };
    assert_err(Graph::parse(&def(&[&img, &t])), "negative output index -1");
}

#[test]
fn metadata_must_name_an_op() {
    let img = image();
    let mut d = def(&[&img, &terminal(&img)]);
    d.metadata
        .insert("sha256:0000".into(), pb::OpMetadata::default());
    assert_err(
        Graph::parse(&d),
        "metadata for 'sha256:0000': no op in the definition has this digest",
    );
    let mut d = def(&[&img, &terminal(&img)]);
    d.metadata.insert(
        digest(&img).to_string(),
        pb::OpMetadata {
            linux_resources: Some(Default::default()),
            ..Default::default()
        },
    );
    assert_err(
        Graph::parse(&d),
        "linux_resources (per-step resource limits) are not supported",
    );
}

#[test]
fn unsupported_op_kinds() {
    let img = image();
    for (kind, op) in [
        ("build", pb::op::Op::Build(pb::BuildOp::default())),
        ("diff", pb::op::Op::Diff(pb::DiffOp::default())),
        (
            "passthrough",
            pb::op::Op::Passthrough(pb::PassthroughOp::default()),
        ),
    ] {
        let o = pb::Op {
            inputs: vec![input(&img, 0)],
            op: Some(op),
            ..Default::default()
        };
        let err = parse_on_image(o).unwrap_err();
        assert!(
            matches!(err, LlbError::UnsupportedOp { kind: k, .. } if k == kind),
            "{err}"
        );
    }
    // An op without an operation in the middle of the graph.
    let empty = pb::Op {
        inputs: vec![input(&img, 0)],
        platform: Some(Default::default()),
        ..Default::default()
    };
    assert_err(parse_on_image(empty), "empty ops are not supported");
}

#[test]
fn unsupported_exec_features_are_named() {
    let base = pb::ExecOp {
        meta: meta(&["true"]),
        mounts: vec![root()],
        ..Default::default()
    };
    let cases: Vec<(pb::ExecOp, &str)> = vec![
        (
            pb::ExecOp {
                security: pb::SecurityMode::Insecure as i32,
                ..base.clone()
            },
            "security mode INSECURE (privileged run) is not supported",
        ),
        (
            pb::ExecOp {
                cdi_devices: vec![pb::CdiDevice {
                    name: "nvidia.com/gpu=all".into(),
                    optional: false,
                }],
                ..base.clone()
            },
            "CDI devices",
        ),
        (
            pb::ExecOp {
                meta: Some(pb::Meta {
                    cgroup_parent: "/x".into(),
                    ..meta(&["true"]).unwrap()
                }),
                ..base.clone()
            },
            "meta.cgroupParent ('/x') is not supported",
        ),
        (
            pb::ExecOp {
                mounts: vec![
                    root(),
                    pb::Mount {
                        input: -1,
                        dest: "/ssh".into(),
                        mount_type: pb::MountType::Ssh as i32,
                        ..Default::default()
                    },
                ],
                ..base.clone()
            },
            "mount type SSH is not supported by oxkit",
        ),
        (
            pb::ExecOp {
                mounts: vec![pb::Mount {
                    result_id: "r1".into(),
                    ..root()
                }],
                ..base.clone()
            },
            "mount at '/': resultID (mounting a gateway result) is not supported",
        ),
        (
            pb::ExecOp {
                mounts: vec![
                    root(),
                    pb::Mount {
                        input: -1,
                        dest: "/c".into(),
                        output: 1,
                        mount_type: pb::MountType::Cache as i32,
                        ..Default::default()
                    },
                ],
                ..base.clone()
            },
            "an output from a cache mount is not supported",
        ),
    ];
    for (e, want) in cases {
        assert_err(parse_on_image(exec(e)), want);
    }
    let constrained = pb::Op {
        constraints: Some(pb::WorkerConstraints {
            filter: vec!["os==linux".into()],
        }),
        ..exec(base)
    };
    assert_err(parse_on_image(constrained), "worker constraints");
}

#[test]
fn invalid_exec_ops_are_explained() {
    let base = pb::ExecOp {
        meta: meta(&["true"]),
        mounts: vec![root()],
        ..Default::default()
    };
    let cases: Vec<(pb::ExecOp, &str)> = vec![
        (
            pb::ExecOp {
                meta: None,
                ..base.clone()
            },
            "has no meta",
        ),
        (
            pb::ExecOp {
                meta: meta(&[]),
                ..base.clone()
            },
            "has no args (nothing to run)",
        ),
        (
            pb::ExecOp {
                mounts: vec![],
                ..base.clone()
            },
            "exactly one root mount",
        ),
        (
            pb::ExecOp {
                mounts: vec![pb::Mount { input: 3, ..root() }],
                ..base.clone()
            },
            "mount at '/' refers to input 3, but the op has 1 input(s)",
        ),
        (
            pb::ExecOp {
                mounts: vec![
                    root(),
                    pb::Mount {
                        dest: "rel".into(),
                        output: 1,
                        ..root()
                    },
                ],
                ..base.clone()
            },
            "must be an absolute path",
        ),
        (
            pb::ExecOp {
                mounts: vec![
                    root(),
                    pb::Mount {
                        dest: "/x".into(),
                        output: 0,
                        ..root()
                    },
                ],
                ..base.clone()
            },
            "without gaps or repeats",
        ),
        (
            pb::ExecOp {
                mounts: vec![
                    root(),
                    pb::Mount {
                        dest: "/x".into(),
                        output: 2,
                        ..root()
                    },
                ],
                ..base.clone()
            },
            "without gaps or repeats",
        ),
        (
            pb::ExecOp {
                mounts: vec![pb::Mount {
                    mount_type: 9,
                    ..root()
                }],
                ..base.clone()
            },
            "mountType has unknown value 9",
        ),
        (
            pb::ExecOp {
                network: 7,
                ..base.clone()
            },
            "network has unknown value 7",
        ),
        (
            pb::ExecOp {
                mounts: vec![pb::Mount {
                    cache_opt: Some(Default::default()),
                    ..root()
                }],
                ..base.clone()
            },
            "a BIND mount cannot carry cacheOpt",
        ),
        (
            pb::ExecOp {
                mounts: vec![
                    root(),
                    pb::Mount {
                        input: -1,
                        dest: "/s".into(),
                        mount_type: pb::MountType::Secret as i32,
                        ..Default::default()
                    },
                ],
                ..base.clone()
            },
            "a secret mount needs secretOpt.ID",
        ),
    ];
    for (e, want) in cases {
        assert_err(parse_on_image(exec(e)), want);
    }
}

#[test]
fn unsupported_and_invalid_file_actions() {
    let cases: Vec<(Vec<pb::FileAction>, &str)> = vec![
        (vec![], "needs at least one action"),
        (vec![copy(pb::FileActionCopy { mode_str: "u+x".into(), ..Default::default() })], "modeStr 'u+x' (symbolic chmod) is not supported"),
        (vec![copy(pb::FileActionCopy { required_paths: vec!["/a".into()], ..Default::default() })], "required_paths"),
        (vec![copy(pb::FileActionCopy { mode: -5, ..Default::default() })], "invalid copy mode -5"),
        (vec![mkdir(0, 0, "relative")], "path 'relative' must be absolute"),
        // index 1 with one input is action #0's result: only valid from action #1 on.
        (vec![mkdir(1, 0, "/a")], "action #0 refers to index 1, which is neither one of the op's 1 input(s) nor an earlier action"),
        (vec![mkdir(0, -1, "/a"), mkdir(3, 0, "/b")], "action #1 refers to index 3"),
        (vec![mkdir(0, 0, "/a"), mkdir(1, 0, "/b")], "without gaps or repeats"),
        (vec![pb::FileAction { input: 0, secondary_input: -1, output: 0, action: None }], "action #0 has no action"),
        (vec![pb::FileAction { secondary_input: 0, ..mkdir(0, 0, "/a") }], "only copy uses secondaryInput"),
    ];
    for (actions, want) in cases {
        assert_err(parse_on_image(file(actions)), want);
    }
    // Chained actions referring to earlier ones are fine.
    parse_on_image(file(vec![
        mkdir(0, -1, "/a"),
        mkdir(1, -1, "/b"),
        mkdir(2, 0, "/c"),
    ]))
    .unwrap();
}

#[test]
fn source_problems_name_the_op() {
    let src = |id: &str, attrs: &[(&str, &str)]| pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: id.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })),
        ..Default::default()
    };
    for (op, want) in [
        (
            src("oci-layout://x", &[]),
            "scheme 'oci-layout' is not supported",
        ),
        (
            src(
                "docker-image://busybox",
                &[("image.recordtype", "internal")],
            ),
            "attribute 'image.recordtype' is not supported for docker-image sources",
        ),
        (
            src("local://ctx", &[("local.includepattern", "[")]),
            "expected a JSON array of strings",
        ),
    ] {
        let d = digest(&op);
        let err = Graph::parse(&def(&[&op, &terminal(&op)])).unwrap_err();
        assert!(matches!(err, LlbError::Source { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!("source op '{d}': ")),
            "{err}"
        );
        assert!(err.to_string().contains(want), "{err}");
    }
    let with_input = pb::Op {
        inputs: vec![input(&image(), 0)],
        ..src("local://ctx", &[])
    };
    assert_err(
        Graph::parse(&def(&[&image(), &with_input, &terminal(&with_input)])),
        "a source op takes no inputs",
    );
}

#[test]
fn merge_inputs_must_exist() {
    let m = pb::Op {
        op: Some(pb::op::Op::Merge(pb::MergeOp {
            inputs: vec![pb::MergeInput { input: 2 }],
        })),
        ..Default::default()
    };
    assert_err(parse_on_image(m), "merge input refers to input 2");
    let m = pb::Op {
        op: Some(pb::op::Op::Merge(pb::MergeOp::default())),
        ..Default::default()
    };
    assert_err(parse_on_image(m), "needs at least one input");
}

#[test]
fn unreachable_ops_are_not_part_of_the_graph() {
    let img = image();
    let unsupported = pb::Op {
        op: Some(pb::op::Op::Diff(Default::default())),
        ..Default::default()
    };
    let g = Graph::parse(&def(&[&unsupported, &img, &terminal(&img)])).unwrap();
    assert_eq!(g.vertices().len(), 1);
}
