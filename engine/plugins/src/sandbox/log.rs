//! A guest's voice: `weir:plugin/log` and its stdout and stderr, all landing
//! in Weir's `tracing` log under one budget per call.
//!
//! A guest can call `log` in a tight loop; unbudgeted, one call wrote tens of
//! megabytes of log. So each line is cut to [`MAX_GUEST_TEXT`] bytes, and a
//! call (or `init`) may log at most [`LOG_LINES_PER_CALL`] lines and
//! [`LOG_BYTES_PER_CALL`] bytes over the three channels together. Lines past
//! the budget are dropped, counted in [`PluginStats::log_dropped`] and
//! summed up in one warning when the call ends; the call itself goes on.
//!
//! Stderr also feeds a short tail, kept whatever the budget, because a Rust
//! guest's panic message lands there just before the trap it explains.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::{GuestState, MAX_GUEST_TEXT, cut, cut_to};
use crate::bindings::log::Level;
use crate::stats::PluginStats;

/// Most lines one call (or `init`) of a plugin may log, over `log`, stdout
/// and stderr together; the rest are dropped and counted.
pub const LOG_LINES_PER_CALL: usize = 200;

/// Most bytes of log lines one call (or `init`) may write.
pub const LOG_BYTES_PER_CALL: usize = 64 << 10;

/// Stderr lines kept to explain a trap.
const TAIL_LINES: usize = 8;

/// How much a guest may hand stdout or stderr in one write. Writes never
/// wait, so this only sizes the guest's chunks.
const WRITE_PERMIT: usize = 64 << 10;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are counters and a line buffer: a panic elsewhere
    // cannot leave them in a state worse than slightly off.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The log of one guest instance: its budget for the running call, and its
/// stderr tail.
pub(crate) struct GuestLog {
    plugin: Arc<str>,
    stats: Arc<PluginStats>,
    spent: Mutex<Spent>,
    stderr_tail: Mutex<VecDeque<String>>,
}

#[derive(Default)]
struct Spent {
    lines: usize,
    bytes: usize,
    dropped: u64,
}

#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl GuestLog {
    pub(crate) fn new(plugin: Arc<str>, stats: Arc<PluginStats>) -> Self {
        Self {
            plugin,
            stats,
            spent: Mutex::new(Spent::default()),
            stderr_tail: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn start_call(&self) {
        self.settle();
    }

    pub(crate) fn end_call(&self) {
        self.settle();
    }

    /// Reports what the call dropped and starts a fresh budget.
    fn settle(&self) {
        let spent = std::mem::take(&mut *lock(&self.spent));
        if spent.dropped > 0 {
            tracing::warn!(
                plugin = &*self.plugin,
                dropped = spent.dropped,
                "plugin logged past its budget of {LOG_LINES_PER_CALL} lines and {LOG_BYTES_PER_CALL} bytes per call; {} lines were dropped",
                spent.dropped
            );
        }
    }

    /// Whether a line of `len` bytes fits the call's budget; counts it
    /// either way.
    fn admit(&self, len: usize) -> bool {
        let mut spent = lock(&self.spent);
        if spent.lines < LOG_LINES_PER_CALL && spent.bytes + len <= LOG_BYTES_PER_CALL {
            spent.lines += 1;
            spent.bytes += len;
            true
        } else {
            spent.dropped += 1;
            PluginStats::add(&self.stats.log_dropped, 1);
            false
        }
    }

    /// One line from the guest, cut and budgeted.
    fn line(&self, level: Level, stream: Option<Stream>, text: &str) {
        let text = match cut(text, MAX_GUEST_TEXT) {
            Some(cut) => Cow::Owned(cut),
            None => Cow::Borrowed(text),
        };
        if !self.admit(text.len()) {
            return;
        }
        let plugin = &*self.plugin;
        let stream = stream.map_or("log", Stream::as_str);
        match level {
            Level::Trace => tracing::trace!(plugin, stream, "{text}"),
            Level::Debug => tracing::debug!(plugin, stream, "{text}"),
            Level::Info => tracing::info!(plugin, stream, "{text}"),
            Level::Warn => tracing::warn!(plugin, stream, "{text}"),
            Level::Error => tracing::error!(plugin, stream, "{text}"),
        }
    }

    fn remember_stderr(&self, line: &str) {
        let mut tail = lock(&self.stderr_tail);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }

    /// The last stderr lines that fit in `max` bytes (the last words
    /// matter most: a panic message comes last), and forgets them.
    pub(crate) fn take_stderr_tail(&self, max: usize) -> Option<String> {
        let lines: Vec<String> = lock(&self.stderr_tail).drain(..).collect();
        let mut kept = Vec::new();
        let mut bytes = 0;
        for line in lines.iter().rev() {
            if !kept.is_empty() && bytes + line.len() + 1 > max {
                break;
            }
            bytes += line.len() + 1;
            kept.push(line.as_str());
        }
        if kept.is_empty() {
            return None;
        }
        kept.reverse();
        Some(cut_to(kept.join("\n"), max))
    }
}

impl crate::bindings::log::Host for GuestState {
    fn log(&mut self, level: Level, message: String) {
        self.log.line(level, None, &message);
    }
}

/// A guest's stdout or stderr, written line by line into the guest's log.
///
/// It is a synchronous [`OutputStream`] that is always ready: a write is
/// handled before it returns, so neither `blocking-write-and-flush` nor the
/// stream's pollable ever waits, and no background task is spawned (the
/// default `StdoutStream` adapter writes from a tokio task and makes the
/// guest wait for it).
#[derive(Clone)]
pub(crate) struct LogStream {
    log: Arc<GuestLog>,
    stream: Stream,
    /// The line being written, shared by every handle a guest opens on the
    /// stream (each `get-stdout` makes one).
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    pub(crate) fn new(log: Arc<GuestLog>, stream: Stream) -> Self {
        Self {
            log,
            stream,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if let Stream::Stderr = self.stream {
            self.remember_stderr(line);
        }
        self.log.line(Level::Info, Some(self.stream), line);
    }

    fn remember_stderr(&self, line: &str) {
        match cut(line, MAX_GUEST_TEXT) {
            Some(cut) => self.log.remember_stderr(&cut),
            None => self.log.remember_stderr(line),
        }
    }

    /// Splits `buf` into lines of at most [`MAX_GUEST_TEXT`] bytes (a longer
    /// one is emitted in pieces) and emits the complete ones.
    fn write_bytes(&self, mut buf: &[u8]) {
        let mut partial = lock(&self.partial);
        while !buf.is_empty() {
            let room = MAX_GUEST_TEXT.saturating_sub(partial.len()).max(1);
            let chunk = &buf[..buf.len().min(room)];
            match chunk.iter().position(|b| *b == b'\n') {
                Some(newline) => {
                    partial.extend_from_slice(&chunk[..newline]);
                    self.emit(&partial);
                    partial.clear();
                    buf = &buf[newline + 1..];
                }
                None => {
                    partial.extend_from_slice(chunk);
                    buf = &buf[chunk.len()..];
                    if partial.len() >= MAX_GUEST_TEXT {
                        self.emit(&partial);
                        partial.clear();
                    }
                }
            }
        }
    }

    fn flush_partial(&self) {
        let mut partial = lock(&self.partial);
        if !partial.is_empty() {
            self.emit(&partial);
            partial.clear();
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
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
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> (Arc<GuestLog>, Arc<PluginStats>) {
        let stats = Arc::new(PluginStats::default());
        (
            Arc::new(GuestLog::new(Arc::from("t"), Arc::clone(&stats))),
            stats,
        )
    }

    #[test]
    fn a_flood_is_cut_at_the_budget_and_counted_and_the_next_call_starts_afresh() {
        let (log, stats) = log();
        log.start_call();
        for _ in 0..LOG_LINES_PER_CALL + 50 {
            log.line(Level::Info, None, "x");
        }
        let out = LogStream::new(Arc::clone(&log), Stream::Stdout);
        out.write_bytes(b"a\nb\nc\n");
        assert_eq!(stats.snapshot().log_dropped, 53);
        log.end_call();

        log.start_call();
        log.line(Level::Info, None, "fits again");
        assert_eq!(stats.snapshot().log_dropped, 53);
    }

    #[test]
    fn the_byte_budget_holds_for_long_lines() {
        let (log, stats) = log();
        log.start_call();
        let long = "y".repeat(10 * MAX_GUEST_TEXT);
        for _ in 0..100 {
            log.line(Level::Warn, None, &long);
        }
        // Each line is cut to about MAX_GUEST_TEXT bytes, so the byte budget
        // admits LOG_BYTES_PER_CALL / that many.
        let admitted = 100 - stats.snapshot().log_dropped as usize;
        assert!(admitted > 0 && admitted <= LOG_BYTES_PER_CALL / MAX_GUEST_TEXT);
        assert!(lock(&log.spent).bytes <= LOG_BYTES_PER_CALL);
    }

    #[test]
    fn stderr_keeps_its_tail_past_the_budget_and_splits_long_lines() {
        let (log, stats) = log();
        log.start_call();
        let err = LogStream::new(Arc::clone(&log), Stream::Stderr);
        for i in 0..LOG_LINES_PER_CALL + 10 {
            err.write_bytes(format!("line {i}\n").as_bytes());
        }
        err.write_bytes(b"panicked at the end");
        err.flush_partial();
        let tail = log.take_stderr_tail(MAX_GUEST_TEXT).unwrap();
        assert!(tail.ends_with("panicked at the end"), "{tail}");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(stats.snapshot().log_dropped >= 10);
        assert_eq!(log.take_stderr_tail(MAX_GUEST_TEXT), None);

        // A long line is split; the tail keeps the last pieces that fit.
        err.write_bytes(&vec![b'z'; 3 * MAX_GUEST_TEXT + 1]);
        err.flush_partial();
        let tail = log.take_stderr_tail(MAX_GUEST_TEXT / 2).unwrap();
        assert_eq!(tail, "z");
        err.write_bytes(&vec![b'z'; 3 * MAX_GUEST_TEXT]);
        err.flush_partial();
        let tail = log.take_stderr_tail(MAX_GUEST_TEXT / 2).unwrap();
        assert!(tail.len() < MAX_GUEST_TEXT / 2 + 64, "{}", tail.len());
        assert!(tail.ends_with("bytes cut]"), "{tail}");
    }
}
