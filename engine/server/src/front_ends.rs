//! The threads that read and answer HTTP and Postgres requests
//! (`weir-api`), apart from the ingest runtime's.
//!
//! A tokio socket is read by the I/O driver of the runtime it was
//! registered with, whatever thread polls it, and a runtime's workers poll
//! their driver only between tasks. Under full-speed ingest the ingest
//! runtime's workers are always busy decoding, at `ingest_nice`: measured
//! with `perf sched` (benches/README.md), an HTTP query's connection waited
//! 70–140 ms there before its request was even read. So each front end's
//! listener is bound here, and its accept loop and connections run here,
//! on workers that are idle between requests. A write that arrives this
//! way still decodes on the ingest runtime's blocking pool (see
//! `weir_pipeline::WritePath`); a query runs on the query engine's threads.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// The front ends' runtime. Its threads inherit the nice value of the
/// thread that starts it: under `weir serve` that is the main thread, at
/// the process's own priority, like the query engine's.
pub(crate) struct FrontEnds {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl FrontEnds {
    pub(crate) fn start() -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("weir-api")
            .enable_all()
            .build()
            .map(|runtime| Self {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            })
            .map_err(|e| Error::Internal(format!("starting the front-end threads: {e}")))
    }

    /// A listener on `addr`, registered with this runtime's I/O driver.
    pub(crate) async fn bind(&self, addr: SocketAddr, what: &'static str) -> Result<TcpListener> {
        self.handle
            .spawn(crate::bind(addr, what))
            .await
            .map_err(|e| Error::Internal(format!("binding the {what} listener: {e}")))?
    }

    /// Runs a front end's server here until it stops. Build the server's
    /// accept loop inside `server`, so that the connections it accepts are
    /// registered here too.
    pub(crate) fn spawn_listener<E: std::fmt::Display + 'static>(
        &self,
        what: &'static str,
        server: impl Future<Output = std::result::Result<(), E>> + Send + 'static,
    ) -> JoinHandle<()> {
        self.handle.spawn(crate::log_failure(what, server))
    }
}

impl Drop for FrontEnds {
    fn drop(&mut self) {
        // Dropped inside the ingest runtime, where a blocking shutdown would
        // panic; by then the listeners have stopped or outlived the grace.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
