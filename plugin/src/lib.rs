//! oxkit's build service, and the daemon that hosts it beside the snapshotter. Today it holds
//! the daemon (configuration and serving); the build graph, solver, ops, sources, exporters and
//! frontends join it as modules of their own.

pub mod client;
pub mod control;
pub mod daemon;

pub mod proto {
    //! Generated types, server and client of oxkit's build API (`proto/control.proto`).
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("oxkit.control.v1");
}
