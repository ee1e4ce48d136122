//! Generates oxkit's build API (server and client) from `proto/control.proto`.

fn main() {
    println!("cargo:rerun-if-changed=proto/control.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/control.proto"], &["proto"])
        .expect("failed to generate oxkit's build API from proto/control.proto");
}
