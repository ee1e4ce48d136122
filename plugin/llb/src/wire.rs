//! Finds fields an op carries that are not in oxkit's copy of the schema. prost skips unknown
//! fields silently; this walks the raw protobuf with a table of the known field numbers of each
//! message, so that an op from a newer LLB library is rejected by name instead of half-read.

/// What a known field holds.
#[derive(Clone, Copy)]
enum Kind {
    /// Any non-message value (varint, string, bytes, packed scalars, fixed).
    Scalar,
    /// A nested message, checked recursively.
    Msg(&'static str),
    /// A message oxkit rejects anyway (build, diff, passthrough ops): not looked into.
    Opaque,
}

use Kind::{Msg, Opaque, Scalar};

/// Known fields per message, from BuildKit's solver/pb/ops.proto.
fn fields(message: &str) -> &'static [(u32, &'static str, Kind)] {
    match message {
        "Op" => &[
            (1, "inputs", Msg("Input")),
            (2, "exec", Msg("ExecOp")),
            (3, "source", Msg("SourceOp")),
            (4, "file", Msg("FileOp")),
            (5, "build", Opaque),
            (6, "merge", Msg("MergeOp")),
            (7, "diff", Opaque),
            (8, "passthrough", Opaque),
            (10, "platform", Msg("Platform")),
            (11, "constraints", Msg("WorkerConstraints")),
        ],
        "Platform" => &[
            (1, "Architecture", Scalar),
            (2, "OS", Scalar),
            (3, "Variant", Scalar),
            (4, "OSVersion", Scalar),
            (5, "OSFeatures", Scalar),
        ],
        "Input" => &[(1, "digest", Scalar), (2, "index", Scalar)],
        "ExecOp" => &[
            (1, "meta", Msg("Meta")),
            (2, "mounts", Msg("Mount")),
            (3, "network", Scalar),
            (4, "security", Scalar),
            (5, "secretenv", Msg("SecretEnv")),
            (6, "cdiDevices", Msg("CDIDevice")),
        ],
        "Meta" => &[
            (1, "args", Scalar),
            (2, "env", Scalar),
            (3, "cwd", Scalar),
            (4, "user", Scalar),
            (5, "proxy_env", Msg("ProxyEnv")),
            (6, "extraHosts", Msg("HostIP")),
            (7, "hostname", Scalar),
            (9, "ulimit", Msg("Ulimit")),
            (10, "cgroupParent", Scalar),
            (11, "removeMountStubsRecursive", Scalar),
            (12, "validExitCodes", Scalar),
        ],
        "HostIP" => &[(1, "Host", Scalar), (2, "IP", Scalar)],
        "Ulimit" => &[
            (1, "Name", Scalar),
            (2, "Soft", Scalar),
            (3, "Hard", Scalar),
        ],
        "SecretEnv" => &[
            (1, "ID", Scalar),
            (2, "name", Scalar),
            (3, "optional", Scalar),
        ],
        "CDIDevice" => &[(1, "name", Scalar), (2, "optional", Scalar)],
        "Mount" => &[
            (1, "input", Scalar),
            (2, "selector", Scalar),
            (3, "dest", Scalar),
            (4, "output", Scalar),
            (5, "readonly", Scalar),
            (6, "mountType", Scalar),
            (19, "TmpfsOpt", Msg("TmpfsOpt")),
            (20, "cacheOpt", Msg("CacheOpt")),
            (21, "secretOpt", Msg("SecretOpt")),
            (22, "SSHOpt", Msg("SSHOpt")),
            (23, "resultID", Scalar),
            (24, "contentCache", Scalar),
        ],
        "TmpfsOpt" => &[(1, "size", Scalar)],
        "CacheOpt" => &[(1, "ID", Scalar), (2, "sharing", Scalar)],
        "SecretOpt" | "SSHOpt" => &[
            (1, "ID", Scalar),
            (2, "uid", Scalar),
            (3, "gid", Scalar),
            (4, "mode", Scalar),
            (5, "optional", Scalar),
        ],
        "SourceOp" => &[
            (1, "identifier", Scalar),
            (2, "attrs", Msg("StringMapEntry")),
        ],
        "StringMapEntry" => &[(1, "key", Scalar), (2, "value", Scalar)],
        "ProxyEnv" => &[
            (1, "http_proxy", Scalar),
            (2, "https_proxy", Scalar),
            (3, "ftp_proxy", Scalar),
            (4, "no_proxy", Scalar),
            (5, "all_proxy", Scalar),
        ],
        "WorkerConstraints" => &[(1, "filter", Scalar)],
        "FileOp" => &[(2, "actions", Msg("FileAction"))],
        "FileAction" => &[
            (1, "input", Scalar),
            (2, "secondaryInput", Scalar),
            (3, "output", Scalar),
            (4, "copy", Msg("FileActionCopy")),
            (5, "mkfile", Msg("FileActionMkFile")),
            (6, "mkdir", Msg("FileActionMkDir")),
            (7, "rm", Msg("FileActionRm")),
            (8, "symlink", Msg("FileActionSymlink")),
        ],
        "FileActionCopy" => &[
            (1, "src", Scalar),
            (2, "dest", Scalar),
            (3, "owner", Msg("ChownOpt")),
            (4, "mode", Scalar),
            (5, "followSymlink", Scalar),
            (6, "dirCopyContents", Scalar),
            (7, "attemptUnpackDockerCompatibility", Scalar),
            (8, "createDestPath", Scalar),
            (9, "allowWildcard", Scalar),
            (10, "allowEmptyWildcard", Scalar),
            (11, "timestamp", Scalar),
            (12, "include_patterns", Scalar),
            (13, "exclude_patterns", Scalar),
            (14, "alwaysReplaceExistingDestPaths", Scalar),
            (15, "modeStr", Scalar),
            (16, "required_paths", Scalar),
        ],
        "FileActionMkFile" => &[
            (1, "path", Scalar),
            (2, "mode", Scalar),
            (3, "data", Scalar),
            (4, "owner", Msg("ChownOpt")),
            (5, "timestamp", Scalar),
        ],
        "FileActionMkDir" => &[
            (1, "path", Scalar),
            (2, "mode", Scalar),
            (3, "makeParents", Scalar),
            (4, "owner", Msg("ChownOpt")),
            (5, "timestamp", Scalar),
        ],
        "FileActionRm" => &[
            (1, "path", Scalar),
            (2, "allowNotFound", Scalar),
            (3, "allowWildcard", Scalar),
        ],
        "FileActionSymlink" => &[
            (1, "oldpath", Scalar),
            (2, "newpath", Scalar),
            (3, "owner", Msg("ChownOpt")),
            (4, "timestamp", Scalar),
        ],
        "ChownOpt" => &[(1, "user", Msg("UserOpt")), (2, "group", Msg("UserOpt"))],
        "UserOpt" => &[(1, "byName", Msg("NamedUserOpt")), (2, "byID", Scalar)],
        "NamedUserOpt" => &[(1, "name", Scalar), (2, "input", Scalar)],
        "MergeOp" => &[(1, "inputs", Msg("MergeInput"))],
        "MergeInput" => &[(1, "input", Scalar)],
        _ => &[],
    }
}

/// The first field of `bytes` (a `message`) or of its nested messages that the schema does not
/// know, as `Message.path.field N`. `None` when all are known, or when the bytes are malformed
/// (decoding reports that).
pub(crate) fn unknown_field(message: &'static str, bytes: &[u8]) -> Option<String> {
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        let key = r.varint()?;
        let (number, wire_type) = ((key >> 3) as u32, (key & 7) as u8);
        let value = r.skip(wire_type)?;
        match fields(message).iter().find(|(n, _, _)| *n == number) {
            None => return Some(format!("{message}.field {number}")),
            Some((_, name, Msg(inner))) if wire_type == 2 => {
                if let Some(path) = unknown_field(inner, value) {
                    let rest = path.split_once('.').map_or(path.as_str(), |(_, r)| r);
                    return Some(format!("{message}.{name}.{rest}"));
                }
            }
            Some(_) => {}
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (v, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(v)
    }

    /// Skips one value of `wire_type`, returning its bytes (the payload for length-delimited).
    fn skip(&mut self, wire_type: u8) -> Option<&'a [u8]> {
        match wire_type {
            0 => self.varint().map(|_| &[][..]),
            1 => self.take(8),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                self.take(n)
            }
            5 => self.take(4),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unknown_field;
    use crate::pb;
    use prost::Message;

    fn chown() -> Option<pb::ChownOpt> {
        Some(pb::ChownOpt {
            user: Some(pb::UserOpt {
                user: Some(pb::user_opt::User::ByName(pb::NamedUserOpt {
                    name: "u".into(),
                    input: 1,
                })),
            }),
            group: Some(pb::UserOpt {
                user: Some(pb::user_opt::User::ById(7)),
            }),
        })
    }

    /// Every field of every message the table covers, set to a non-default value, is known:
    /// the table and proto/ops.proto agree.
    #[test]
    fn table_knows_every_field_of_the_schema() {
        let s = || "x".to_string();
        let exec = pb::ExecOp {
            meta: Some(pb::Meta {
                args: vec![s()],
                env: vec![s()],
                cwd: s(),
                user: s(),
                proxy_env: Some(pb::ProxyEnv {
                    http_proxy: s(),
                    https_proxy: s(),
                    ftp_proxy: s(),
                    no_proxy: s(),
                    all_proxy: s(),
                }),
                extra_hosts: vec![pb::HostIp { host: s(), ip: s() }],
                hostname: s(),
                ulimit: vec![pb::Ulimit {
                    name: s(),
                    soft: 1,
                    hard: 2,
                }],
                cgroup_parent: s(),
                remove_mount_stubs_recursive: true,
                valid_exit_codes: vec![1, 2],
            }),
            mounts: vec![pb::Mount {
                input: 1,
                selector: s(),
                dest: s(),
                output: 1,
                readonly: true,
                mount_type: 1,
                tmpfs_opt: Some(pb::TmpfsOpt { size: 1 }),
                cache_opt: Some(pb::CacheOpt {
                    id: s(),
                    sharing: 1,
                }),
                secret_opt: Some(pb::SecretOpt {
                    id: s(),
                    uid: 1,
                    gid: 1,
                    mode: 1,
                    optional: true,
                }),
                ssh_opt: Some(pb::SshOpt {
                    id: s(),
                    uid: 1,
                    gid: 1,
                    mode: 1,
                    optional: true,
                }),
                result_id: s(),
                content_cache: 1,
            }],
            network: 1,
            security: 1,
            secretenv: vec![pb::SecretEnv {
                id: s(),
                name: s(),
                optional: true,
            }],
            cdi_devices: vec![pb::CdiDevice {
                name: s(),
                optional: true,
            }],
        };
        let file = pb::FileOp {
            actions: vec![
                pb::FileAction {
                    input: 1,
                    secondary_input: 1,
                    output: 1,
                    action: Some(pb::file_action::Action::Copy(pb::FileActionCopy {
                        src: s(),
                        dest: s(),
                        owner: chown(),
                        mode: 1,
                        follow_symlink: true,
                        dir_copy_contents: true,
                        attempt_unpack_docker_compatibility: true,
                        create_dest_path: true,
                        allow_wildcard: true,
                        allow_empty_wildcard: true,
                        timestamp: 1,
                        include_patterns: vec![s()],
                        exclude_patterns: vec![s()],
                        always_replace_existing_dest_paths: true,
                        mode_str: s(),
                        required_paths: vec![s()],
                    })),
                },
                pb::FileAction {
                    action: Some(pb::file_action::Action::Mkfile(pb::FileActionMkFile {
                        path: s(),
                        mode: 1,
                        data: vec![1],
                        owner: chown(),
                        timestamp: 1,
                    })),
                    ..Default::default()
                },
                pb::FileAction {
                    action: Some(pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                        path: s(),
                        mode: 1,
                        make_parents: true,
                        owner: chown(),
                        timestamp: 1,
                    })),
                    ..Default::default()
                },
                pb::FileAction {
                    action: Some(pb::file_action::Action::Rm(pb::FileActionRm {
                        path: s(),
                        allow_not_found: true,
                        allow_wildcard: true,
                    })),
                    ..Default::default()
                },
                pb::FileAction {
                    action: Some(pb::file_action::Action::Symlink(pb::FileActionSymlink {
                        oldpath: s(),
                        newpath: s(),
                        owner: chown(),
                        timestamp: 1,
                    })),
                    ..Default::default()
                },
            ],
        };
        let common = |op| pb::Op {
            inputs: vec![pb::Input {
                digest: s(),
                index: 1,
            }],
            op: Some(op),
            platform: Some(pb::Platform {
                architecture: s(),
                os: s(),
                variant: s(),
                os_version: s(),
                os_features: vec![s()],
            }),
            constraints: Some(pb::WorkerConstraints { filter: vec![s()] }),
        };
        for op in [
            pb::op::Op::Exec(exec),
            pb::op::Op::File(file),
            pb::op::Op::Source(pb::SourceOp {
                identifier: s(),
                attrs: [(s(), s())].into(),
            }),
            pb::op::Op::Merge(pb::MergeOp {
                inputs: vec![pb::MergeInput { input: 1 }],
            }),
            pb::op::Op::Diff(pb::DiffOp {
                lower: Some(pb::LowerDiffInput { input: 1 }),
                upper: None,
            }),
        ] {
            let bytes = common(op).encode_to_vec();
            assert_eq!(unknown_field("Op", &bytes), None);
        }
    }

    #[test]
    fn malformed_bytes_are_left_to_the_decoder() {
        assert_eq!(unknown_field("Op", &[0x0a, 0x05, 0x01]), None);
    }
}
