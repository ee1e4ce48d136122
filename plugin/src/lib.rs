//! oxkit's build service, and the daemon that hosts it beside the snapshotter. Today it holds
//! the daemon (configuration and serving); the build graph, solver, ops, sources, exporters and
//! frontends join it as modules of their own.

pub mod daemon;
