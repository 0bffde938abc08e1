//! Weir's WebAssembly plugin host.
//!
//! What flows in: `.wasm` components built against `sdk/wit/plugin.wit`
//! (`weir:plugin@0.1.0`), with a configuration and limits each
//! ([`PluginSpec`]); then table batches (filters, enrichers) or raw bodies
//! (adapters). What flows out: the batches to store, or an [`Error`] saying
//! which plugin failed and how — rejected its input, trapped, ran past its
//! deadline, hit a limit.
//!
//! Rooms:
//! - `runtime`: the wasmtime engine (component model, pooling allocator,
//!   epoch interruption), the on-disk cache of compiled components keyed by
//!   content hash and wasmtime's compatibility hash, the linker;
//! - `sandbox`: what a guest may import (its world, plus a WASI that grants
//!   nothing and never waits past the call's deadline), the check that
//!   refuses more at load time, and the bounds on what a guest says (error
//!   text cut to 4 KiB, a log budget per call);
//! - `plugin`: one loaded plugin — `InstancePre`, the live instance kept
//!   between batches, deadlines, limits, restarts after faults;
//! - `convert`: Arrow ⇄ the columnar WIT batch; plugin output is checked
//!   (every length before any index) and then validated by `weir-model`
//!   like any write — malformed output is an error, never a panic;
//! - `stats`: per-plugin counters.
//!
//! Faults never unwind into the engine: a trap, deadline or limit hit drops
//! the guest's store, and the next batch gets a fresh instance.

mod bindings;
pub mod convert;
mod error;
mod plugin;
mod runtime;
mod sandbox;
mod stats;

pub use error::{Error, Result};
pub use plugin::{Limits, Plugin, PluginSpec};
pub use runtime::{Compiled, EPOCH_TICK, PluginRuntime, RuntimeConfig};
pub use sandbox::{GRANTED_WASI, LOG_BYTES_PER_CALL, LOG_LINES_PER_CALL, WIT_PACKAGE};
pub use stats::{PluginStats, StatsSnapshot};

/// The three plugin worlds of `weir:plugin@0.1.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    Adapter,
    Filter,
    Enricher,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Adapter => "adapter",
            PluginKind::Filter => "filter",
            PluginKind::Enricher => "enricher",
        }
    }

    /// The WIT world a component of this kind implements.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Adapter => "weir:plugin/adapter-plugin@0.1.0",
            PluginKind::Filter => "weir:plugin/filter-plugin@0.1.0",
            PluginKind::Enricher => "weir:plugin/enricher-plugin@0.1.0",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PluginKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adapter" => Ok(PluginKind::Adapter),
            "filter" => Ok(PluginKind::Filter),
            "enricher" => Ok(PluginKind::Enricher),
            other => Err(format!(
                "unknown plugin kind {other:?} (adapter, filter or enricher)"
            )),
        }
    }
}
