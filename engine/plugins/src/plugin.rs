//! One loaded plugin: its compiled component, its live instance, its limits
//! and counters.
//!
//! The instance lives between batches (guests keep state in it) behind a
//! mutex: a component instance runs one call at a time, and a batch is one
//! call, so swapping the instance under the lock happens at a batch
//! boundary. When a call traps, runs past its deadline or hits a limit, the
//! store is dropped and a fresh instance is made (and `init`ed) for the next
//! batch; the engine carries on.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime::{Engine, Store, Trap};
use weir_model::TableBatch;

use crate::bindings::adapter::{AdapterPlugin, AdapterPluginPre};
use crate::bindings::enricher::{EnricherPlugin, EnricherPluginPre};
use crate::bindings::filter::{FilterPlugin, FilterPluginPre};
use crate::bindings::types::Batch;
use crate::runtime::{Compiled, EPOCH_TICK};
use crate::sandbox::{GuestState, MAX_GUEST_TEXT, cut_to, guest_text};
use crate::stats::PluginStats;
use crate::{Error, PluginKind, Result, convert};

/// Bindings of another world than the plugin's kind: `expect_kind` rules it
/// out before every call, so this answer is never seen.
const KIND_MISMATCH: &str = "internal error: the instance does not match the plugin's kind";

/// Per-plugin limits. The defaults are safe for a shared server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest one call (one batch, or `init`) may run.
    pub timeout: Duration,
    /// Most linear memory the instance may grow to.
    pub memory_bytes: usize,
    /// Largest output (bytes of columns) one call may return.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            max_output_bytes: 64 << 20,
        }
    }
}

/// What to load: a component file, the configuration its `init` gets, a
/// name for logs and counters, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    pub name: String,
    pub path: PathBuf,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
}

enum Pre {
    Adapter(AdapterPluginPre<GuestState>),
    Filter(FilterPluginPre<GuestState>),
    Enricher(EnricherPluginPre<GuestState>),
}

enum Bound {
    Adapter(AdapterPlugin),
    Filter(FilterPlugin),
    Enricher(EnricherPlugin),
}

struct Live {
    store: Store<GuestState>,
    bound: Bound,
}

pub struct Plugin {
    name: Arc<str>,
    spec: PluginSpec,
    kind: PluginKind,
    digest: String,
    engine: Engine,
    pre: Pre,
    live: Mutex<Option<Live>>,
    stats: Arc<PluginStats>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("path", &self.spec.path)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub(crate) fn new(
        engine: Engine,
        linker: &Linker<GuestState>,
        spec: PluginSpec,
        compiled: Compiled,
    ) -> Result<Self> {
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let init_error = |e: wasmtime::Error| Error::Init {
            plugin: spec.name.clone(),
            message: format!("{e:#}"),
        };
        let instance_pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(init_error)?;
        let pre = match compiled.kind {
            PluginKind::Adapter => {
                Pre::Adapter(AdapterPluginPre::new(instance_pre).map_err(init_error)?)
            }
            PluginKind::Filter => {
                Pre::Filter(FilterPluginPre::new(instance_pre).map_err(init_error)?)
            }
            PluginKind::Enricher => {
                Pre::Enricher(EnricherPluginPre::new(instance_pre).map_err(init_error)?)
            }
        };
        let plugin = Self {
            name,
            kind: compiled.kind,
            digest: compiled.digest,
            spec,
            engine,
            pre,
            live: Mutex::new(None),
            stats: Arc::new(PluginStats::default()),
        };
        // Instantiate now so a broken `init` refuses the plugin at load.
        let live = plugin.instantiate()?;
        *plugin.lock() = Some(live);
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// SHA-256 of the loaded `.wasm`, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, Option<Live>> {
        // A panic while holding the lock cannot leave a half-made instance
        // behind that we would trust: the slot is either a whole `Live` or None.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deadline_ticks(&self) -> u64 {
        (self.spec.limits.timeout.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
    }

    /// Arms both halves of the deadline for one call (or instantiation and
    /// `init`): the epoch deadline for wasm code, the store's for host calls
    /// that could wait.
    fn arm(&self, store: &mut Store<GuestState>) {
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().arm(self.spec.limits.timeout);
    }

    fn instantiate(&self) -> Result<Live> {
        let mut store = Store::new(
            &self.engine,
            GuestState::new(
                Arc::clone(&self.name),
                self.spec.limits.memory_bytes,
                Arc::clone(&self.stats),
            ),
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        self.arm(&mut store);
        let bound = match &self.pre {
            Pre::Adapter(pre) => pre.instantiate(&mut store).map(Bound::Adapter),
            Pre::Filter(pre) => pre.instantiate(&mut store).map(Bound::Filter),
            Pre::Enricher(pre) => pre.instantiate(&mut store).map(Bound::Enricher),
        }
        .map_err(|e| self.classify(&store, e))?;
        let config = &self.spec.config;
        let result = match &bound {
            Bound::Adapter(b) => b.weir_plugin_adapter().call_init(&mut store, config),
            Bound::Filter(b) => b.weir_plugin_filter().call_init(&mut store, config),
            Bound::Enricher(b) => b.weir_plugin_enricher().call_init(&mut store, config),
        };
        store.data_mut().disarm();
        match result {
            Ok(Ok(())) => Ok(Live { store, bound }),
            Ok(Err(message)) => Err(Error::Init {
                plugin: self.spec.name.clone(),
                message: guest_text(message),
            }),
            Err(e) => Err(match self.classify(&store, e) {
                Error::Trapped { message, .. } => Error::Init {
                    plugin: self.spec.name.clone(),
                    message: format!("trapped: {message}"),
                },
                other => other,
            }),
        }
    }

    /// Turns a wasmtime error from a call into the failure it stands for.
    fn classify(&self, store: &Store<GuestState>, e: wasmtime::Error) -> Error {
        let plugin = self.spec.name.clone();
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return Error::Timeout {
                plugin,
                timeout: self.spec.limits.timeout,
            };
        }
        let message = format!("{e:#}");
        // `trap_on_grow_failure` reports a refused `memory.grow` this way.
        if message.contains("forcing trap when growing memory") {
            return Error::MemoryLimit {
                plugin,
                limit: self.spec.limits.memory_bytes,
            };
        }
        // The trap's text can carry guest text too (function names in the
        // backtrace), so it gets half the room and the stderr tail the rest.
        let message = cut_to(message, MAX_GUEST_TEXT / 2);
        let message = match store.data().take_stderr_tail() {
            Some(stderr) => format!("{message}; the plugin's last words: {stderr}"),
            None => message,
        };
        Error::Trapped {
            plugin,
            message: guest_text(message),
        }
    }

    /// Runs one call on the live instance (making one if there is none),
    /// with the deadline armed; faults discard the instance.
    fn call<R>(
        &self,
        events_in: usize,
        call: impl FnOnce(
            &mut Store<GuestState>,
            &Bound,
        ) -> wasmtime::Result<std::result::Result<R, String>>,
        check: impl FnOnce(&R) -> Result<usize>,
    ) -> Result<R> {
        let started = Instant::now();
        let stats = &self.stats;
        PluginStats::add(&stats.calls, 1);
        PluginStats::add(&stats.events_in, events_in as u64);
        let mut slot = self.lock();
        let mut live = match slot.take() {
            Some(live) => live,
            None => {
                PluginStats::add(&stats.restarts, 1);
                match self.instantiate() {
                    Ok(live) => live,
                    Err(e) => {
                        self.count_failure(&e);
                        return Err(e);
                    }
                }
            }
        };
        self.arm(&mut live.store);
        let result = call(&mut live.store, &live.bound);
        live.store.data_mut().disarm();
        let result = match result {
            Ok(Ok(output)) => check(&output).map(|events_out| (output, events_out)),
            Ok(Err(message)) => Err(Error::Rejected {
                plugin: self.spec.name.clone(),
                message: guest_text(message),
            }),
            Err(e) => Err(self.classify(&live.store, e)),
        };
        let result = match result {
            Ok((output, events_out)) => {
                PluginStats::add(&stats.events_out, events_out as u64);
                *slot = Some(live);
                Ok(output)
            }
            Err(e) => {
                if e.is_fault() {
                    // The store goes with `live`; the next call makes a new one.
                    tracing::warn!(plugin = &*self.name, error = %e, "plugin fault; its instance is discarded and made anew");
                } else {
                    *slot = Some(live);
                }
                self.count_failure(&e);
                Err(e)
            }
        };
        drop(slot);
        PluginStats::add(&stats.busy_ns, started.elapsed().as_nanos() as u64);
        result
    }

    fn count_failure(&self, e: &Error) {
        let counter = match e {
            Error::Timeout { .. } => &self.stats.timeouts,
            Error::MemoryLimit { .. } | Error::OutputLimit { .. } => &self.stats.limit_hits,
            Error::Rejected { .. } | Error::BadOutput { .. } | Error::BadInput { .. } => {
                &self.stats.rejections
            }
            _ => &self.stats.traps,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn expect_kind(&self, expected: PluginKind) -> Result<()> {
        if self.kind != expected {
            return Err(Error::WrongKind {
                plugin: self.spec.name.clone(),
                expected,
                actual: self.kind,
            });
        }
        Ok(())
    }

    fn output_limit(&self, bytes: usize) -> Result<()> {
        if bytes > self.spec.limits.max_output_bytes {
            return Err(Error::OutputLimit {
                plugin: self.spec.name.clone(),
                bytes,
                limit: self.spec.limits.max_output_bytes,
            });
        }
        Ok(())
    }

    /// The WIT form of `batch` for a filter or enricher call; `None` for an
    /// empty batch, which needs no call.
    fn batch_input(&self, kind: PluginKind, batch: &TableBatch) -> Result<Option<Batch>> {
        self.expect_kind(kind)?;
        if batch.batch.num_rows() == 0 {
            return Ok(None);
        }
        convert::to_wit(batch)
            .map(Some)
            .map_err(|message| Error::BadInput {
                plugin: self.spec.name.clone(),
                message,
            })
    }

    /// Keeps the events of `batch` the filter chooses.
    pub fn filter(&self, batch: &TableBatch) -> Result<TableBatch> {
        let Some(input) = self.batch_input(PluginKind::Filter, batch)? else {
            return Ok(batch.clone());
        };
        let rows = input.time.len();
        let kept = self.call(
            rows,
            |store, bound| match bound {
                Bound::Filter(b) => b.weir_plugin_filter().call_filter(store, &input),
                _ => Ok(Err(KIND_MISMATCH.into())),
            },
            |kept: &Vec<u32>| {
                self.output_limit(kept.len() * 4)?;
                Ok(kept.len())
            },
        )?;
        convert::apply_filter(batch, &kept).map_err(|message| self.bad_output(message))
    }

    /// Applies the enricher's changes to `batch`.
    pub fn enrich(&self, batch: &TableBatch, now_ns: i64) -> Result<TableBatch> {
        let Some(input) = self.batch_input(PluginKind::Enricher, batch)? else {
            return Ok(batch.clone());
        };
        let rows = input.time.len();
        let changes = self.call(
            rows,
            |store, bound| match bound {
                Bound::Enricher(b) => b.weir_plugin_enricher().call_enrich(store, &input),
                _ => Ok(Err(KIND_MISMATCH.into())),
            },
            |changes| {
                self.output_limit(convert::columns_bytes(changes))?;
                Ok(rows)
            },
        )?;
        convert::apply_enrichment(batch, &changes, now_ns)
            .map_err(|message| self.bad_output(message))
    }

    /// Turns one raw body into table batches.
    pub fn adapt(
        &self,
        content_type: &str,
        body: &[u8],
        now_ns: i64,
        time_column_for: &dyn Fn(&str) -> String,
    ) -> Result<Vec<TableBatch>> {
        self.expect_kind(PluginKind::Adapter)?;
        let batches = self.call(
            0,
            |store, bound| match bound {
                Bound::Adapter(b) => b
                    .weir_plugin_adapter()
                    .call_adapt(store, content_type, body),
                _ => Ok(Err(KIND_MISMATCH.into())),
            },
            |batches| {
                self.output_limit(convert::wit_bytes(batches))?;
                Ok(batches.iter().map(|b| b.time.len()).sum())
            },
        )?;
        convert::adapter_output(&batches, now_ns, time_column_for)
            .map_err(|message| self.bad_output(message))
    }

    /// Output that failed validation. The message quotes the guest's names
    /// and values, so it is cut like any guest text.
    fn bad_output(&self, message: String) -> Error {
        PluginStats::add(&self.stats.rejections, 1);
        Error::BadOutput {
            plugin: self.spec.name.clone(),
            message: guest_text(message),
        }
    }
}
