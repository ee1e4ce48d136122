//! Everything that can be wrong with a build definition, worded so that the author of the
//! definition can fix it.

use crate::Digest;

/// A definition oxkit cannot build, and why.
#[derive(Debug, thiserror::Error)]
pub enum LlbError {
    /// The bytes are not a protobuf `pb.Definition`.
    #[error("the build definition is not a valid LLB Definition protobuf: {0}; pipe the raw output of a program that marshals an LLB Definition")]
    DecodeDefinition(#[source] prost::DecodeError),

    /// An entry of `Definition.def` is not a protobuf `pb.Op`.
    #[error("entry #{index} of the build definition ({digest}) is not a valid LLB Op: {source}")]
    DecodeOp {
        /// Position in `Definition.def`.
        index: usize,
        /// Digest of the undecodable bytes.
        digest: Digest,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },

    /// An op carries fields that are not in oxkit's copy of the LLB schema.
    #[error("op '{digest}' contains {field}, which oxkit's LLB schema does not know (written by a newer LLB library?); oxkit does not build ops it cannot fully read")]
    UnknownFields {
        /// The op.
        digest: Digest,
        /// Where: message path and field number, e.g. `Op.exec.mounts.field 30`.
        field: String,
    },

    /// The definition has ops but its last entry is not a terminal op.
    #[error("the last op of the definition ('{digest}') must be the terminal op: no operation and exactly one input naming the result; {problem}")]
    BadTerminal {
        /// The last op.
        digest: Digest,
        /// What is wrong with it.
        problem: String,
    },

    /// An op (or the terminal op) names an input digest that is not in the definition.
    #[error("{kind} op '{digest}': input #{input} refers to '{missing}', which is not an op of this definition")]
    MissingInput {
        /// Kind of the referring op (`terminal` for the terminal op).
        kind: &'static str,
        /// The referring op.
        digest: Digest,
        /// Index of the input in the op.
        input: usize,
        /// The digest that was not found.
        missing: String,
    },

    /// An input asks for an output its op does not have.
    #[error("{kind} op '{digest}': input #{input} asks for output {index} of '{target}', which has {outputs} output(s)")]
    OutputOutOfRange {
        /// Kind of the referring op.
        kind: &'static str,
        /// The referring op.
        digest: Digest,
        /// Index of the input in the op.
        input: usize,
        /// The op the input points at.
        target: Digest,
        /// The requested output index.
        index: i64,
        /// How many outputs `target` has.
        outputs: usize,
    },

    /// The ops' inputs form a cycle.
    #[error(
        "op '{digest}' depends on itself through its inputs; a build definition must be acyclic"
    )]
    Cycle {
        /// An op on the cycle.
        digest: Digest,
    },

    /// An op of a kind oxkit does not execute.
    #[error("op '{digest}': {kind} ops are not supported by oxkit (supported: source, exec, file, merge)")]
    UnsupportedOp {
        /// The op.
        digest: Digest,
        /// Its kind (`build`, `diff`, `passthrough`, or `empty` for an op without an operation).
        kind: &'static str,
    },

    /// A supported op uses a field or value oxkit does not support.
    #[error("{kind} op '{digest}': {feature} is not supported by oxkit")]
    Unsupported {
        /// Kind of the op.
        kind: &'static str,
        /// The op.
        digest: Digest,
        /// The unsupported feature, named as in BuildKit's schema.
        feature: String,
    },

    /// A supported op has a field whose value makes no sense.
    #[error("{kind} op '{digest}': {problem}")]
    InvalidOp {
        /// Kind of the op.
        kind: &'static str,
        /// The op.
        digest: Digest,
        /// What is wrong.
        problem: String,
    },

    /// A source op's identifier or attributes are wrong.
    #[error("source op '{digest}': {source}")]
    Source {
        /// The op.
        digest: Digest,
        /// What is wrong with the identifier or attributes.
        #[source]
        source: SourceError,
    },

    /// The builder's [`ImageMetaResolver`](crate::ImageMetaResolver) could not give an image's
    /// config, or gave one that does not parse.
    #[error("image {reference}: resolving its config failed: {reason}")]
    ImageConfig {
        /// The image reference.
        reference: String,
        /// What went wrong.
        reason: String,
    },

    /// Metadata of an op is unsupported or names no op.
    #[error("metadata for '{digest}': {problem}")]
    Metadata {
        /// The key of the metadata entry.
        digest: String,
        /// What is wrong.
        problem: String,
    },
}

/// A source identifier (`docker-image://…`, `git://…`, `local://…`, `http(s)://…`) or one of its
/// attributes that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No `scheme://`.
    #[error("identifier '{0}' has no scheme; expected docker-image://, git://, local://, http:// or https://")]
    MissingScheme(String),
    /// A scheme oxkit has no source for.
    #[error("identifier '{identifier}': scheme '{scheme}' is not supported (supported: docker-image, git, local, http, https)")]
    UnsupportedScheme {
        /// The whole identifier.
        identifier: String,
        /// Its scheme.
        scheme: String,
    },
    /// The part after the scheme is unusable.
    #[error("identifier '{identifier}': {problem}")]
    InvalidIdentifier {
        /// The whole identifier.
        identifier: String,
        /// What is wrong.
        problem: String,
    },
    /// An attribute oxkit does not know for this kind of source.
    #[error("attribute '{key}' is not supported for {scheme} sources")]
    UnsupportedAttr {
        /// The scheme of the source.
        scheme: &'static str,
        /// The attribute key.
        key: String,
    },
    /// An attribute whose value cannot be parsed.
    #[error("attribute '{key}' has invalid value '{value}': {problem}")]
    InvalidAttr {
        /// The attribute key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
}
