//! Weir's gRPC API, `weir.v1`, generated from `proto/weir/v1/*.proto`.
//!
//! In: nothing but the `.proto` files. Out: the prost messages, the tonic
//! client and server for `WriteService` and `MonitorService`, [`FILE_DESCRIPTOR_SET`] for gRPC
//! server reflection, and [`SymbolTable`] for clients building requests.

use std::collections::HashMap;

pub mod codec;

pub mod v1 {
    #![allow(clippy::all, clippy::clone_on_ref_ptr, missing_docs)]
    tonic::include_proto!("weir.v1");
}

/// The encoded `FileDescriptorSet` of every Weir proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weir_descriptor.bin"));

/// The string table of one `WriteRequest` as a client builds it: each
/// distinct string stored once, referred to by index.
///
/// ```
/// let mut symbols = weir_proto::SymbolTable::default();
/// assert_eq!(symbols.intern("service_metrics"), 0);
/// assert_eq!(symbols.intern("api"), 1);
/// assert_eq!(symbols.intern("service_metrics"), 0);
/// assert_eq!(symbols.take().len(), 2);
/// assert_eq!(symbols.intern("api"), 0, "take() starts a new table");
/// ```
#[derive(Debug, Default, Clone)]
pub struct SymbolTable {
    symbols: Vec<String>,
    index: HashMap<String, u32>,
}

impl SymbolTable {
    /// The index of `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    /// The symbols in `WriteRequest.symbols` form; leaves the table empty.
    pub fn take(&mut self) -> Vec<prost::bytes::Bytes> {
        self.index.clear();
        std::mem::take(&mut self.symbols)
            .into_iter()
            .map(|s| s.into_bytes().into())
            .collect()
    }
}
