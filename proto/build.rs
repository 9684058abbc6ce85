//! Compiles the `.proto` contract with protox (pure Rust; no system `protoc`)
//! and generates prost messages plus tonic clients and servers.

use std::path::PathBuf;

use protox::prost::Message as _;

const PROTOS: &[&str] = &[
    "common.proto",
    "container_guest.proto",
    "container_host.proto",
    "tremplin.proto",
    "vm_crash.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("protos");

    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_dir.join(proto).display());
    }

    let files: Vec<PathBuf> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    let file_descriptor_set = protox::compile(&files, [&proto_dir])?;

    // Also ship the encoded descriptor set (for gRPC reflection and for the
    // contract tests that check service/method names).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("crostini_descriptor.bin"),
        file_descriptor_set.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The host stand-in prints every received message as a JSON line.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(file_descriptor_set)?;

    Ok(())
}
