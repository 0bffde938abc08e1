//! The threads that read and answer requests on the gRPC, HTTP and
//! Postgres listeners (`weir-api`), apart from the ingest runtime's.
//!
//! A tokio socket is read by the I/O driver of the runtime it was
//! registered with, whatever thread polls it, and a runtime's workers poll
//! their driver only between tasks. Under full-speed ingest the ingest
//! runtime's workers are always busy decoding, at `ingest_nice`: measured
//! with `perf sched` (benches/README.md), an HTTP query's connection waited
//! 70–140 ms there before its request was even read. So each listener
//! that queries come through is bound here, and its accept loop and
//! connections run here, on workers that are idle between requests. Writes
//! still do their work on the ingest runtime: a gRPC write method runs
//! there whole ([`WritesOnIngest`]), decoding included; an HTTP write
//! decodes on its blocking pool (see `weir_pipeline::WritePath`). A query
//! runs on the query engine's threads. What stays here is reading and
//! writing the sockets: HTTP/2 framing and TLS for every request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;
use tracing::warn;

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

/// Whether a gRPC method writes: these run on the ingest runtime, every
/// other method (Flight SQL, the monitor's API, health, reflection) here.
/// A write service added later runs here, at the process's priority, until
/// it is listed.
fn writes(path: &str) -> bool {
    let (service, method) = crate::auth::grpc::service_and_method(path);
    match service {
        "weir.v1.WriteService"
        | "opentelemetry.proto.collector.metrics.v1.MetricsService"
        | "opentelemetry.proto.collector.logs.v1.LogsService"
        | "opentelemetry.proto.collector.trace.v1.TraceService" => true,
        // Writes a table, or binds a prepared query's parameters.
        "arrow.flight.protocol.FlightService" => method == "DoPut",
        _ => false,
    }
}

/// A tower layer for the gRPC server on these threads: a method that
/// writes ([`writes`]) runs on the ingest runtime, decoding and handler
/// alike, so that writes stay at `ingest_nice`; the tasks a handler spawns
/// go there too.
#[derive(Clone)]
pub(crate) struct WritesOnIngest(pub(crate) Handle);

impl<S> tower_layer::Layer<S> for WritesOnIngest {
    type Service = WritesOnIngestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WritesOnIngestService {
            ingest: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(crate) struct WritesOnIngestService<S> {
    ingest: Handle,
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for WritesOnIngestService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, std::result::Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !writes(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        // A cheap clone (shared bytes), for the log should the call fail.
        let uri = request.uri().clone();
        let call = AbortOnDrop(self.ingest.spawn(inner.call(request)));
        Box::pin(async move {
            match call.await {
                Ok(answer) => answer,
                // A panic in a handler stays in its task, as it would here.
                Err(e) => {
                    warn!(method = %uri.path(), error = %e, "a gRPC write failed inside");
                    Ok(
                        tonic::Status::internal("the write failed with an internal error")
                            .into_http(),
                    )
                }
            }
        })
    }
}

/// A task that is aborted when nothing waits for it any more: a request
/// dropped here (the client went away) is dropped there too.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::time::Duration;

    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use weir_proto::v1::WriteRequest;
    use weir_proto::v1::write_service_client::WriteServiceClient;

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
    /// priority: health, metrics, SQL over HTTP, a Postgres connection and
    /// a gRPC health check are still answered, because their sockets are
    /// not that runtime's; a gRPC write waits for the ingest runtime, where
    /// it runs, and is answered once that runs again.
    #[test]
    fn queries_are_answered_while_the_ingest_runtime_is_stalled() {
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

        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let grpc = format!("http://{}", addrs.grpc);
        let health = client.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(grpc.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut health = HealthClient::new(channel);
            tokio::time::timeout(PATIENCE, health.check(HealthCheckRequest::default())).await
        });
        let status = health.unwrap().unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32);
        let mut writer = client.block_on(WriteServiceClient::connect(grpc)).unwrap();
        let write = client.spawn(async move { writer.write(WriteRequest::default()).await });
        // Not answered while the runtime it runs on is stalled (a wrong
        // routing would answer at once)...
        client.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
        assert!(
            !write.is_finished(),
            "a gRPC write ran off the ingest runtime"
        );
        release.send(()).unwrap();
        // ...and answered by the write path once it runs.
        let written = client.block_on(async { tokio::time::timeout(PATIENCE, write).await });
        let answer = written.unwrap().unwrap().unwrap().into_inner();
        assert_eq!(answer.rows_written, 0);

        stop.send(()).unwrap();
        server.join().unwrap().unwrap();
    }
}
