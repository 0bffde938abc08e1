//! OpenTelemetry's OTLP over both of its transports: the gRPC collector
//! services (`opentelemetry.proto.collector.{metrics,logs,trace}.v1`) and
//! OTLP/HTTP (`POST /v1/metrics`, `/v1/logs`, `/v1/traces`, protobuf or
//! JSON, optionally gzip). Decoding and the mapping to tables are
//! `weir_protocols::otlp`'s; this is only OTLP's conventions for answers:
//!
//! - points, records or spans dropped from a request whose others were
//!   written are reported in the response's `partial_success` (their
//!   count and the first reasons), with gRPC OK / HTTP 200: OTLP senders
//!   must not retry them;
//! - a request refused whole gets the gRPC status of its error kind, or the
//!   HTTP status with a `google.rpc.Status` body in the request's encoding.
//!
//! Both are served on Weir's own gRPC and HTTP ports, and also on the
//! dedicated OTLP listeners when configured (`otlp_grpc_listen`,
//! `otlp_http_listen`: the SDKs' defaults are `:4317` and `:4318`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use tonic::{Request, Status};
use tracing::{Instrument, info_span, warn};
use weir_model::WriteLimits;
use weir_pipeline::{Ingested, WritePath};
use weir_protocols::otlp::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use weir_protocols::otlp::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use weir_protocols::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use weir_protocols::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use weir_protocols::otlp::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use weir_protocols::otlp::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use weir_protocols::otlp::{self, Encoding};
use weir_protocols::{Decoded, Rejected, Tables, compression};

use crate::http::HttpState;
use crate::{Error, request_id};

/// The OTLP collector services, sharing Weir's write path.
#[derive(Clone)]
pub struct OtlpApi {
    path: WritePath,
    limits: WriteLimits,
}

/// The three gRPC services, each accepting messages up to `max_message`
/// (once decompressed: tonic bounds a gzip'd message by the same limit).
pub fn grpc_services(
    api: OtlpApi,
    max_message: usize,
) -> (
    MetricsServiceServer<OtlpApi>,
    LogsServiceServer<OtlpApi>,
    TraceServiceServer<OtlpApi>,
) {
    // gzip in (the Collector's default) and out when the client accepts it.
    use tonic::codec::CompressionEncoding::Gzip;
    (
        MetricsServiceServer::new(api.clone())
            .max_decoding_message_size(max_message)
            .accept_compressed(Gzip)
            .send_compressed(Gzip),
        LogsServiceServer::new(api.clone())
            .max_decoding_message_size(max_message)
            .accept_compressed(Gzip)
            .send_compressed(Gzip),
        TraceServiceServer::new(api)
            .max_decoding_message_size(max_message)
            .accept_compressed(Gzip)
            .send_compressed(Gzip),
    )
}

/// One OTLP signal: its request, response and decoder, so each transport
/// is written once for all three.
trait Signal: Message + Default + serde::de::DeserializeOwned + Send + 'static {
    type Response: Message + serde::Serialize;
    /// What a dropped item is called in messages ("data point", …).
    const ITEM: &'static str;
    fn to_tables(
        &self,
        now_ns: i64,
        limits: WriteLimits,
        tables: &dyn Tables,
    ) -> weir_protocols::Result<Decoded>;
    fn response(rejected: Option<(i64, String)>) -> Self::Response;
}

impl Signal for ExportMetricsServiceRequest {
    type Response = ExportMetricsServiceResponse;
    const ITEM: &'static str = "data point";
    fn to_tables(
        &self,
        now_ns: i64,
        limits: WriteLimits,
        tables: &dyn Tables,
    ) -> weir_protocols::Result<Decoded> {
        let metrics = otlp::metrics::decode(self, now_ns, limits, tables)?;
        if metrics.no_value > 0 {
            tracing::debug!(
                points = metrics.no_value,
                "OTLP: points without a recorded value skipped"
            );
        }
        Ok(metrics.decoded)
    }
    fn response(rejected: Option<(i64, String)>) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: rejected.map(|(points, message)| ExportMetricsPartialSuccess {
                rejected_data_points: points,
                error_message: message,
            }),
        }
    }
}

impl Signal for ExportLogsServiceRequest {
    type Response = ExportLogsServiceResponse;
    const ITEM: &'static str = "log record";
    fn to_tables(
        &self,
        now_ns: i64,
        limits: WriteLimits,
        tables: &dyn Tables,
    ) -> weir_protocols::Result<Decoded> {
        otlp::logs::decode(self, now_ns, limits, tables)
    }
    fn response(rejected: Option<(i64, String)>) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: rejected.map(|(records, message)| ExportLogsPartialSuccess {
                rejected_log_records: records,
                error_message: message,
            }),
        }
    }
}

impl Signal for ExportTraceServiceRequest {
    type Response = ExportTraceServiceResponse;
    const ITEM: &'static str = "span";
    fn to_tables(
        &self,
        now_ns: i64,
        limits: WriteLimits,
        tables: &dyn Tables,
    ) -> weir_protocols::Result<Decoded> {
        otlp::traces::decode(self, now_ns, limits, tables)
    }
    fn response(rejected: Option<(i64, String)>) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: rejected.map(|(spans, message)| ExportTracePartialSuccess {
                rejected_spans: spans,
                error_message: message,
            }),
        }
    }
}

/// The response for what was written: `partial_success` only if something
/// was dropped (OTLP: "the server MUST leave it unset" otherwise).
fn response<S: Signal>(rejected: &Rejected) -> S::Response {
    S::response((!rejected.is_empty()).then(|| {
        (
            rejected.points as i64,
            format!(
                "{} {}s dropped: {}",
                rejected.points,
                S::ITEM,
                rejected.summary(S::ITEM)
            ),
        )
    }))
}

impl OtlpApi {
    pub fn new(path: WritePath, limits: WriteLimits) -> Self {
        Self { path, limits }
    }

    /// Writes a decoded-on-arrival (gRPC) request.
    async fn export_signal<S: Signal>(
        &self,
        request: Request<S>,
    ) -> Result<tonic::Response<S::Response>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let span = info_span!("otlp_export", request_id = %id, signal = S::ITEM);
        let request = request.into_inner();
        let limits = self.limits;
        let written = async {
            let admission = self.path.admit(request.encoded_len()).await?;
            let ingested = self
                .path
                .ingest(admission, 0, move |now_ns, tables| {
                    request.to_tables(now_ns, limits, tables)
                })
                .await?;
            Ok::<_, Error>(ingested)
        }
        .instrument(span.clone())
        .await
        .map_err(|e| {
            span.in_scope(|| warn!(error = %e, "OTLP export rejected"));
            e.grpc_status()
        })?;
        let mut response = tonic::Response::new(response::<S>(&written.rejected));
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpApi {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, Status> {
        self.export_signal(request).await
    }
}

#[tonic::async_trait]
impl LogsService for OtlpApi {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, Status> {
        self.export_signal(request).await
    }
}

#[tonic::async_trait]
impl TraceService for OtlpApi {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        self.export_signal(request).await
    }
}

/// OTLP/HTTP's routes.
pub fn http_routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route(
            "/v1/metrics",
            post(http_export::<ExportMetricsServiceRequest>),
        )
        .route("/v1/logs", post(http_export::<ExportLogsServiceRequest>))
        .route("/v1/traces", post(http_export::<ExportTraceServiceRequest>))
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

async fn http_export<S: Signal>(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        let message = format!(
            "Content-Type {content_type:?} is not OTLP's: send application/x-protobuf or application/json"
        );
        return error_body(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            message,
        );
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim())
    {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            let message = format!("Content-Encoding {other:?} is not supported (gzip is)");
            return error_body(
                encoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                message,
            );
        }
    };
    let written = http_ingest::<S>(&state, body, gzip, encoding).await;
    match written {
        Ok(Ingested { rejected, .. }) => {
            let answer = response::<S>(&rejected);
            encoded(encoding, StatusCode::OK, &answer)
        }
        Err(e) => {
            let status = e.http_status();
            if status.is_server_error() {
                warn!(error = %e, "OTLP/HTTP export failed");
            }
            error_body(encoding, status, e.grpc_code(), e.to_string())
        }
    }
}

async fn http_ingest<S: Signal>(
    state: &HttpState,
    body: Bytes,
    gzip: bool,
    encoding: Encoding,
) -> Result<Ingested, Error> {
    let (limit, limits) = (state.max_raw_body, state.write_limits);
    let admission = state.write_path.admit(body.len()).await?;
    let ingested = state
        .write_path
        .ingest(admission, 0, move |now_ns, tables| {
            let body = if gzip {
                Bytes::from(compression::gunzip(&body, limit)?)
            } else {
                body
            };
            let request: S = otlp::decode_body(&body, encoding)?;
            request.to_tables(now_ns, limits, tables)
        })
        .await?;
    Ok(ingested)
}

fn error_body(
    encoding: Encoding,
    status: StatusCode,
    code: tonic::Code,
    message: String,
) -> Response {
    let body = RpcStatus {
        code: code as i32,
        message,
    };
    encoded(encoding, status, &body)
}

/// `message` in the request's encoding.
fn encoded<M: Message + serde::Serialize>(
    encoding: Encoding,
    status: StatusCode,
    message: &M,
) -> Response {
    let bytes = match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        // Serializing our own messages cannot fail.
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        bytes,
    )
        .into_response()
}
