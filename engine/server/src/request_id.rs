//! Request IDs: taken from the `x-request-id` gRPC metadata or HTTP header
//! when the client sends one, made up otherwise, echoed back in the response
//! and attached to every log line of the request.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const HEADER: &str = "x-request-id";

/// Longest request ID accepted from a client; longer ones are replaced.
const MAX_LEN: usize = 128;

static PROCESS: LazyLock<u64> = LazyLock::new(|| {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32)
});
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn generate() -> String {
    format!(
        "{:012x}-{:06x}",
        *PROCESS & 0xffff_ffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A client-supplied ID if it is sane (printable ASCII, bounded), else a new one.
pub fn accept(client: Option<&str>) -> String {
    match client {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_LEN
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_string()
        }
        _ => generate(),
    }
}

pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> String {
    accept(metadata.get(HEADER).and_then(|v| v.to_str().ok()))
}

pub fn set_metadata(metadata: &mut tonic::metadata::MetadataMap, id: &str) {
    if let Ok(value) = id.parse() {
        metadata.insert(HEADER, value);
    }
}
