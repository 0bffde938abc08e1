//! What a guest may touch: its world's imports, and a deny-all WASI.
//!
//! A Rust guest built for `wasm32-wasip2` imports WASI interfaces through
//! `std` (environment, stdio, clocks, filesystem preopens, random) even when
//! it never uses them, so a host that linked no WASI would refuse every Rust
//! plugin. Weir links WASI p2 with a context that grants nothing — no
//! preopened directories, an empty environment, no arguments, sockets and
//! name lookup off, both clocks frozen at the epoch — and routes the guest's
//! stdout and stderr into Weir's log. On top of that, [`check_imports`]
//! refuses at load time any component importing an interface outside
//! [`GRANTED_WASI`] (sockets, HTTP, anything newer), naming what it asked for.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use crate::PluginKind;

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
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// The last lines the guest wrote to stderr, kept to explain a trap
    /// (a Rust panic message lands here before the abort).
    pub(crate) stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl GuestState {
    pub fn new(plugin: Arc<str>, memory_bytes: usize) -> Self {
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let wasi = WasiCtxBuilder::new()
            .stdout(LogStream::new(Arc::clone(&plugin), "stdout", None))
            .stderr(LogStream::new(
                Arc::clone(&plugin),
                "stderr",
                Some(Arc::clone(&stderr_tail)),
            ))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
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
            plugin,
            wasi,
            table: ResourceTable::new(),
            limits,
            stderr_tail,
        }
    }

    /// The last stderr lines, joined, for an error message.
    pub(crate) fn take_stderr_tail(&self) -> Option<String> {
        let mut tail = self.stderr_tail.lock().ok()?;
        if tail.is_empty() {
            return None;
        }
        let text = tail.drain(..).collect::<Vec<_>>().join("\n");
        Some(text)
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

impl crate::bindings::log::Host for GuestState {
    fn log(&mut self, level: crate::bindings::log::Level, message: String) {
        use crate::bindings::log::Level;
        let plugin = &*self.plugin;
        // A guest may log anything; keep one line from flooding the log.
        let message = truncate(&message, 4096);
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Both WASI clocks, stopped at the Unix epoch: a plugin gets no time the
/// host does not hand it in the events themselves.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A guest's stdout or stderr, written line by line into Weir's log.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
    partial: Arc<Mutex<Vec<u8>>>,
}

const TAIL_LINES: usize = 8;
const MAX_LINE: usize = 4096;

impl LogStream {
    fn new(
        plugin: Arc<str>,
        stream: &'static str,
        tail: Option<Arc<Mutex<VecDeque<String>>>>,
    ) -> Self {
        Self {
            plugin,
            stream,
            tail,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = truncate(line.trim_end(), MAX_LINE);
        if line.is_empty() {
            return;
        }
        tracing::info!(plugin = &*self.plugin, stream = self.stream, "{line}");
        if let Some(tail) = &self.tail
            && let Ok(mut tail) = tail.lock()
        {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
        }
    }

    fn write_bytes(&self, buf: &[u8]) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        for &byte in buf {
            if byte == b'\n' || partial.len() >= MAX_LINE {
                self.emit(&partial);
                partial.clear();
                if byte == b'\n' {
                    continue;
                }
            }
            partial.push(byte);
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Ok(mut partial) = self.partial.lock() {
            self.emit(&partial);
            partial.clear();
        }
        Poll::Ready(Ok(()))
    }
}
