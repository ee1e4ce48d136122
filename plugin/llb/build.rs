//! Generates the LLB message types (package `pb`) from `proto/ops.proto`.
//! Messages only: LLB is a wire format, not a service.

fn main() {
    println!("cargo:rerun-if-changed=proto/ops.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        // Sorted maps so that marshalling is deterministic, like BuildKit's deterministic marshal.
        .btree_map(".")
        .compile_protos(&["proto/ops.proto"], &["proto"])
        .expect("failed to generate LLB types from proto/ops.proto");
}
