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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::{BoundAddrs, ServeArgs};

    /// Long enough for a loaded CI machine; a request that waits on the
    /// stalled ingest thread never answers at all.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// A new connection to `addr`, `request` sent on it.
    fn send(addr: std::net::SocketAddr, request: &[u8]) -> TcpStream {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.write_all(request).unwrap();
        conn
    }

    fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: weir\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut answer = String::new();
        // A read timeout ends it early, with what came so far.
        let _ = send(addr, request.as_bytes()).read_to_string(&mut answer);
        answer
    }

    /// Every thread of the ingest runtime (here, its only one) blocked, as
    /// its workers are, in effect, when decoding at full speed at a low
    /// priority: health, metrics, SQL over HTTP and a Postgres connection
    /// are still answered, because their sockets are not that runtime's.
    #[test]
    fn http_and_postgres_answer_while_the_ingest_runtime_is_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let loopback = "127.0.0.1:0".parse().ok();
        let config = ServeArgs {
            data_dir: Some(dir.path().to_path_buf()),
            grpc_listen: loopback,
            http_listen: loopback,
            pg_listen: loopback,
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let (bound_tx, bound) = mpsc::channel::<(BoundAddrs, tokio::runtime::Handle)>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let ingest = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let handle = ingest.handle().clone();
            ingest.block_on(crate::serve(
                config,
                async move {
                    let _ = stopped.await;
                },
                move |addrs| bound_tx.send((addrs, handle)).unwrap(),
            ))
        });
        let (addrs, ingest) = bound.recv_timeout(PATIENCE).unwrap();

        let (release, stalled) = mpsc::channel::<()>();
        let (blocked_tx, blocked) = mpsc::channel::<()>();
        ingest.spawn(async move {
            blocked_tx.send(()).unwrap();
            // Blocks the runtime's one thread until released.
            let _ = stalled.recv();
        });
        blocked.recv_timeout(PATIENCE).unwrap();

        let health = http(addrs.http, "GET", "/health/ready", "");
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let metrics = http(addrs.http, "GET", "/metrics", "");
        assert!(metrics.contains("weir_queries"), "{metrics}");
        let answer = http(addrs.http, "POST", "/api/v1/sql", "SELECT 41 + 1 AS answer");
        assert!(answer.contains(r#"[{"answer":42}]"#), "{answer}");
        // A startup message (protocol 3.0, user weir): the server's first
        // answer is an authentication message, 'R'.
        let mut startup = Vec::new();
        let params = b"user\0weir\0\0";
        startup.extend_from_slice(&(8 + params.len() as i32).to_be_bytes());
        startup.extend_from_slice(&196_608_i32.to_be_bytes());
        startup.extend_from_slice(params);
        let mut first = [0];
        let read = send(addrs.pg, &startup).read_exact(&mut first);
        assert!(read.is_ok() && first == *b"R", "{read:?} {first:?}");

        release.send(()).unwrap();
        stop.send(()).unwrap();
        server.join().unwrap().unwrap();
    }
}
