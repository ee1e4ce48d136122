//! The graph: vertices (an op plus its inputs) and edges (one output of a vertex).

use std::fmt;
use std::sync::Arc;

use crate::op::Op;

/// One step of a build graph.
///
/// The digest identifies the vertex within and across solves: two vertices with the same digest
/// must have semantically identical ops and inputs (LLB's op digest has this property). The graph
/// is immutable and acyclic by construction: inputs are `Arc`s to vertices that already exist.
pub struct Vertex {
    /// Stable identifier, e.g. the LLB op digest (`sha256:…`).
    pub digest: String,
    /// Human name shown in progress and errors, e.g. `RUN make`.
    pub name: String,
    /// Inputs in the order the op expects them.
    pub inputs: Vec<Edge>,
    /// Always execute this vertex (and, through their keys, the vertices that depend on it),
    /// recording the new result.
    pub ignore_cache: bool,
    /// What the vertex does.
    pub op: Arc<dyn Op>,
}

impl Vertex {
    /// A vertex without inputs and with caching enabled.
    pub fn new(digest: impl Into<String>, name: impl Into<String>, op: Arc<dyn Op>) -> Self {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            inputs: Vec::new(),
            ignore_cache: false,
            op,
        }
    }

    /// Sets the inputs.
    pub fn with_inputs(mut self, inputs: Vec<Edge>) -> Self {
        self.inputs = inputs;
        self
    }

    /// Sets the ignore-cache flag.
    pub fn with_ignore_cache(mut self, ignore_cache: bool) -> Self {
        self.ignore_cache = ignore_cache;
        self
    }

    /// The digest and name, as events and errors carry them.
    pub fn info(&self) -> VertexInfo {
        VertexInfo {
            digest: self.digest.clone(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Debug for Vertex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vertex")
            .field("digest", &self.digest)
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("ignore_cache", &self.ignore_cache)
            .finish_non_exhaustive()
    }
}

/// Output `index` of `vertex`: what an input or a solve's target refers to.
#[derive(Clone)]
pub struct Edge {
    /// The producing vertex.
    pub vertex: Arc<Vertex>,
    /// Which of its outputs.
    pub index: usize,
}

impl Edge {
    /// Output `index` of `vertex`.
    pub fn new(vertex: Arc<Vertex>, index: usize) -> Self {
        Edge { vertex, index }
    }
}

impl fmt::Debug for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.vertex.digest, self.index)
    }
}

/// Who a progress event or an error is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VertexInfo {
    /// The vertex digest.
    pub digest: String,
    /// The vertex's human name.
    pub name: String,
}

impl fmt::Display for VertexInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step \"{}\" [{}]", self.name, self.digest)
    }
}
