//! Weir's write path: the stages a write passes between decoding and the
//! WAL, inside the acknowledgement, and the [`WritePath`] every writer
//! (front ends, raw-ingest sources, the monitor) goes through.
//!
//! What flows in: one write request and the `weir-protocols` decoder of its
//! protocol ([`WritePath::ingest`]), or batches already decoded — or, for a
//! raw-ingest *source*, a body and its content type, which the source's
//! adapter plugin turns into table batches first. What
//! flows out: the batches to store (fewer rows after filters, more columns
//! after enrichers), the [`DeadLetter`]s of any stage that failed, or an
//! [`Error`] that fails the write before anything is acknowledged.
//!
//! Each table may have a [`Pipeline`]: an ordered chain of [`Stage`]s, one
//! call per batch. WebAssembly plugins ([`WasmStage`]) are the usual
//! stages; native Rust stages implement the same trait. What happens when a
//! stage fails is the pipeline's [`FailurePolicy`]: `reject` the write, or
//! `pass-through` the batch as the stage received it. Either way the failed
//! batch is recorded as a dead letter.
//!
//! [`WritePath`] admits a write against the in-flight budget, runs it
//! through [`Pipelines`] and stores it; Weir's own `weir_…` tables are
//! written past the pipelines with [`WritePath::write_system`].
//!
//! [`Pipelines`] holds the current set and swaps it whole on reload, so a
//! write runs entirely on the old set or entirely on the new one; plugins
//! whose file and settings did not change carry over with their state.

mod dead_letter;
mod pipelines;
mod stage;
mod write_path;

pub use dead_letter::{DEAD_LETTER_TABLE, DeadLetter};
pub use pipelines::{PipelineDef, Pipelines, PipelinesDef, PluginReport, ReloadReport, SourceDef};
pub use stage::{FailurePolicy, Pipeline, Stage, StageError, WasmStage};
pub use weir_model::TableBatch;
pub use write_path::{Admission, Ingested, WriteMetrics, WritePath, now_ns};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stage refused the batch (its plugin said the input is wrong).
    #[error("pipeline {pipeline:?}: stage {stage:?} rejected the batch: {message}")]
    Rejected {
        pipeline: String,
        stage: String,
        message: String,
    },

    /// A stage failed (trap, deadline, limit, bad output) under the `reject` policy.
    #[error(
        "pipeline {pipeline:?}: stage {stage:?} failed ({reason}): {message}; the batch is in table {DEAD_LETTER_TABLE}"
    )]
    Failed {
        pipeline: String,
        stage: String,
        reason: &'static str,
        message: String,
    },

    /// The request did not decode: nothing of it was written.
    #[error(transparent)]
    Decode(#[from] weir_protocols::Error),

    #[error("no ingest source named {0:?} is configured")]
    UnknownSource(String),

    #[error("loading plugins: {0}")]
    Load(#[from] weir_plugins::Error),

    #[error("{0}")]
    Config(String),

    #[error(transparent)]
    Store(#[from] weir_storage::Error),

    #[error("the write path is shut down")]
    ShutDown,

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
