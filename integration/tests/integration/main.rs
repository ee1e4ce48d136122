//! oxkit's integration tests: one binary, run against a real containerd, runc and oxkitd that each
//! test starts in its own temp dir (see `oxkit_integration::Fixture`). They need root and Debian's
//! containerd, runc and busybox-static; without them they skip loudly, or fail under `CI=true`.
//!
//! Run with `cargo build --bin oxkitd && cargo test -p oxkit-integration -- --test-threads=2`.

mod build;
mod containerd;
mod daemon;
mod dockerfile;
mod export;
mod exporter;
mod fileop;
mod fixture;
mod git;
mod http;
mod local;
mod merge;
mod registry;
mod remotecache;
mod resolve;
mod secret;
mod session;
mod snapshotter;
mod support;
mod worker;
