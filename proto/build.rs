//! Compiles the .proto files with protox (pure Rust), so no `protoc` install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/tribune/v1/control.proto",
        "proto/tribune/v1/raft.proto",
        "proto/tribune/v1/attestation.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // The encoded descriptor set, for gRPC server reflection (`tribune_proto::FILE_DESCRIPTOR_SET`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tribune_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
