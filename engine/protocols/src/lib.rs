//! Weir's ingest protocols as pure decoders: the bytes of one request in,
//! validated [`TableBatch`]es out. No sockets, no clocks, no storage — each
//! decoder can be fuzzed and benchmarked alone, and every front end (gRPC,
//! HTTP) hands what it decodes to the same write path.
//!
//! | module | protocol |
//! |---|---|
//! | [`native`] | Weir's own `weir.v1.WriteRequest` (symbol table + points) |
//! | [`line_protocol`] | InfluxDB line protocol (`/write`, `/api/v2/write`) |
//! | [`remote_write`] | Prometheus remote write 1.0 (snappy-compressed protobuf) |
//! | [`otlp`] | OpenTelemetry OTLP metrics, logs and traces (protobuf or JSON) |
//! | [`arrow_batch`] | Arrow record batches (Flight `DoPut`): checked and cast, not decoded |
//! | [`compression`] | bounded gzip and snappy decompression of request bodies |
//!
//! Two ways a request can fail, and the protocols differ in which they use:
//!
//! - an [`Error`] refuses the whole request: nothing of it is written. The
//!   native API always works this way (a request is atomic).
//! - [`Rejected`] lists points dropped from a request whose other points are
//!   written. Line protocol and remote write clients expect this: InfluxDB
//!   writes the good lines of a batch and reports the bad ones, and a
//!   Prometheus server does not resend a batch answered with a 4xx, so
//!   refusing a whole batch for one bad series would lose the rest of it.
//!
//! The validation rules themselves (names, finite floats, timestamp range,
//! tag length, one type per column, request limits) are `weir-model`'s,
//! the same for every protocol.

use std::fmt;

use weir_model::{TableBatch, TableSchema};

pub mod arrow_batch;
pub mod compression;
pub mod line_protocol;
pub mod native;
pub mod otlp;
mod points;
pub mod remote_write;

/// What a decoder needs to know about the tables it writes to.
pub trait Tables {
    /// The time column `table` has, or will have if created now.
    fn time_column(&self, table: &str) -> String;

    /// The stored schema of `table`, if it exists: decoders that drop bad
    /// points one by one check column types against it, so a type conflict
    /// with stored data drops that point rather than failing the write.
    fn schema(&self, _table: &str) -> Option<TableSchema> {
        None
    }
}

/// A function from table name to time column is enough for a decoder that
/// does not check stored types (the native one, tests, benches).
impl<F: Fn(&str) -> String> Tables for F {
    fn time_column(&self, table: &str) -> String {
        self(table)
    }
}

/// One request decoded: what to write, and what was dropped from it.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batches: Vec<TableBatch>,
    pub rejected: Rejected,
}

impl Decoded {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.batch.num_rows() as u64).sum()
    }
}

/// Points dropped from a request whose other points are written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejected {
    /// Points dropped.
    pub points: u64,
    /// The first few reasons, in request order; [`Rejected::KEPT`] at most,
    /// so a request of a million bad lines does not build a million messages.
    pub reasons: Vec<Rejection>,
}

/// Why one point (or a group of points: a series) was dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Where in the request: the line number (from 1) for line protocol,
    /// the series index (from 0) for remote write.
    pub at: usize,
    pub message: String,
}

impl Rejected {
    pub const KEPT: usize = 10;

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Records `points` dropped at `at`, for `reason`.
    pub fn add(&mut self, at: usize, points: u64, reason: impl fmt::Display) {
        self.points += points;
        if self.reasons.len() < Self::KEPT {
            self.reasons.push(Rejection {
                at,
                message: reason.to_string(),
            });
        }
    }

    /// One line for an error body: how many were dropped and the first
    /// reasons, each prefixed with `what` and its position (`"line 3"`).
    pub fn summary(&self, what: &str) -> String {
        let mut out = String::new();
        for (i, r) in self.reasons.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(&format!("{what} {}: {}", r.at, r.message));
        }
        let more = self.points.saturating_sub(self.reasons.len() as u64);
        if more > 0 && self.reasons.len() == Self::KEPT {
            out.push_str(&format!("; and {more} more"));
        }
        out
    }
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not the protocol at all: broken framing, compression or protobuf,
    /// indexes out of range, text that is not UTF-8.
    #[error("invalid request: {0}")]
    Malformed(String),

    /// Well-formed, but breaks a rule every write follows (see `weir-model`).
    #[error(transparent)]
    Invalid(#[from] weir_model::Error),

    /// Bigger than the server accepts once decompressed.
    #[error("{what} is more than the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
