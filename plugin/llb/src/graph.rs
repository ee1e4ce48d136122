//! A parsed, validated build graph: every op decoded, typed, and checked; inputs resolved by
//! digest and output index; vertices in dependency order; the result the terminal op names.

use crate::convert;
use crate::error::LlbError;
use crate::op::{Op, OpMetadata, Platform};
use crate::pb;
use crate::Digest;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

/// A build definition as it travels: BuildKit's `pb.Definition` (marshalled ops plus
/// metadata). Parse it with [`Definition::parse`] before doing anything with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Definition {
    pb: pb::Definition,
}

impl Definition {
    /// Decodes the wire bytes of a `pb.Definition` (what `llb.WriteTo` and `buildctl` read and write).
    pub fn from_bytes(bytes: &[u8]) -> Result<Definition, LlbError> {
        pb::Definition::decode(bytes)
            .map(|pb| Definition { pb })
            .map_err(LlbError::DecodeDefinition)
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.pb.encode_to_vec()
    }

    /// Wraps a wire definition.
    pub fn from_pb(pb: pb::Definition) -> Definition {
        Definition { pb }
    }

    /// The wire definition.
    pub fn as_pb(&self) -> &pb::Definition {
        &self.pb
    }

    /// Validates and types the definition.
    pub fn parse(&self) -> Result<Graph, LlbError> {
        Graph::parse(&self.pb)
    }
}

/// An edge: output `output` of the vertex `digest`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    /// The producing vertex.
    pub digest: Digest,
    /// Which of its outputs.
    pub output: usize,
}

/// One vertex of the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vertex {
    /// Its id: the digest of its marshalled op.
    pub digest: Digest,
    /// What it does. Input indices in the op refer to `inputs`.
    pub op: Op,
    /// Its inputs.
    pub inputs: Vec<Edge>,
    /// The platform the op targets, if it names one.
    pub platform: Option<Platform>,
    /// Per-vertex metadata (empty when the definition has none for it).
    pub metadata: OpMetadata,
}

impl Vertex {
    /// A human name for progress and errors: `llb.customname`, else a short description of the op.
    pub fn name(&self) -> String {
        if let Some(n) = self.metadata.custom_name() {
            return n.to_string();
        }
        match &self.op {
            Op::Source(s) => s.identifier.clone(),
            Op::Exec(e) => e.meta.args.join(" "),
            Op::File(f) => {
                let names: Vec<String> = f
                    .actions
                    .iter()
                    .map(|a| match &a.kind {
                        crate::op::FileActionKind::Copy(c) => format!("copy {} {}", c.src, c.dest),
                        crate::op::FileActionKind::Mkfile(m) => format!("mkfile {}", m.path),
                        crate::op::FileActionKind::Mkdir(m) => format!("mkdir {}", m.path),
                        crate::op::FileActionKind::Rm(r) => format!("rm {}", r.path),
                        crate::op::FileActionKind::Symlink(s) => {
                            format!("symlink {} -> {}", s.newpath, s.oldpath)
                        }
                    })
                    .collect();
                names.join(", ")
            }
            Op::Merge(m) => format!("merge of {} inputs", m.inputs.len()),
        }
    }
}

/// A validated build graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// Reachable vertices, each after all of its inputs.
    vertices: Vec<Vertex>,
    by_digest: BTreeMap<Digest, usize>,
    result: Option<Edge>,
    terminal: Option<(Digest, OpMetadata)>,
}

impl Graph {
    /// Validates a wire definition and builds the typed graph.
    ///
    /// Follows BuildKit: each op's digest is the SHA-256 of its marshalled bytes; the last entry
    /// is the terminal op (no operation, one input naming the result); only ops reachable from it
    /// are part of the graph. Unlike BuildKit, anything oxkit cannot execute as written is an
    /// error: unknown fields, unsupported ops, fields and source attributes.
    /// An empty definition is an empty graph with no result.
    pub fn parse(def: &pb::Definition) -> Result<Graph, LlbError> {
        let mut ops: BTreeMap<Digest, pb::Op> = BTreeMap::new();
        let mut last = None;
        for (index, bytes) in def.def.iter().enumerate() {
            let digest = Digest::from_bytes(bytes);
            let op = pb::Op::decode(bytes.as_slice()).map_err(|source| LlbError::DecodeOp {
                index,
                digest: digest.clone(),
                source,
            })?;
            // prost drops fields it does not know; look for them in the raw bytes.
            if let Some(field) = crate::wire::unknown_field("Op", bytes) {
                return Err(LlbError::UnknownFields { digest, field });
            }
            ops.insert(digest.clone(), op);
            last = Some(digest);
        }
        for key in def.metadata.keys() {
            if !ops.keys().any(|d| d.as_str() == key) {
                return Err(LlbError::Metadata {
                    digest: key.clone(),
                    problem: "no op in the definition has this digest".into(),
                });
            }
        }
        let Some(terminal) = last else {
            return Ok(Graph::default());
        };

        let term_op = &ops[&terminal];
        if term_op.op.is_some() {
            return Err(LlbError::BadTerminal {
                digest: terminal,
                problem: format!("it is a {} op", convert::pb_kind(term_op)),
            });
        }
        if term_op.inputs.len() != 1 {
            return Err(LlbError::BadTerminal {
                digest: terminal,
                problem: format!("it has {} inputs", term_op.inputs.len()),
            });
        }
        let metadata_of = |d: &Digest| -> Result<OpMetadata, LlbError> {
            def.metadata
                .get(d.as_str())
                .map(|m| convert::metadata_from_pb(d.as_str(), m))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let term_meta = metadata_of(&terminal)?;

        // Type every reachable op, inputs first.
        let mut typed: BTreeMap<Digest, (Op, Option<Platform>, Vec<Edge>)> = BTreeMap::new();
        let root = resolve_input("terminal", &terminal, 0, &term_op.inputs[0], &ops)?;
        let order = topo_order(&root.digest, |d| {
            let op = &ops[d];
            let (typed_op, platform) = convert::op_from_pb(d, op)?;
            let kind = typed_op.kind();
            let mut edges = Vec::with_capacity(op.inputs.len());
            for (i, input) in op.inputs.iter().enumerate() {
                edges.push(resolve_input(kind, d, i, input, &ops)?);
            }
            let deps = edges.iter().map(|e| e.digest.clone()).collect();
            typed.insert(d.clone(), (typed_op, platform, edges));
            Ok(deps)
        })?;

        // Check output indices now that every target is typed.
        let outputs: BTreeMap<&Digest, usize> = typed
            .iter()
            .map(|(d, (op, _, _))| (d, op.num_outputs()))
            .collect();
        let check =
            |kind: &'static str, from: &Digest, i: usize, e: &Edge| -> Result<(), LlbError> {
                let outputs = outputs[&e.digest];
                if e.output >= outputs {
                    return Err(LlbError::OutputOutOfRange {
                        kind,
                        digest: from.clone(),
                        input: i,
                        target: e.digest.clone(),
                        index: e.output as i64,
                        outputs,
                    });
                }
                Ok(())
            };
        check("terminal", &terminal, 0, &root)?;
        for (d, (op, _, inputs)) in &typed {
            for (i, e) in inputs.iter().enumerate() {
                check(op.kind(), d, i, e)?;
            }
        }
        drop(outputs);

        let mut vertices = Vec::with_capacity(order.len());
        let mut by_digest = BTreeMap::new();
        for d in order {
            let (op, platform, inputs) = typed.remove(&d).expect("every ordered vertex was typed");
            let metadata = metadata_of(&d)?;
            by_digest.insert(d.clone(), vertices.len());
            vertices.push(Vertex {
                digest: d,
                op,
                inputs,
                platform,
                metadata,
            });
        }
        Ok(Graph {
            vertices,
            by_digest,
            result: Some(root),
            terminal: Some((terminal, term_meta)),
        })
    }

    /// Decodes and validates wire bytes in one step.
    pub fn from_bytes(bytes: &[u8]) -> Result<Graph, LlbError> {
        Definition::from_bytes(bytes)?.parse()
    }

    /// The vertices reachable from the result, each after all of its inputs.
    pub fn vertices(&self) -> &[Vertex] {
        &self.vertices
    }

    /// The vertex with this digest.
    pub fn vertex(&self, digest: &Digest) -> Option<&Vertex> {
        self.by_digest.get(digest).map(|&i| &self.vertices[i])
    }

    /// The build's result; `None` for an empty definition (nothing to build).
    pub fn result(&self) -> Option<&Edge> {
        self.result.as_ref()
    }

    /// Digest and metadata of the terminal op, if the definition has one.
    pub fn terminal(&self) -> Option<(&Digest, &OpMetadata)> {
        self.terminal.as_ref().map(|(d, m)| (d, m))
    }
}

fn resolve_input(
    kind: &'static str,
    from: &Digest,
    i: usize,
    input: &pb::Input,
    ops: &BTreeMap<Digest, pb::Op>,
) -> Result<Edge, LlbError> {
    let missing = || LlbError::MissingInput {
        kind,
        digest: from.clone(),
        input: i,
        missing: input.digest.clone(),
    };
    let digest = Digest::parse(&input.digest).ok_or_else(missing)?;
    if !ops.contains_key(&digest) {
        return Err(missing());
    }
    let output = usize::try_from(input.index).map_err(|_| LlbError::InvalidOp {
        kind,
        digest: from.clone(),
        problem: format!("input #{i} has negative output index {}", input.index),
    })?;
    Ok(Edge { digest, output })
}

/// Depth-first post-order from `root`: each node after all of its dependencies.
/// `visit` is called once per node, when it is first reached, and returns its dependencies.
/// Iterative, so long chains cannot overflow the stack.
pub(crate) fn topo_order(
    root: &Digest,
    mut visit: impl FnMut(&Digest) -> Result<Vec<Digest>, LlbError>,
) -> Result<Vec<Digest>, LlbError> {
    let mut order = Vec::new();
    let mut done: BTreeSet<Digest> = BTreeSet::new();
    let mut on_path: BTreeSet<Digest> = BTreeSet::new();
    // (node, its dependencies, next dependency to look at)
    let mut stack: Vec<(Digest, Vec<Digest>, usize)> = Vec::new();
    let deps = visit(root)?;
    on_path.insert(root.clone());
    stack.push((root.clone(), deps, 0));
    while let Some((node, deps, next)) = stack.last_mut() {
        if let Some(dep) = deps.get(*next).cloned() {
            *next += 1;
            if done.contains(&dep) {
                continue;
            }
            if on_path.contains(&dep) {
                return Err(LlbError::Cycle { digest: dep });
            }
            let dep_deps = visit(&dep)?;
            on_path.insert(dep.clone());
            stack.push((dep, dep_deps, 0));
        } else {
            let node = node.clone();
            stack.pop();
            on_path.remove(&node);
            done.insert(node.clone());
            order.push(node);
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::from_bytes(s.as_bytes())
    }

    #[test]
    fn topo_order_puts_dependencies_first_and_visits_once() {
        let edges: BTreeMap<Digest, Vec<Digest>> = [
            (d("top"), vec![d("a"), d("b")]),
            (d("a"), vec![d("base")]),
            (d("b"), vec![d("base"), d("a")]),
            (d("base"), vec![]),
        ]
        .into();
        let mut visits = 0;
        let order = topo_order(&d("top"), |n| {
            visits += 1;
            Ok(edges[n].clone())
        })
        .unwrap();
        assert_eq!(visits, 4);
        assert_eq!(order, vec![d("base"), d("a"), d("b"), d("top")]);
    }

    #[test]
    fn topo_order_reports_a_cycle() {
        // Real op digests cannot form a cycle (each digest covers its inputs' digests), but a
        // crafted graph walker must still terminate with an error rather than loop.
        let edges: BTreeMap<Digest, Vec<Digest>> = [
            (d("top"), vec![d("a")]),
            (d("a"), vec![d("b")]),
            (d("b"), vec![d("a")]),
        ]
        .into();
        let err = topo_order(&d("top"), |n| Ok(edges[n].clone())).unwrap_err();
        assert!(matches!(err, LlbError::Cycle { .. }), "{err}");
        assert!(err.to_string().contains("depends on itself"));
    }

    #[test]
    fn topo_order_handles_long_chains() {
        // Deeper than any recursive walk could go on a test thread's stack.
        let n = 20_000;
        let nodes: Vec<Digest> = (0..n).map(|i| d(&i.to_string())).collect();
        let index: std::collections::HashMap<&Digest, usize> =
            nodes.iter().enumerate().map(|(i, x)| (x, i)).collect();
        let order = topo_order(&nodes[0], |x| {
            let i = index[x];
            Ok(if i + 1 < n {
                vec![nodes[i + 1].clone()]
            } else {
                vec![]
            })
        })
        .unwrap();
        assert_eq!(order.len(), n);
        assert_eq!(order[0], nodes[n - 1]);
    }
}
