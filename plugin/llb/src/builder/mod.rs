//! The Rust builder API for definitions, in the spirit of BuildKit's Go `client/llb`: states
//! are immutable values; sources start them, `run`, `file` and `merge` derive new ones, and
//! `marshal` writes the definition that ends at one of them.

mod exec;
mod file;
mod meta;
mod sources;

pub use exec::{ExecState, MountSpec, Run};
pub use file::{
    mkdir, mkfile, rm, symlink, CopyOptions, FileActions, MkdirOptions, MkfileOptions, Owner,
    RmOptions,
};
pub use meta::{ImageMetaResolver, ImageRunConfig, ResolvedImageConfig};
pub use sources::{
    git, git_with, http, http_with, image, image_with, local, local_with, GitOptions, HttpOptions,
    ImageOptions, LocalOptions,
};

use crate::attr;
use crate::convert;
use crate::error::LlbError;
use crate::graph::Definition;
use crate::op::{MergeOp, NetMode, Op, OpMetadata, Platform};
use crate::pb;
use crate::Digest;
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a builder vertex does. Sources stay as identifier + attributes until marshalling, so
/// that a bad reference is reported by `marshal` (with every other problem) instead of panicking;
/// so does an image whose config could not be resolved.
#[derive(Clone, Debug)]
enum NodeOp {
    Source {
        identifier: String,
        attrs: BTreeMap<String, String>,
    },
    Typed(Box<Op>),
    /// An image whose config could not be resolved: `marshal` refuses it with
    /// [`LlbError::ImageConfig`].
    Unresolved {
        reference: String,
        reason: String,
    },
}

/// A vertex under construction; input indices in `op` refer to `inputs`.
#[derive(Debug)]
struct Node {
    op: NodeOp,
    inputs: Vec<Output>,
    platform: Option<Platform>,
    metadata: OpMetadata,
}

/// One output of a builder vertex.
#[derive(Clone, Debug)]
struct Output {
    node: Arc<Node>,
    index: usize,
}

impl Output {
    fn same(&self, other: &Output) -> bool {
        Arc::ptr_eq(&self.node, &other.node) && self.index == other.index
    }
}

/// A filesystem state: the output of some vertex (or scratch), plus the defaults (`env`, working
/// directory, user, network, platform) that later `run` steps on it inherit, and the config of
/// the image it started from when that was resolved ([`ImageOptions::meta_resolver`]).
#[derive(Clone, Debug)]
pub struct State {
    output: Option<Output>,
    env: Vec<(String, String)>,
    dir: String,
    user: String,
    network: NetMode,
    platform: Platform,
    image: Option<Arc<(ResolvedImageConfig, ImageRunConfig)>>,
}

/// An empty filesystem.
pub fn scratch() -> State {
    State {
        output: None,
        env: Vec::new(),
        dir: "/".into(),
        user: String::new(),
        network: NetMode::Sandbox,
        platform: Platform::host(),
        image: None,
    }
}

/// Layers `states` bottom to top (later ones win). Scratch states add nothing; merging a single
/// non-scratch state is that state.
pub fn merge(states: &[State]) -> State {
    let mut inputs: Vec<Output> = Vec::new();
    let mut order = Vec::new();
    for s in states {
        if let Some(o) = &s.output {
            let i = match inputs.iter().position(|x| x.same(o)) {
                Some(i) => i,
                None => {
                    inputs.push(o.clone());
                    inputs.len() - 1
                }
            };
            order.push(i);
        }
    }
    let base = states
        .iter()
        .find(|s| s.output.is_some())
        .cloned()
        .unwrap_or_else(scratch);
    match order.len() {
        0 => scratch(),
        1 => base,
        _ => base.with_node(Node {
            op: NodeOp::Typed(Box::new(Op::Merge(MergeOp { inputs: order }))),
            inputs,
            platform: None,
            metadata: OpMetadata::default(),
        }),
    }
}

impl State {
    /// This state's defaults on a new vertex's output 0.
    fn with_node(&self, node: Node) -> State {
        State {
            output: Some(Output {
                node: Arc::new(node),
                index: 0,
            }),
            ..self.clone()
        }
    }

    /// True for an empty filesystem.
    pub fn is_scratch(&self) -> bool {
        self.output.is_none()
    }

    /// Sets (or replaces) an environment variable for later `run` steps.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> State {
        let (key, value) = (key.into(), value.into());
        match self.env.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.env.push((key, value)),
        }
        self
    }

    /// The value of an environment variable set on this state.
    pub fn get_env(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets the working directory for later steps; a relative path is joined to the current one.
    pub fn dir(mut self, dir: impl AsRef<str>) -> State {
        self.dir = join_path(&self.dir, dir.as_ref());
        self
    }

    /// The working directory.
    pub fn get_dir(&self) -> &str {
        &self.dir
    }

    /// Sets the user (`name`, `uid`, `user:group`) for later `run` steps.
    pub fn user(mut self, user: impl Into<String>) -> State {
        self.user = user.into();
        self
    }

    /// Sets the network mode for later `run` steps.
    pub fn network(mut self, network: NetMode) -> State {
        self.network = network;
        self
    }

    /// The run config of the image this state started from, if [`image_with`] resolved it (with
    /// [`ImageOptions::meta_resolver`]): env, user, working directory, entrypoint and cmd.
    pub fn image_config(&self) -> Option<&ImageRunConfig> {
        self.image.as_deref().map(|(_, run)| run)
    }

    /// The digest the image this state started from resolved to, with its raw config blob, if
    /// [`image_with`] resolved it.
    pub fn image_digest_and_config(&self) -> Option<&ResolvedImageConfig> {
        self.image.as_deref().map(|(resolved, _)| resolved)
    }

    /// Sets the platform for vertices created from this state on (default: the host's).
    pub fn platform(mut self, platform: Platform) -> State {
        self.platform = platform;
        self
    }

    /// Names this state's vertex for progress output (`llb.customname`).
    pub fn custom_name(self, name: impl Into<String>) -> State {
        self.description(attr::DESCRIPTION_CUSTOM_NAME, name)
    }

    /// Adds a description entry to this state's vertex metadata.
    pub fn description(self, key: impl Into<String>, value: impl Into<String>) -> State {
        let (key, value) = (key.into(), value.into());
        self.with_metadata(|m| {
            m.description.insert(key, value);
        })
    }

    /// Makes the solver re-run this state's vertex even when it is cached.
    pub fn ignore_cache(self) -> State {
        self.with_metadata(|m| m.ignore_cache = true)
    }

    /// Metadata is not part of the digest: the changed vertex keeps its id. States made from the
    /// old value keep the old metadata. No effect on scratch.
    fn with_metadata(mut self, f: impl FnOnce(&mut OpMetadata)) -> State {
        if let Some(out) = &self.output {
            let old = &out.node;
            let mut metadata = old.metadata.clone();
            f(&mut metadata);
            let node = Node {
                op: old.op.clone(),
                inputs: old.inputs.clone(),
                platform: old.platform.clone(),
                metadata,
            };
            self.output = Some(Output {
                node: Arc::new(node),
                index: out.index,
            });
        }
        self
    }

    /// Writes the definition whose result is this state: every vertex it depends on, once, inputs
    /// first, then the terminal op. Deterministic: the same graph always gives the same bytes.
    /// The result is validated as `Graph::parse` would, so oxkit never writes what it would reject.
    pub fn marshal(&self) -> Result<Definition, LlbError> {
        let mut m = Marshaller::default();
        let Some(out) = &self.output else {
            return Ok(Definition::default());
        };
        let digest = m.visit(&out.node);
        if let Some(e) = m.failed.take() {
            return Err(e);
        }
        let terminal = pb::Op {
            inputs: vec![pb::Input {
                digest: digest.to_string(),
                index: out.index as i64,
            }],
            ..Default::default()
        };
        let bytes = terminal.encode_to_vec();
        let tdigest = Digest::from_bytes(&bytes);
        // As BuildKit's client: the terminal op's metadata lists the capabilities the definition uses.
        let mut caps: BTreeMap<String, bool> = [
            ("constraints".to_string(), true),
            ("platform".to_string(), true),
        ]
        .into();
        for md in m.metadata.values() {
            if md.ignore_cache {
                caps.insert("meta.ignorecache".into(), true);
            }
            if !md.description.is_empty() {
                caps.insert("meta.description".into(), true);
            }
            if md.export_cache.is_some() {
                caps.insert("meta.exportcache".into(), true);
            }
        }
        m.def.push(bytes);
        m.metadata.insert(
            tdigest.to_string(),
            pb::OpMetadata {
                caps,
                ..Default::default()
            },
        );
        let def = Definition::from_pb(pb::Definition {
            def: m.def,
            metadata: m.metadata,
            source: None,
        });
        def.parse()?;
        Ok(def)
    }
}

#[derive(Default)]
struct Marshaller {
    done: HashMap<*const Node, Digest>,
    seen: std::collections::BTreeSet<Digest>,
    def: Vec<Vec<u8>>,
    metadata: BTreeMap<String, pb::OpMetadata>,
    /// The error of the first [`NodeOp::Unresolved`] met.
    failed: Option<LlbError>,
}

impl Marshaller {
    fn visit(&mut self, node: &Arc<Node>) -> Digest {
        if let Some(d) = self.done.get(&Arc::as_ptr(node)) {
            return d.clone();
        }
        let inputs: Vec<pb::Input> = node
            .inputs
            .iter()
            .map(|o| pb::Input {
                digest: self.visit(&o.node).to_string(),
                index: o.index as i64,
            })
            .collect();
        let kind = match &node.op {
            NodeOp::Source { identifier, attrs } => convert::source_to_pb(identifier, attrs),
            NodeOp::Typed(op) => convert::op_kind_to_pb(op, inputs.len()),
            NodeOp::Unresolved { reference, reason } => {
                self.failed.get_or_insert_with(|| LlbError::ImageConfig {
                    reference: reference.clone(),
                    reason: reason.clone(),
                });
                convert::source_to_pb(&format!("docker-image://{reference}"), &BTreeMap::new())
            }
        };
        let bytes = convert::wrap_op(kind, inputs, node.platform.as_ref()).encode_to_vec();
        let digest = Digest::from_bytes(&bytes);
        if self.seen.insert(digest.clone()) {
            self.def.push(bytes);
        }
        if !node.metadata.is_empty() {
            self.metadata
                .entry(digest.to_string())
                .or_insert_with(|| convert::metadata_to_pb(&node.metadata));
        }
        self.done.insert(Arc::as_ptr(node), digest.clone());
        digest
    }
}

/// `p` made absolute against `base` (`..` and `.` resolved lexically; a trailing `/` kept).
pub fn join_path(base: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{base}/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::join_path;

    #[test]
    fn join_path_is_lexical_and_keeps_trailing_slash() {
        for (base, p, want) in [
            ("/", "a", "/a"),
            ("/src", "b/c", "/src/b/c"),
            ("/src", "/abs", "/abs"),
            ("/src", "../x", "/x"),
            ("/", "../../x", "/x"),
            ("/src", "out/", "/src/out/"),
            ("/src", ".", "/src"),
            ("/", "", "/"),
        ] {
            assert_eq!(join_path(base, p), want, "{base} + {p}");
        }
    }
}
