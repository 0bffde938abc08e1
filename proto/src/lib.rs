//! Weir's gRPC API, `weir.v1`, generated from `proto/weir/v1/*.proto`.
//!
//! In: nothing but the `.proto` files. Out: the prost messages, the tonic
//! client and server for `WriteService`, and [`FILE_DESCRIPTOR_SET`] for gRPC
//! server reflection.

pub mod v1 {
    #![allow(clippy::all, clippy::clone_on_ref_ptr, missing_docs)]
    tonic::include_proto!("weir.v1");
}

/// The encoded `FileDescriptorSet` of every Weir proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weir_descriptor.bin"));
