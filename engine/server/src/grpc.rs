//! The gRPC front end: `weir.v1.WriteService` and `weir.v1.MonitorService`.

use std::pin::Pin;

use futures::future::{BoxFuture, Fuse, FusedFuture};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info_span, warn};
use weir_proto::v1::monitor_service_server::MonitorService;
use weir_proto::v1::write_service_server::WriteService;
use weir_proto::v1::{
    Event, EventOutcome, HeartbeatRequest, HeartbeatResponse, RawWriteRequest, SendEventsRequest,
    SendEventsResponse, WriteAck, WriteError, WriteRequest, WriteResponse,
};

use weir_model::WriteLimits;
use weir_pipeline::{Admission, WritePath};

use crate::{Result, request_id};

/// Batches of one stream being written at once. More lets a client keep the
/// WAL's group commit full; the bound keeps a stream's memory bounded.
const MAX_IN_FLIGHT_PER_STREAM: usize = 64;

/// `weir.v1.WriteService`: native requests, decoded by
/// `weir_protocols::native`, and raw bodies for adapters.
#[derive(Clone)]
pub struct WriteApi {
    path: WritePath,
    limits: WriteLimits,
}

impl WriteApi {
    pub fn new(path: WritePath, limits: WriteLimits) -> Self {
        Self { path, limits }
    }

    async fn admit(&self, request: &WriteRequest) -> Result<Admission> {
        Ok(self.path.admit(request.encoded_len()).await?)
    }

    /// Writes one request atomically; returns the rows written.
    async fn write_admitted(&self, request: WriteRequest, admission: Admission) -> Result<u64> {
        let points = request.points.len() as u64;
        let limits = self.limits;
        let ingested = self
            .path
            .ingest(admission, points, move |now_ns, tables| {
                weir_protocols::native::decode(&request, now_ns, limits, tables)
            })
            .await?;
        Ok(ingested.rows)
    }
}

#[tonic::async_trait]
impl WriteService for WriteApi {
    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let span = info_span!("write", request_id = %id);
        let request = request.into_inner();
        let rows = async {
            let admission = self.admit(&request).await?;
            self.write_admitted(request, admission).await
        }
        .instrument(span.clone())
        .await
        .map_err(|e| {
            span.in_scope(|| warn!(error = %e, "write rejected"));
            e.grpc_status()
        })?;
        let mut response = Response::new(WriteResponse { rows_written: rows });
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }

    async fn write_raw(
        &self,
        request: Request<RawWriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let raw = request.into_inner();
        let span = info_span!("write_raw", request_id = %id, source = %raw.source);
        let rows = self
            .path
            .write_raw(&raw.source, &raw.content_type, &raw.body)
            .instrument(span.clone())
            .await
            .map_err(|e| {
                let e = crate::Error::from(e);
                span.in_scope(|| warn!(error = %e, "raw write rejected"));
                e.grpc_status()
            })?;
        let mut response = Response::new(WriteResponse { rows_written: rows });
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }

    type WriteStreamStream = Pin<Box<dyn Stream<Item = Result<WriteAck, Status>> + Send>>;

    async fn write_stream(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<Self::WriteStreamStream>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let span = info_span!("write_stream", request_id = %id);
        let mut inbound = request.into_inner();
        let api = self.clone();
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT_PER_STREAM);
        tokio::spawn(
            async move {
                let mut pending = FuturesOrdered::new();
                // The message read last, waiting for admission: the stream
                // reads nothing more until it is admitted.
                let mut admitting = Box::pin(Fuse::terminated());
                let mut open = true;
                while open || !pending.is_empty() || !admitting.is_terminated() {
                    tokio::select! {
                        biased;
                        Some(ack) = pending.next(), if !pending.is_empty() => {
                            if tx.send(Ok(ack)).await.is_err() {
                                return; // client went away
                            }
                        }
                        (request, admission) = &mut admitting, if !admitting.is_terminated() => {
                            let api = api.clone();
                            pending.push_back(async move { ack(&api, request, admission).await });
                        }
                        message = inbound.message(), if open && admitting.is_terminated() && pending.len() < MAX_IN_FLIGHT_PER_STREAM => {
                            match message {
                                Ok(Some(request)) => {
                                    let api = api.clone();
                                    let admit: BoxFuture<'static, _> = Box::pin(async move {
                                        let admission = api.admit(&request).await;
                                        (request, admission)
                                    });
                                    admitting.set(admit.fuse());
                                }
                                Ok(None) => open = false,
                                Err(status) => {
                                    // Decoding failed (e.g. message too large): the
                                    // stream cannot continue. Acks owed so far still go out.
                                    warn!(%status, "write stream ended by error");
                                    while let Some(ack) = pending.next().await {
                                        if tx.send(Ok(ack)).await.is_err() {
                                            return;
                                        }
                                    }
                                    let _ = tx.send(Err(status)).await;
                                    return;
                                }
                            }
                        }
                    }
                }
            }
            .instrument(span),
        );
        let mut response =
            Response::new(Box::pin(ReceiverStream::new(rx)) as Self::WriteStreamStream);
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }
}

async fn ack(api: &WriteApi, request: WriteRequest, admission: Result<Admission>) -> WriteAck {
    let sequence = request.sequence;
    let written = match admission {
        Ok(admission) => api.write_admitted(request, admission).await,
        Err(e) => Err(e),
    };
    match written {
        Ok(rows) => WriteAck {
            sequence,
            rows_written: rows,
            error: None,
        },
        Err(e) => {
            warn!(sequence, error = %e, "streamed batch rejected");
            WriteAck {
                sequence,
                rows_written: 0,
                error: Some(WriteError {
                    code: e.grpc_code() as i32,
                    message: e.to_string(),
                }),
            }
        }
    }
}

/// `weir.v1.MonitorService`.
pub struct MonitorApi {
    monitor: std::sync::Arc<weir_monitor::Monitor>,
}

impl MonitorApi {
    pub fn new(monitor: std::sync::Arc<weir_monitor::Monitor>) -> Self {
        Self { monitor }
    }
}

#[tonic::async_trait]
impl MonitorService for MonitorApi {
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let name = request.into_inner().name;
        self.monitor
            .heartbeat(&name)
            .await
            .map_err(|e| crate::Error::from(e).grpc_status())?;
        let mut response = Response::new(HeartbeatResponse {});
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }

    async fn send_events(
        &self,
        request: Request<SendEventsRequest>,
    ) -> Result<Response<SendEventsResponse>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let events = request.into_inner().events;
        let bodies = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| event_body(i, e))
            .collect::<Result<Vec<_>, Status>>()?;
        let reports = self
            .monitor
            .receive_events(bodies, weir_monitor::events::EventSource::Grpc)
            .await
            .map_err(|e| crate::Error::from(e).grpc_status())?;
        let mut response = Response::new(SendEventsResponse {
            events: reports
                .into_iter()
                .map(|r| EventOutcome {
                    fingerprint: r.fingerprint,
                    outcome: r.outcome.to_string(),
                    drop_reason: r.drop_reason.unwrap_or_default().to_string(),
                })
                .collect(),
        });
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }
}

/// The protobuf event as the JSON one: unset (empty, zero) fields take
/// their defaults.
fn event_body(i: usize, e: Event) -> Result<weir_monitor::events::EventBody, Status> {
    let time = |what: &str, ns: i64| -> Result<Option<String>, Status> {
        if ns == 0 {
            return Ok(None);
        }
        if ns < 0 {
            return Err(Status::invalid_argument(format!(
                "events[{i}].{what}: must not be negative"
            )));
        }
        Ok(Some(weir_monitor::suppress::wire::format_time(ns)))
    };
    let some = |text: String| (!text.is_empty()).then_some(text);
    let filters = (!e.filters.is_empty()).then(|| {
        e.filters
            .into_iter()
            .map(|f| {
                let mut object = serde_json::Map::new();
                object.insert("type".into(), f.r#type.into());
                if !f.min_age.is_empty() {
                    object.insert("min-age".into(), f.min_age.into());
                }
                serde_json::Value::Object(object)
            })
            .collect()
    });
    Ok(weir_monitor::events::EventBody {
        monitor: e.monitor,
        status: e.status,
        since: time("since_unix_nano", e.since_unix_nano)?,
        message: e.message,
        context: e.context.into_iter().collect(),
        priority: some(e.priority),
        channel: some(e.channel),
        ticket_queue: some(e.ticket_queue),
        filters,
        title: some(e.title),
        description: some(e.description),
        runbook: some(e.runbook),
        ends_at: time("ends_at_unix_nano", e.ends_at_unix_nano)?,
        group_by: (!e.group_by.is_empty()).then_some(e.group_by),
        collect: (!e.collect.is_empty()).then(|| {
            let text = |s: String| (!s.is_empty()).then_some(s);
            e.collect
                .into_iter()
                .map(|c| weir_monitor::context::CollectorSection {
                    kind: c.r#type,
                    title: text(c.title),
                    text: text(c.text),
                    sql: text(c.sql),
                    limit: (c.limit > 0).then_some(c.limit),
                    id: text(c.id),
                    url: text(c.url),
                    deadline: text(c.deadline),
                })
                .collect()
        }),
    })
}
