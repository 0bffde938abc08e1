//! The HTTP front end: SQL, health, metrics, and a persist trigger.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/sql` | body: the SQL text, or JSON `{"query": "..."}`. Answer by `Accept`: `application/json` (default; an array of row objects), `text/csv`, `application/vnd.apache.arrow.stream` |
//! | `GET /health` | 200 while the process runs |
//! | `GET /health/ready` | 200 once storage is open (WAL replayed, catalog loaded), 503 while shutting down |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /api/v1/persist` | persist the write buffer to Parquet now; answers `{"files":N,"rows":N}` |
//! | `POST /api/v1/ingest/{source}` | a raw body (webhook, scrape, check output) for the source's adapter; `Content-Type` is passed on; answers `{"rows_written":N}` |
//! | `POST /api/v1/plugins/reload` | re-read the config and plugins, swap them in; answers which were loaded and kept |
//! | `GET /api/v1/plugins` | the loaded plugins and their counters (also SQL: `weir_plugins`) |
//! | `/status`, `/api/v1/status`, `/api/v1/alerts`, `/api/v1/probes…`, `/api/v1/heartbeat/{name}` | the monitor (see `http/monitor.rs`) |
//! | `/api/v1/suppressions…`, `/api/v2/silences…` | suppressions (see `http/suppressions.rs`) |
//! | `POST /api/v1/events`, `/api/v2/alerts` | events (see `http/events.rs`) |
//! | `POST /api/v2/write`, `/write`, `/api/v1/prom/write` | InfluxDB line protocol and Prometheus remote write (see `http/write.rs`) |
//! | `POST /v1/metrics`, `/v1/logs`, `/v1/traces` | OTLP/HTTP (see `otlp.rs`; also on the OTLP HTTP listener) |
//!
//! Errors answer with a JSON body `{"error": "..."}` and the status from `status.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::record_batch::RecordBatch;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::{Instrument, info_span, warn};
use weir_query::{QueryEngine, QueryResult};
use weir_storage::Store;

use crate::config::ServeArgs;
use crate::{Error, plugins, request_id};

mod events;
mod monitor;
mod suppressions;
mod write;

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// Largest SQL request body accepted.
const MAX_SQL_BODY: usize = 1 << 20;

pub struct HttpState {
    pub store: Store,
    pub query: Arc<QueryEngine>,
    pub write_path: weir_pipeline::WritePath,
    pub write_limits: weir_model::WriteLimits,
    pub pipelines: Arc<weir_pipeline::Pipelines>,
    pub monitor: Arc<weir_monitor::Monitor>,
    /// Everything `/metrics` reports; each component registered its own.
    pub metrics: weir_metrics::Registry,
    pub auth: Arc<crate::auth::Authenticator>,
    pub reload_args: Option<ServeArgs>,
    pub max_raw_body: usize,
    pub ready: AtomicBool,
    /// When the server started (ns since the epoch), for status answers.
    pub started_ns: i64,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/sql", post(sql))
        .route("/api/v1/persist", post(persist))
        .route("/api/v1/plugins", get(list_plugins))
        .route("/api/v1/plugins/reload", post(reload_plugins))
        .merge(monitor::routes())
        .merge(suppressions::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SQL_BODY))
        .merge(
            Router::new()
                .route("/api/v1/ingest/{source}", post(ingest_raw))
                .merge(events::routes())
                .merge(write::routes())
                .merge(crate::otlp::http_routes())
                .layer(axum::extract::DefaultBodyLimit::max(state.max_raw_body)),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.auth),
            crate::auth::http::require,
        ))
        .layer(axum::middleware::from_fn(with_request_id))
        .with_state(state)
}

/// OTLP/HTTP alone, for its own listener.
pub fn otlp_router(state: Arc<HttpState>) -> Router {
    crate::otlp::http_routes()
        .layer(axum::extract::DefaultBodyLimit::max(state.max_raw_body))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.auth),
            crate::auth::http::require,
        ))
        .layer(axum::middleware::from_fn(with_request_id))
        .with_state(state)
}

async fn with_request_id(request: Request, next: Next) -> Response {
    let id = request_id::accept(
        request
            .headers()
            .get(request_id::HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let span = info_span!("http", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    response
}

async fn ready(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    let text = weir_metrics::encode(&state.metrics);
    ([(header::CONTENT_TYPE, weir_metrics::CONTENT_TYPE)], text)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        if status.is_server_error() {
            warn!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (status, axum::Json(body)).into_response()
    }
}

async fn persist(State(state): State<Arc<HttpState>>) -> Result<Response, Error> {
    let report = state.store.persist().await?;
    Ok(
        axum::Json(serde_json::json!({ "files": report.files, "rows": report.rows }))
            .into_response(),
    )
}

async fn ingest_raw(
    State(state): State<Arc<HttpState>>,
    axum::extract::Path(source): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rows = state
        .write_path
        .write_raw(&source, content_type, &body)
        .await?;
    Ok(axum::Json(serde_json::json!({ "rows_written": rows })).into_response())
}

async fn reload_plugins(State(state): State<Arc<HttpState>>) -> Result<Response, Error> {
    let report = plugins::reload(&state.pipelines, state.reload_args.as_ref()).await?;
    Ok(
        axum::Json(serde_json::json!({ "loaded": report.loaded, "kept": report.kept }))
            .into_response(),
    )
}

async fn list_plugins(State(state): State<Arc<HttpState>>) -> Response {
    let plugins: Vec<serde_json::Value> = state
        .pipelines
        .plugins()
        .iter()
        .map(|r| {
            serde_json::json!({
                "pipeline": r.pipeline,
                "plugin": r.plugin,
                "kind": r.kind.as_str(),
                "path": r.path,
                "sha256": r.digest,
                "calls": r.stats.calls,
                "events_in": r.stats.events_in,
                "events_out": r.stats.events_out,
                "rejections": r.stats.rejections,
                "traps": r.stats.traps,
                "timeouts": r.stats.timeouts,
                "limit_hits": r.stats.limit_hits,
                "restarts": r.stats.restarts,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "plugins": plugins, "sources": state.pipelines.sources() }))
        .into_response()
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Csv,
    Arrow,
}

impl Format {
    fn from_accept(headers: &HeaderMap) -> Format {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains(ARROW_STREAM) {
            Format::Arrow
        } else if accept.contains("text/csv") {
            Format::Csv
        } else {
            Format::Json
        }
    }
}

fn query_text(headers: &HeaderMap, body: &Bytes) -> Result<String, Error> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = if is_json {
        #[derive(serde::Deserialize)]
        struct Body {
            query: String,
        }
        serde_json::from_slice::<Body>(body)
            .map_err(|e| Error::Decode(format!("expected JSON {{\"query\": \"...\"}}: {e}")))?
            .query
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| Error::Decode("the SQL text is not valid UTF-8".into()))?
    };
    if text.trim().is_empty() {
        return Err(Error::Decode("empty query".into()));
    }
    Ok(text)
}

async fn sql(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let text = query_text(&headers, &body)?;
    let format = Format::from_accept(&headers);
    let result = state.query.sql(&text).await?;
    encode(format, &result)
}

fn encode(format: Format, result: &QueryResult) -> Result<Response, Error> {
    let (content_type, bytes) = match format {
        Format::Json => ("application/json", encode_json(&result.batches)?),
        Format::Csv => ("text/csv", encode_csv(&result.batches)?),
        Format::Arrow => (ARROW_STREAM, encode_arrow(result)?),
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from(bytes)).into_response())
}

fn encode_json(batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let err = |e: arrow::error::ArrowError| Error::Encode {
        format: "JSON",
        message: e.to_string(),
    };
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch).map_err(err)?;
    }
    // Writes `[]` for an empty result.
    writer.finish().map_err(err)?;
    Ok(writer.into_inner())
}

fn encode_csv(batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let err = |e: arrow::error::ArrowError| Error::Encode {
        format: "CSV",
        message: e.to_string(),
    };
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        for batch in batches {
            writer.write(batch).map_err(err)?;
        }
    }
    Ok(out)
}

fn encode_arrow(result: &QueryResult) -> Result<Vec<u8>, Error> {
    let err = |e: arrow::error::ArrowError| Error::Encode {
        format: "Arrow IPC",
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema).map_err(err)?;
    for batch in &result.batches {
        writer.write(batch).map_err(err)?;
    }
    writer.finish().map_err(err)?;
    drop(writer);
    Ok(out)
}
