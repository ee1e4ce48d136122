//! Generates the containerd Snapshots gRPC *server* from the protos that the
//! `containerd-client` crate bundles (that crate only generates clients), so the
//! whole workspace stays on one tonic/prost stack and one set of message types.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let vendor = containerd_client_vendor_dir();
    let proto =
        vendor.join("github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto");
    println!("cargo:rerun-if-changed=build.rs");

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Reuse containerd-client's `Mount` so callers need no conversion.
        .extern_path(".containerd.types", "::containerd_client::types")
        .compile_protos(&[proto], &[vendor])
        .expect("failed to generate the Snapshots service from containerd-client's protos");
}

/// Finds `vendor/` of the `containerd-client` package this build resolved, via `cargo metadata`.
fn containerd_client_vendor_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    // Only this platform's packages: the others are never downloaded, and --offline must not
    // need them.
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &target,
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("failed to run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata output");
    let pkg = meta["packages"]
        .as_array()
        .and_then(|pkgs| pkgs.iter().find(|p| p["name"] == "containerd-client"))
        .expect("containerd-client is not in the dependency graph");
    let manifest_path = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    manifest_path.parent().unwrap().join("vendor")
}
