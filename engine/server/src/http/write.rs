//! Other systems' write APIs over HTTP, so their clients can point at Weir
//! unchanged. Decoding is `weir-protocols`'; this is only each protocol's
//! HTTP convention — where the parameters are, which compression, and how
//! success, a partial write and a failure are answered.
//!
//! | route | protocol | success | partial write / failure |
//! |---|---|---|---|
//! | `POST /api/v2/write?bucket=…&precision=ns\|us\|ms\|s` | InfluxDB 2 line protocol | 204 | 400 (or the error's status) with `{"code": …, "message": …, "line": N}` |
//! | `POST /write?db=…&precision=n\|u\|ms\|s\|m\|h` | InfluxDB 1 line protocol | 204 | 400 (or the error's status) with `{"error": …}` |
//! | `POST /api/v1/prom/write` | Prometheus remote write 1.0 | 204 | 400 (or the error's status) with a text body |
//!
//! Bodies may be gzip (`Content-Encoding: gzip`) for line protocol, and are
//! snappy for remote write; either way they decompress to at most
//! `max_message_size`. A partial write has written and acknowledged every
//! good point before it answers 400: the client is told what was dropped,
//! and resending the same body would only repeat the drops.
//!
//! Weir has one namespace: the `bucket`, `org` and `db` parameters are
//! accepted and not used (nor required, for clients that send none).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tracing::warn;
use weir_pipeline::Ingested;
use weir_protocols::line_protocol::{self, Precision};
use weir_protocols::{Rejected, compression, remote_write};

use super::HttpState;
use crate::Error;
use crate::status::ErrorKind;

pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/api/v2/write", post(influx_v2))
        .route("/write", post(influx_v1))
        .route("/api/v1/prom/write", post(prometheus))
}

#[derive(Deserialize)]
struct InfluxParams {
    precision: Option<String>,
}

/// How InfluxDB answers errors: v2 with a code, v1 with only a message.
#[derive(Clone, Copy)]
enum InfluxApi {
    V1,
    V2,
}

impl InfluxApi {
    fn error(
        self,
        status: StatusCode,
        code: &str,
        message: String,
        line: Option<usize>,
    ) -> Response {
        let body = match self {
            InfluxApi::V2 => match line {
                Some(line) => serde_json::json!({ "code": code, "message": message, "line": line }),
                None => serde_json::json!({ "code": code, "message": message }),
            },
            InfluxApi::V1 => serde_json::json!({ "error": message }),
        };
        (status, axum::Json(body)).into_response()
    }

    fn failure(self, e: Error) -> Response {
        let kind = e.kind();
        if kind == ErrorKind::Internal {
            warn!(error = %e, "line protocol write failed");
        }
        self.error(kind.http_status(), kind.influx_code(), e.to_string(), None)
    }
}

async fn influx_v2(
    State(state): State<Arc<HttpState>>,
    Query(params): Query<InfluxParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    influx(state, InfluxApi::V2, params, &headers, body).await
}

async fn influx_v1(
    State(state): State<Arc<HttpState>>,
    Query(params): Query<InfluxParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    influx(state, InfluxApi::V1, params, &headers, body).await
}

async fn influx(
    state: Arc<HttpState>,
    api: InfluxApi,
    params: InfluxParams,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let precision = match params.precision.as_deref() {
        None | Some("") => Precision::Nanoseconds,
        Some(text) => match Precision::parse(text) {
            Some(p) => p,
            None => {
                let message =
                    format!("precision {text:?} is not one of ns, us, ms, s (v1 also n, u, m, h)");
                return api.error(StatusCode::BAD_REQUEST, "invalid", message, None);
            }
        },
    };
    let gzip = match content_encoding(headers) {
        Encoding::Identity => false,
        Encoding::Gzip => true,
        Encoding::Other(other) => {
            let message = format!("Content-Encoding {other:?} is not supported (gzip is)");
            return api.error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                message,
                None,
            );
        }
    };
    let written = write_line_protocol(&state, body, gzip, precision).await;
    match written {
        Ok(Ingested { rejected, .. }) if rejected.is_empty() => {
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ingested { rows, rejected }) => {
            let message = partial_write(&rejected, rows, "line");
            let line = rejected.reasons.first().map(|r| r.at);
            api.error(StatusCode::BAD_REQUEST, "invalid", message, line)
        }
        Err(e) => api.failure(e),
    }
}

/// Prometheus remote write 1.0.
async fn prometheus(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match content_encoding(&headers) {
        // Remote write is always snappy; a sender that says nothing means it too.
        Encoding::Identity => {}
        Encoding::Other(e) if e.eq_ignore_ascii_case("snappy") => {}
        Encoding::Gzip | Encoding::Other(_) => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "remote write bodies are snappy-compressed protobuf (Content-Encoding: snappy)\n",
            )
                .into_response();
        }
    }
    let written = write_remote(&state, body).await;
    match written {
        Ok(Ingested { rejected, .. }) if rejected.is_empty() => {
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ingested { rows, rejected }) => {
            let message = partial_write(&rejected, rows, "series");
            (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
        }
        Err(e) => {
            let status = e.http_status();
            if status.is_server_error() {
                warn!(error = %e, "remote write failed");
            }
            (status, format!("{e}\n")).into_response()
        }
    }
}

async fn write_line_protocol(
    state: &HttpState,
    body: Bytes,
    gzip: bool,
    precision: Precision,
) -> Result<Ingested, Error> {
    let (limit, limits) = (state.max_raw_body, state.write_limits);
    let admission = state.write_path.admit(body.len()).await?;
    let ingested = state
        .write_path
        .ingest(admission, 0, move |now_ns, tables| {
            let text = if gzip {
                Bytes::from(compression::gunzip(&body, limit)?)
            } else {
                body
            };
            line_protocol::decode(&text, precision, now_ns, limits, tables)
        })
        .await?;
    Ok(ingested)
}

async fn write_remote(state: &HttpState, body: Bytes) -> Result<Ingested, Error> {
    let (limit, limits) = (state.max_raw_body, state.write_limits);
    // The block states its decompressed size: admit that, so the budget
    // bounds what decoding will hold.
    let stated = compression::snappy_len(&body).unwrap_or(0).min(limit);
    let admission = state.write_path.admit(body.len().max(stated)).await?;
    let ingested = state
        .write_path
        .ingest(admission, 0, move |now_ns, tables| {
            let out = remote_write::decode_snappy(&body, limit, now_ns, limits, tables)?;
            if out.stale_markers > 0 {
                tracing::debug!(
                    stale_markers = out.stale_markers,
                    "remote write: staleness markers skipped"
                );
            }
            Ok(out.decoded)
        })
        .await?;
    Ok(ingested)
}

fn partial_write(rejected: &Rejected, rows: u64, what: &str) -> String {
    format!(
        "partial write: {} points dropped, {rows} written: {}",
        rejected.points,
        rejected.summary(what)
    )
}

enum Encoding<'a> {
    Identity,
    Gzip,
    Other(&'a str),
}

fn content_encoding(headers: &HeaderMap) -> Encoding<'_> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim())
    {
        None | Some("") | Some("identity") => Encoding::Identity,
        Some(e) if e.eq_ignore_ascii_case("gzip") => Encoding::Gzip,
        Some(e) => Encoding::Other(e),
    }
}
