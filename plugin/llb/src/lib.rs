//! oxkit's build definitions: BuildKit's LLB wire format (`pb`), a validated typed graph parsed
//! from it (`Graph`), a Rust builder API that writes it (`State`, `image`, `local`, …), and the
//! JSON form `oxctl debug dump-llb` prints.

pub mod attr;
mod builder;
mod convert;
mod digest;
mod dump;
mod error;
mod graph;
pub mod op;
pub mod source;
mod wire;

/// The LLB wire types (BuildKit's `solver/pb` package), generated from `proto/ops.proto`.
/// Only [`Definition`], [`convert`](self) and tests touch these; everything else uses [`op`].
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/pb.rs"));
}

pub use builder::{
    git, git_with, http, http_with, image, image_with, join_path, local, local_with, merge, mkdir,
    mkfile, rm, scratch, symlink, CopyOptions, ExecState, FileActions, GitOptions, HttpOptions,
    ImageMetaResolver, ImageOptions, ImageRunConfig, LocalOptions, MkdirOptions, MkfileOptions,
    MountSpec, Owner, ResolvedImageConfig, RmOptions, Run, State,
};
pub use digest::Digest;
pub use dump::dump_llb;
pub use error::{LlbError, SourceError};
pub use graph::{Definition, Edge, Graph, Vertex};
