//! Weir's server: the gRPC write API, the HTTP SQL/health/metrics API, and
//! the one place where the engine's parts are assembled ([`serve`]).
//!
//! What flows in: gRPC `weir.v1.WriteService` calls (plus `grpc.health.v1`
//! and server reflection), OTLP exports and Arrow Flight `DoPut` streams,
//! HTTP requests (SQL, other systems' write APIs, raw bodies for ingest
//! sources), heartbeats. What flows out: acks once writes are durable, query results,
//! metrics, the status page; the monitor (`weir-monitor`) runs inside.
//!
//! Rooms: `config` (every setting: flag, env, TOML), `plugins` (start-up,
//! reload and file watching, per-plugin counters and the `weir_plugins`
//! table), `grpc`, `flight`, `http` and `otlp` (the front ends: each decodes with
//! `weir-protocols` and writes through the shared
//! `weir_pipeline::WritePath`), `postgres` and `flight_sql` (the query
//! front ends), `auth` (tokens, scopes, who may do what on every
//! listener), `tls` (certificates and the accept loops, TLS or not),
//! `front_ends` (the threads the gRPC, HTTP and Postgres listeners are
//! served on, apart from ingest's), `status` (errors → status codes, only there), `request_id`.

pub mod auth;
mod config;
mod error;
mod flight;
mod flight_sql;
mod front_ends;
mod grpc;
mod http;
mod otlp;
mod plugins;
mod postgres;
mod request_id;
mod status;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};
use weir_monitor::{Monitor, MonitorArgs};
use weir_pipeline::WritePath;
use weir_proto::v1::monitor_service_server::MonitorServiceServer;
use weir_proto::v1::write_service_server::WriteServiceServer;
use weir_query::QueryEngine;
use weir_storage::{Store, spawn_background};

pub use config::{
    LogFormat, NativeStages, PipelineSection, PluginsConfig, ServeArgs, ServerConfig, StageSection,
    TableSection, size as parse_size,
};
pub use error::{Error, Result};
pub use http::ARROW_STREAM;
pub use status::ErrorKind;

/// Where a started server listens.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The OTLP-only listeners, if configured.
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    /// The PostgreSQL wire protocol.
    pub pg: SocketAddr,
    /// Every listener speaks TLS.
    pub tls: bool,
}

/// Runs the server until `shutdown` resolves, then shuts down gracefully:
/// stop accepting, let open requests finish (up to `shutdown_grace`), persist
/// the buffer, sync and close the WAL. `on_bound` is told the listening
/// addresses once both sockets are bound and storage is open.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(BoundAddrs),
) -> Result<()> {
    let auth = Arc::new(open_doors(&config)?);
    let certs = config.tls.clone().map(tls::CertStore::load).transpose()?;
    let tls_for = |alpn: &[&[u8]]| certs.as_ref().map(|c| c.server_config(alpn)).transpose();
    let (grpc_tls, http_tls, pg_tls) = (
        tls_for(&[b"h2"])?,
        tls_for(&[b"h2", b"http/1.1"])?,
        // What PostgreSQL 17 clients ask for with `sslnegotiation=direct`.
        tls_for(&[b"postgresql"])?,
    );
    let store_config = config.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(store_config))
        .await
        .map_err(|e| Error::Internal(format!("opening storage: {e}")))??;
    let (stop_tx, stop_rx) = watch::channel(false);
    let background = spawn_background(store.clone(), config.background.clone(), stop_rx.clone());

    let pipelines = plugins::start(&config.plugins, &config.native_stages).await?;
    let write_path = WritePath::new(
        store.clone(),
        Arc::clone(&pipelines),
        config.max_write_inflight_bytes,
    );
    let monitor = Arc::new(Monitor::load(MonitorArgs {
        sections: config.monitor.clone(),
        settings: config.monitor_settings.clone(),
        write_path: write_path.clone(),
        data_dir: config.store.data_dir.clone(),
    })?);
    let query = Arc::new(
        QueryEngine::new(store.clone(), config.query.clone())?
            .with_system_table(Arc::new(plugins::PluginsTable::new(Arc::clone(&pipelines))))
            .with_system_table(monitor.alerts_table())
            .with_system_table(monitor.suppressions_table())
            .with_system_table(monitor.groups_table()),
    );
    monitor.start(Arc::clone(&query)).await?;
    let mut metrics = weir_metrics::Registry::default();
    write_path.metrics().register(&mut metrics);
    metrics.register_collector(Box::new(plugins::PluginCounters(Arc::clone(&pipelines))));
    monitor.register_metrics(&mut metrics);
    store.register_metrics(&mut metrics);
    query.metrics().register(&mut metrics);
    let http_state = Arc::new(http::HttpState {
        store: store.clone(),
        query: Arc::clone(&query),
        write_path: write_path.clone(),
        write_limits: config.write_limits,
        pipelines: Arc::clone(&pipelines),
        monitor: Arc::clone(&monitor),
        metrics,
        auth: Arc::clone(&auth),
        reload_args: config.plugins.reload_args.clone(),
        max_raw_body: config.max_message_bytes,
        ready: true.into(),
        started_ns: weir_pipeline::now_ns(),
    });
    let host_sampler = config.host_source.map(|source| {
        tokio::spawn(weir_monitor::host::run(
            source,
            write_path.clone(),
            stop_rx.clone(),
        ))
    });
    let watcher = config.plugins.watch_interval.map(|interval| {
        tokio::spawn(plugins::watch(
            Arc::clone(&pipelines),
            config.plugins.reload_args.clone(),
            interval,
            stop_rx.clone(),
        ))
    });

    // Requests are read and answered on threads of their own (see
    // `front_ends`); the work of a write comes back to these.
    let ingest = tokio::runtime::Handle::current();
    let front_ends = front_ends::FrontEnds::start()?;
    let grpc_listener = front_ends.bind(config.grpc_listen, "gRPC").await?;
    let http_listener = front_ends.bind(config.http_listen, "HTTP").await?;
    let pg_listener = front_ends.bind(config.pg_listen, "Postgres").await?;
    let otlp_grpc_listener = match config.otlp_grpc_listen {
        Some(addr) => Some(bind(addr, "OTLP gRPC").await?),
        None => None,
    };
    let otlp_http_listener = match config.otlp_http_listen {
        Some(addr) => Some(bind(addr, "OTLP HTTP").await?),
        None => None,
    };
    let addrs = BoundAddrs {
        grpc: local_addr(&grpc_listener)?,
        http: local_addr(&http_listener)?,
        otlp_grpc: otlp_grpc_listener.as_ref().map(local_addr).transpose()?,
        otlp_http: otlp_http_listener.as_ref().map(local_addr).transpose()?,
        pg: local_addr(&pg_listener)?,
        tls: certs.is_some(),
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<WriteServiceServer<grpc::WriteApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(weir_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("gRPC reflection: {e}")))?;
    let otlp_api = otlp::OtlpApi::new(write_path.clone(), config.write_limits);
    let (otlp_metrics, otlp_logs, otlp_traces) =
        otlp::grpc_services(otlp_api.clone(), config.max_message_bytes);
    let flight_service = flight::FlightApi::new(
        write_path.clone(),
        config.write_limits,
        flight_sql::FlightSql::new(Arc::clone(&query)),
    )
    .server(config.max_message_bytes);
    let write_service =
        WriteServiceServer::new(grpc::WriteApi::new(write_path, config.write_limits))
            .max_decoding_message_size(config.max_message_bytes);
    let grpc_router = tonic::transport::Server::builder()
        .layer(auth::grpc::AuthLayer(Arc::clone(&auth)))
        .layer(front_ends::WritesOnIngest(ingest))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(write_service)
        .add_service(MonitorServiceServer::new(grpc::MonitorApi::new(
            Arc::clone(&monitor),
        )))
        .add_service(flight_service)
        .add_service(otlp_metrics)
        .add_service(otlp_logs)
        .add_service(otlp_traces);
    // Each server is made where it runs: an accept loop registers each
    // connection with the runtime it runs on.
    let grpc_server = {
        let (tls, stop) = (grpc_tls.clone(), stop_rx.clone());
        async move {
            let conns = grpc_incoming(grpc_listener, tls, "gRPC", stop.clone());
            grpc_router
                .serve_with_incoming_shutdown(conns, wait_for_stop(stop))
                .await
        }
    };
    let http_server = {
        let router = http::router(Arc::clone(&http_state))
            .into_make_service_with_connect_info::<SocketAddr>();
        let (local, tls, stop) = (addrs.http, http_tls.clone(), stop_rx.clone());
        async move {
            let conns = http_incoming(http_listener, local, tls, "HTTP", stop.clone());
            axum::serve(conns, router)
                .with_graceful_shutdown(wait_for_stop(stop))
                .await
        }
    };

    let mut tasks = vec![
        front_ends.spawn_listener("gRPC", grpc_server),
        front_ends.spawn_listener("HTTP", http_server),
        front_ends.spawn_listener(
            "Postgres",
            postgres::PgFrontEnd::new(Arc::clone(&query), Arc::clone(&auth), pg_tls).serve(
                pg_listener,
                config.pg_max_connections,
                stop_rx.clone(),
            ),
        ),
    ];
    if let Some(listener) = otlp_grpc_listener {
        let (metrics, logs, traces) = otlp::grpc_services(otlp_api, config.max_message_bytes);
        let incoming = grpc_incoming(listener, grpc_tls.clone(), "OTLP gRPC", stop_rx.clone());
        tasks.push(spawn_listener(
            "OTLP gRPC",
            tonic::transport::Server::builder()
                .layer(auth::grpc::AuthLayer(Arc::clone(&auth)))
                .add_service(metrics)
                .add_service(logs)
                .add_service(traces)
                .serve_with_incoming_shutdown(incoming, wait_for_stop(stop_rx.clone())),
        ));
    }
    if let Some(listener) = otlp_http_listener {
        let local = local_addr(&listener)?;
        let server = axum::serve(
            http_incoming(
                listener,
                local,
                http_tls.clone(),
                "OTLP HTTP",
                stop_rx.clone(),
            ),
            http::otlp_router(Arc::clone(&http_state))
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(wait_for_stop(stop_rx.clone()));
        tasks.push(spawn_listener("OTLP HTTP", async move { server.await }));
    }
    if let Some(certs) = certs {
        tasks.push(tokio::spawn(tls::watch_for_reloads(certs, stop_rx.clone())));
    }
    info!(grpc = %addrs.grpc, http = %addrs.http, pg = %addrs.pg, data_dir = %config.store.data_dir.display(), "weir is serving");
    on_bound(addrs);

    shutdown.await;
    info!("shutting down: no new connections; draining open requests");
    http_state.ready.store(false, Ordering::Relaxed);
    health_reporter
        .set_not_serving::<WriteServiceServer<grpc::WriteApi>>()
        .await;
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        warn!(grace = ?config.shutdown_grace, "open requests did not finish in time; closing them");
    }
    // The monitor's last rows and its alert book go out before the store closes.
    monitor.shutdown().await;
    if let Some(host_sampler) = host_sampler {
        let _ = host_sampler.await;
    }
    let _ = background.await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    store.shutdown().await?;
    info!("shutdown complete");
    Ok(())
}

/// The authenticator, after the secure-by-default rule: a listener off
/// loopback needs a token to require, unless the operator said otherwise.
fn open_doors(config: &ServerConfig) -> Result<auth::Authenticator> {
    let exposed: Vec<SocketAddr> = config
        .listen_addrs()
        .into_iter()
        .filter(|addr| !addr.ip().is_loopback())
        .collect();
    let mut auth_config = config.auth.clone();
    auth_config.required = !exposed.is_empty() && !config.insecure_allow_unauthenticated;
    let auth = auth::Authenticator::new(auth_config)?;
    if auth.config().required && auth.token_count() == 0 {
        return Err(Error::Config(format!(
            "refusing to listen on {} (not loopback) with no token to require: create one with \
             `weir token create --scope admin --name NAME --data-dir {}`, listen on 127.0.0.1, or \
             pass --insecure-allow-unauthenticated",
            exposed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            config.store.data_dir.display()
        )));
    }
    if auth.enforced() {
        info!(
            tokens = auth.token_count(),
            "every listener requires a token"
        );
    } else if exposed.is_empty() {
        info!(
            "no token exists: listening on loopback only, without authentication \
             (`weir token create` locks every listener)"
        );
    } else {
        warn!(
            addresses = ?exposed,
            "listening beyond loopback WITHOUT authentication (--insecure-allow-unauthenticated)"
        );
    }
    Ok(auth)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Io {
        what: format!("binding the {what} listener to {addr}"),
        source,
    })
}

/// A gRPC listener's connections, through TLS if configured.
fn grpc_incoming(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    what: &'static str,
    stop: watch::Receiver<bool>,
) -> impl tokio_stream::Stream<Item = std::io::Result<tls::Conn>> {
    ReceiverStream::new(tls::accept_loop(listener, tls, what, stop)).map(|(conn, _)| Ok(conn))
}

/// What axum serves HTTP from: our accept loop, tapped (see below).
type HttpIncoming = axum::serve::TapIo<tls::HttpListener, fn(&mut tls::Conn)>;

/// An HTTP listener's connections, through TLS if configured, with each
/// peer's address for the handlers (the auth layer limits failures per
/// address).
fn http_incoming(
    listener: TcpListener,
    local: SocketAddr,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    what: &'static str,
    stop: watch::Receiver<bool>,
) -> HttpIncoming {
    use axum::serve::ListenerExt as _;
    let ready = tls::accept_loop(listener, tls, what, stop);
    // `tap_io` (a no-op) is what makes axum hand the peer's address to
    // handlers for a listener of ours.
    fn untouched(_: &mut tls::Conn) {}
    tls::HttpListener::new(ready, local).tap_io(untouched as fn(&mut tls::Conn))
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr> {
    listener.local_addr().map_err(|source| Error::Io {
        what: "reading a listener's address".into(),
        source,
    })
}

/// Runs a listener's server until it stops; a server that fails is logged.
fn spawn_listener<E: std::fmt::Display + 'static>(
    what: &'static str,
    server: impl Future<Output = std::result::Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(log_failure(what, server))
}

async fn log_failure<E: std::fmt::Display>(
    what: &'static str,
    server: impl Future<Output = std::result::Result<(), E>>,
) {
    if let Err(e) = server.await {
        warn!(error = %e, "the {what} server failed");
    }
}

pub(crate) async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
