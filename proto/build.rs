//! Compiles `weir/v1/*.proto` with protox (pure Rust, no `protoc` needed) and
//! generates the tonic client and server, plus the descriptor set that the
//! server's gRPC reflection serves.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let protos = ["weir/v1/write.proto", "weir/v1/monitor.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("weir_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Undecodable requests are INVALID_ARGUMENT, not prost's INTERNAL.
        .codec_path("crate::codec::WeirCodec")
        // Symbols become zero-copy slices of the request buffer.
        .bytes(".weir.v1.WriteRequest.symbols")
        .compile_fds(descriptors)?;
    Ok(())
}
