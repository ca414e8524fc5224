//! Compiles `router.proto` with protox (pure Rust, no system `protoc`) and keeps the encoded
//! descriptor set for gRPC server reflection.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    println!("cargo:rerun-if-changed={}", proto_dir.join("router").display());

    let fds = protox::compile([proto_dir.join("router/v1/router.proto")], [&proto_dir])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("router_descriptor.bin"), fds.encode_to_vec())?;

    // Malformed messages are INVALID_ARGUMENT, not prost's INTERNAL (src/codec.rs).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::RouterCodec")
        .compile_fds(fds)?;
    Ok(())
}
