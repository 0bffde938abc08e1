//! The native write API's share of the write path: decode a `weir.v1`
//! request (the ingest hot path), then hand its batches to the shared
//! [`WritePath`] — admission, pipelines, WAL, acknowledgement.

use prost::Message;
use weir_pipeline::{Admission, WritePath, now_ns};
use weir_proto::v1::WriteRequest;

use crate::Result;
use crate::decode::decode_write_limited;

/// Decode → write path, for one `weir.v1` request.
#[derive(Clone)]
pub struct Ingest {
    path: WritePath,
    write_limits: weir_model::WriteLimits,
}

impl Ingest {
    pub fn new(path: WritePath, write_limits: weir_model::WriteLimits) -> Self {
        Self { path, write_limits }
    }

    pub fn path(&self) -> &WritePath {
        &self.path
    }

    /// Waits until a request of `bytes` may be in flight.
    pub async fn admit(&self, bytes: usize) -> Result<Admission> {
        Ok(self.path.admit(bytes).await?)
    }

    /// Writes one request atomically; returns the rows written.
    pub async fn write(&self, request: WriteRequest) -> Result<u64> {
        let admission = self.admit(request.encoded_len()).await?;
        self.write_admitted(request, admission).await
    }

    /// [`write`](Self::write) for a request already [admitted](Self::admit).
    pub async fn write_admitted(&self, request: WriteRequest, admission: Admission) -> Result<u64> {
        let now_ns = now_ns();
        let store = self.path.store();
        let decoded = decode_write_limited(&request, now_ns, self.write_limits, &|table| {
            store.time_column_for(table)
        });
        match decoded {
            Ok(batches) => Ok(self.path.write(batches, now_ns, admission).await?),
            Err(e) => {
                self.path.rejected(admission, request.points.len() as u64);
                Err(e)
            }
        }
    }
}
