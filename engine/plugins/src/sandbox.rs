//! What a guest may touch: its world's imports, and a deny-all WASI.
//!
//! A Rust guest built for `wasm32-wasip2` imports WASI interfaces through
//! `std` (environment, stdio, clocks, filesystem preopens, random) even when
//! it never uses them, so a host that linked no WASI would refuse every Rust
//! plugin. Weir links exactly the WASI interfaces of [`GRANTED_WASI`] with a
//! context that grants nothing — no preopened directories, an empty
//! environment, no arguments, stdin closed, both clocks frozen at the epoch —
//! and routes the guest's stdout and stderr into Weir's log. On top of that,
//! [`check_imports`] refuses at load time any component importing an
//! interface outside [`GRANTED_WASI`] (sockets, HTTP, anything newer), naming
//! what it asked for.
//!
//! Two more things a guest could use against its host, and how they are held:
//!
//! - time: the epoch deadline interrupts wasm code, not a guest waiting in a
//!   host call. `wasi` links every granted interface so that none can wait
//!   past the call's deadline (its module docs hold the audit);
//! - text: whatever a guest says — an error, a log line, its stderr — is cut
//!   to a bound where it enters the host ([`guest_text`]), and its logging is
//!   budgeted per call (`log`), so a guest cannot flood clients, dead letters
//!   or the log.

mod log;
mod wasi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::PluginKind;
use crate::stats::PluginStats;

pub use log::{LOG_BYTES_PER_CALL, LOG_LINES_PER_CALL};
pub(crate) use wasi::add_to_linker;

/// The WIT package version this host speaks.
pub const WIT_PACKAGE: &str = "weir:plugin@0.1.0";

/// WASI interfaces a guest may import because Rust's `std` (and other
/// languages' runtimes) import them unconditionally. Each is linked to the
/// deny-all context: importing them grants nothing.
pub const GRANTED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Which world `component` implements, or why it may not be loaded: an
/// import outside its world and [`GRANTED_WASI`], a different version of the
/// Weir interface, or no Weir export at all.
pub fn check_imports(engine: &Engine, component: &Component) -> Result<PluginKind, String> {
    let ty = component.component_type();
    let mut refused = Vec::new();
    for (name, _) in ty.imports(engine) {
        let unversioned = name.split('@').next().unwrap_or(name);
        let allowed = if unversioned.starts_with("weir:plugin/") {
            if !name.ends_with("@0.1.0") {
                return Err(format!(
                    "it imports {name}, but this Weir speaks {WIT_PACKAGE}"
                ));
            }
            matches!(unversioned, "weir:plugin/log" | "weir:plugin/types")
        } else {
            GRANTED_WASI.contains(&unversioned)
        };
        if !allowed {
            refused.push(name.to_string());
        }
    }
    if !refused.is_empty() {
        return Err(format!(
            "it imports {}, which Weir does not grant to plugins (a plugin gets {WIT_PACKAGE}'s log and a WASI with no files, network, environment or clock)",
            refused.join(", ")
        ));
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let mut kinds = exports.iter().filter_map(|name| {
        let kind = match name.split('@').next()? {
            "weir:plugin/adapter" => PluginKind::Adapter,
            "weir:plugin/filter" => PluginKind::Filter,
            "weir:plugin/enricher" => PluginKind::Enricher,
            _ => return None,
        };
        Some((name, kind))
    });
    match (kinds.next(), kinds.next()) {
        (Some((name, kind)), None) => {
            if name.ends_with("@0.1.0") {
                Ok(kind)
            } else {
                Err(format!(
                    "it exports {name}, but this Weir speaks {WIT_PACKAGE}"
                ))
            }
        }
        (None, _) => Err(format!(
            "it exports none of weir:plugin/{{adapter,filter,enricher}}@0.1.0 (its exports: {})",
            if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            }
        )),
        (Some(_), Some(_)) => Err(
            "it exports more than one Weir world; a plugin is one of adapter, filter, enricher"
                .into(),
        ),
    }
}

/// The data of one guest's `Store`.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// When the running call (or `init`) must be over: host calls that could
    /// wait give up then (see `wasi`).
    deadline: Instant,
    /// The guest's log lines, budgeted per call, and its stderr tail.
    log: Arc<log::GuestLog>,
}

impl GuestState {
    pub fn new(plugin: Arc<str>, memory_bytes: usize, stats: Arc<PluginStats>) -> Self {
        let log = Arc::new(log::GuestLog::new(Arc::clone(&plugin), stats));
        let wasi = WasiCtxBuilder::new()
            .stdin(wasmtime_wasi::p2::pipe::ClosedInputStream)
            .stdout(log::LogStream::new(Arc::clone(&log), log::Stream::Stdout))
            .stderr(log::LogStream::new(Arc::clone(&log), log::Stream::Stderr))
            .wall_clock(FrozenClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .instances(16)
            .tables(16)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            // Until a call is armed, any wait is already over time.
            deadline: Instant::now(),
            log,
        }
    }

    /// Starts a call (or `init`) that may run for `timeout`: sets the
    /// deadline host calls honour and gives the guest a fresh log budget.
    pub(crate) fn arm(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
        self.log.start_call();
    }

    /// Ends a call: reports the log lines it dropped, if any.
    pub(crate) fn disarm(&mut self) {
        self.log.end_call();
    }

    /// The last stderr lines, joined, for an error message: half of its
    /// room, the trap's own message gets the other half.
    pub(crate) fn take_stderr_tail(&self) -> Option<String> {
        self.log.take_stderr_tail(MAX_GUEST_TEXT / 2)
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Most bytes of guest text (an error message, a log line, the stderr tail)
/// the host keeps. Past it the text is cut, with a note of how much.
pub(crate) const MAX_GUEST_TEXT: usize = 4096;

/// `text` from a guest, cut to [`MAX_GUEST_TEXT`] bytes on a character
/// boundary with a note of how many bytes were cut. Every string a guest
/// hands the host that may end up in an error, a dead letter or the log goes
/// through here: a 32 MiB error string would otherwise travel to gRPC
/// clients, reload responses and the dead-letter table whole.
pub(crate) fn guest_text(text: String) -> String {
    cut_to(text, MAX_GUEST_TEXT)
}

/// [`guest_text`] with another bound.
pub(crate) fn cut_to(text: String, max: usize) -> String {
    match cut(&text, max) {
        // A fresh string: truncating in place would keep the guest's
        // allocation (possibly many MiB) alive behind a 4 KiB message.
        Some(cut) => cut,
        None => text,
    }
}

/// `text` cut to at most `max` bytes (plus the note), or `None` if it fits.
pub(crate) fn cut(text: &str, max: usize) -> Option<String> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!(
        "{}… [{} more bytes cut]",
        &text[..end],
        text.len() - end
    ))
}

/// The wall clock, stopped at the Unix epoch: a plugin gets no time the host
/// does not hand it in the events themselves. (The monotonic clock is frozen
/// by `wasi`, which answers that interface itself.)
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_is_cut_on_a_char_boundary_with_a_note() {
        assert_eq!(guest_text("short".into()), "short");
        let long = "é".repeat(MAX_GUEST_TEXT); // two bytes each
        let cut = guest_text(long.clone());
        assert!(cut.len() < MAX_GUEST_TEXT + 64, "{}", cut.len());
        assert!(cut.starts_with(&long[..MAX_GUEST_TEXT]));
        assert!(
            cut.ends_with(&format!(
                "… [{} more bytes cut]",
                long.len() - MAX_GUEST_TEXT
            )),
            "{}",
            &cut[cut.len() - 40..]
        );
        // A boundary inside a character moves back to its start.
        let odd = format!("a{}", "é".repeat(MAX_GUEST_TEXT));
        let cut = guest_text(odd);
        assert!(cut.starts_with('a'));
        assert!(cut.contains("… ["));
    }
}
