//! Arrow Flight on the gRPC port: `DoPut` writes Arrow record batches, the
//! columnar fast path for Arrow tooling (`pyarrow.flight`, ADBC, Arrow
//! Rust). The descriptor is a path of one element, the table; each record
//! batch is checked and cast by `weir_protocols::arrow_batch` (no per-row
//! decoding) and written atomically through the shared write path.
//!
//! Each batch written is acknowledged, in order and once durable, with a
//! `PutResult` whose `app_metadata` is JSON: `{"batch": i, "rows_written":
//! n}`. A batch that is refused ends the stream with its status (the
//! message names the batch); the batches acknowledged before it are
//! stored. Like the native `WriteStream`, several batches of one stream
//! are written at once so the WAL's group commit stays full, and the
//! stream reads its next batch only once that batch fits the in-flight
//! budget.
//!
//! `DoPut` of a table needs the `write` scope, binding a prepared
//! statement's parameters `query`; `Handshake` answers a Basic credential
//! with a bearer token (see `auth::grpc` for the rest).
//!
//! Every other call is Flight SQL ([`crate::flight_sql`]): queries, prepared
//! statements and the catalog, read-only.

use std::pin::Pin;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::{Any, CommandPreparedStatementQuery};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::future::{BoxFuture, Fuse, FusedFuture};
use futures::stream::{BoxStream, FuturesOrdered};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info_span, warn};
use weir_model::WriteLimits;
use weir_pipeline::{Admission, WritePath};
use weir_protocols::{Decoded, arrow_batch};

use crate::auth::{self, Principal, Scope};
use crate::flight_sql::FlightSql;
use crate::{Error, Result, request_id};

/// Batches of one stream being written at once (as for `WriteStream`).
const MAX_IN_FLIGHT_PER_STREAM: usize = 16;

/// `arrow.flight.protocol.FlightService`: `DoPut` writes, Flight SQL the rest.
#[derive(Clone)]
pub struct FlightApi {
    path: WritePath,
    limits: WriteLimits,
    sql: FlightSql,
}

impl FlightApi {
    pub fn new(path: WritePath, limits: WriteLimits, sql: FlightSql) -> Self {
        Self { path, limits, sql }
    }

    pub fn server(self, max_message: usize) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self).max_decoding_message_size(max_message)
    }

    /// Writes one admitted batch atomically; returns its rows.
    async fn write(
        &self,
        table: Arc<str>,
        batch: RecordBatch,
        admission: Admission,
    ) -> Result<u64> {
        let limits = self.limits;
        let rows = batch.num_rows() as u64;
        let ingested = self
            .path
            .ingest(admission, rows, move |_now_ns, tables| {
                Ok(Decoded {
                    batches: vec![arrow_batch::decode(&table, &batch, limits, tables)?],
                    rejected: Default::default(),
                })
            })
            .await?;
        Ok(ingested.rows)
    }
}

/// The Flight SQL command a `DoPut` descriptor carries, if it is one.
fn flight_sql_command(descriptor: Option<&FlightDescriptor>) -> Option<Any> {
    let descriptor = descriptor?;
    if descriptor.r#type() != DescriptorType::Cmd {
        return None;
    }
    let command = <Any as prost::Message>::decode(&*descriptor.cmd).ok()?;
    command
        .type_url
        .starts_with("type.googleapis.com/arrow.flight.protocol.sql.")
        .then_some(command)
}

impl FlightApi {
    /// `DoPut` of a Flight SQL command. Binding parameters to a prepared
    /// query is the one served: Weir's SQL is read-only, and writes take a
    /// path descriptor.
    async fn put_flight_sql(
        &self,
        command: Any,
        first: FlightData,
        rest: Streaming<FlightData>,
    ) -> Result<Response<Stream<PutResult>>, Status> {
        let Ok(Some(query)) = command.unpack::<CommandPreparedStatementQuery>() else {
            let name = command.type_url.rsplit('.').next().unwrap_or_default();
            return Err(Status::unimplemented(format!(
                "DoPut {name}: Weir's Flight SQL is read-only; write with DoPut and a path \
                 descriptor naming the table"
            )));
        };
        let data = futures::stream::once(async { Ok(first) })
            .chain(rest.map(|m| m.map_err(FlightError::from)));
        let batches = record_batches(data);
        let bound = self.sql.bind(query, batches).await?;
        let result = PutResult {
            app_metadata: prost::Message::encode_to_vec(&bound).into(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(result)
        }))))
    }
}

/// The record batches of a `DoPut` stream. Decoding untrusted Arrow IPC can
/// panic inside arrow-ipc (a schema naming an integer of a width it does
/// not know, for one): such a panic ends the stream with an error, like any
/// other undecodable message, instead of taking the request's task down.
fn record_batches(
    data: impl futures::Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
) -> BoxStream<'static, Result<RecordBatch, FlightError>> {
    std::panic::AssertUnwindSafe(FlightRecordBatchStream::new_from_flight_data(data))
        .catch_unwind()
        .map(|item| {
            item.unwrap_or_else(|_| {
                Err(FlightError::DecodeError(
                    "the Arrow IPC data is malformed (the decoder could not read it)".into(),
                ))
            })
        })
        .boxed()
}

/// The table a `DoPut` descriptor names: a path of exactly one element.
fn table_of(descriptor: Option<&FlightDescriptor>) -> Result<Arc<str>, Status> {
    let descriptor = descriptor.ok_or_else(|| {
        Status::invalid_argument(
            "DoPut: the first message has no flight descriptor; send a path descriptor naming the table",
        )
    })?;
    if descriptor.r#type() != DescriptorType::Path || descriptor.path.len() != 1 {
        return Err(Status::invalid_argument(format!(
            "DoPut: the descriptor must be a path of one element, the table (got {:?} with {} path elements)",
            descriptor.r#type(),
            descriptor.path.len()
        )));
    }
    Ok(Arc::from(descriptor.path[0].as_str()))
}

fn ack(index: usize, rows: u64) -> PutResult {
    PutResult {
        app_metadata: serde_json::json!({ "batch": index, "rows_written": rows })
            .to_string()
            .into(),
    }
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

fn unimplemented<T>(call: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "Flight {call} is not served by Weir: write with DoPut, query with Flight SQL"
    )))
}

#[tonic::async_trait]
impl FlightService for FlightApi {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoExchangeStream = Stream<FlightData>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let id = request_id::from_metadata(request.metadata());
        let principal = request.extensions().get::<Principal>().cloned();
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("DoPut: the stream is empty"))?;
        if let Some(command) = flight_sql_command(first.flight_descriptor.as_ref()) {
            auth::grpc::require(principal.as_ref(), Scope::Query)?;
            return self.put_flight_sql(command, first, inbound).await;
        }
        auth::grpc::require(principal.as_ref(), Scope::Write)?;
        let table = table_of(first.flight_descriptor.as_ref())?;
        let span = info_span!("flight_do_put", request_id = %id, table = %table);
        let data = futures::stream::once(async { Ok(first) })
            .chain(inbound.map(|m| m.map_err(FlightError::from)));
        let batches = record_batches(data);
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT_PER_STREAM);
        tokio::spawn(put_stream(self.clone(), table, batches, tx).instrument(span));
        let mut response = Response::new(Box::pin(ReceiverStream::new(rx)) as Self::DoPutStream);
        request_id::set_metadata(response.metadata_mut(), &id);
        Ok(response)
    }

    /// Flight SQL clients (ADBC with a user name and password) trade a
    /// `Basic` credential here for the bearer token they send on every
    /// later call. The auth layer has already checked the credential; the
    /// answer hands it back as `authorization: Bearer <token>`.
    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(auth::token_from_authorization);
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response = Response::new(
            Box::pin(futures::stream::once(async { Ok(reply) })) as Self::HandshakeStream
        );
        if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented("ListFlights")
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.sql, request).await
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented("PollFlightInfo")
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        FlightService::get_schema(&self.sql, request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(&self.sql, request).await
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented("DoExchange")
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.sql, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.sql, request).await
    }
}

/// The status that ends a stream at batch `index`, refused for `e`.
fn refused(index: usize, e: &Error) -> Status {
    warn!(batch = index, error = %e, "DoPut batch refused");
    Status::new(
        e.grpc_code(),
        format!("batch {index} (the first not acknowledged): {e}"),
    )
}

/// Reads a `DoPut` stream's batches, writes up to
/// [`MAX_IN_FLIGHT_PER_STREAM`] at once, and acknowledges them in order.
async fn put_stream(
    api: FlightApi,
    table: Arc<str>,
    mut batches: BoxStream<'static, Result<RecordBatch, FlightError>>,
    tx: mpsc::Sender<Result<PutResult, Status>>,
) {
    let mut pending: FuturesOrdered<BoxFuture<'static, Result<u64>>> = FuturesOrdered::new();
    // The batch read last, waiting for admission: nothing more is read
    // until it is admitted, so a full budget pushes back on the client.
    let mut admitting = Box::pin(Fuse::terminated());
    let mut open = true;
    let mut read = 0usize;
    let mut acked = 0usize;
    while open || !pending.is_empty() || !admitting.is_terminated() {
        tokio::select! {
            biased;
            Some(written) = pending.next(), if !pending.is_empty() => {
                match written {
                    Ok(rows) => {
                        if tx.send(Ok(ack(acked, rows))).await.is_err() {
                            return; // the client went away
                        }
                        acked += 1;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(refused(acked, &e))).await;
                        return;
                    }
                }
            }
            (batch, admission) = &mut admitting, if !admitting.is_terminated() => {
                let (api, table) = (api.clone(), Arc::clone(&table));
                pending.push_back(async move {
                    let admission: Result<Admission> = admission;
                    api.write(table, batch, admission?).await
                }.boxed());
            }
            next = batches.next(), if open && admitting.is_terminated() && pending.len() < MAX_IN_FLIGHT_PER_STREAM => {
                match next {
                    Some(Ok(batch)) if batch.num_rows() == 0 => {
                        // Nothing to write; acknowledged in its turn.
                        pending.push_back(async { Ok(0) }.boxed());
                        read += 1;
                    }
                    Some(Ok(batch)) => {
                        let api = api.clone();
                        let admit: BoxFuture<'static, _> = Box::pin(async move {
                            let size = batch.get_array_memory_size();
                            let admission = api.path.admit(size).await.map_err(Error::from);
                            (batch, admission)
                        });
                        admitting.set(admit.fuse());
                        read += 1;
                    }
                    Some(Err(e)) => {
                        // Not Arrow IPC, or a transport error: the stream
                        // cannot go on. Acks owed so far still go out.
                        while let Some(written) = pending.next().await {
                            match written {
                                Ok(rows) => {
                                    if tx.send(Ok(ack(acked, rows))).await.is_err() {
                                        return;
                                    }
                                    acked += 1;
                                }
                                Err(e) => {
                                    let _ = tx.send(Err(refused(acked, &e))).await;
                                    return;
                                }
                            }
                        }
                        warn!(error = %e, "DoPut stream ended by error");
                        let status = match e {
                            FlightError::Tonic(status) => *status,
                            other => Status::invalid_argument(format!(
                                "batch {read}: not an Arrow IPC record batch: {other}"
                            )),
                        };
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    None => open = false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use rand::Rng;

    use super::*;

    /// Valid Flight data with random bytes changed: every stream ends, with
    /// batches or an error, and no panic escapes (arrow-ipc panics on some
    /// of these schemas).
    #[tokio::test]
    async fn mangled_arrow_ipc_ends_the_stream_and_never_panics_out() {
        let batch = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        let valid: Vec<FlightData> = FlightDataEncoderBuilder::new()
            .build(futures::stream::iter([Ok(batch)]))
            .map(|d| d.unwrap())
            .collect()
            .await;
        let mut rng = rand::rng();
        for _ in 0..2_000 {
            let mut messages = valid.clone();
            let message = &mut messages[rng.random_range(0..valid.len())];
            let mut header = message.data_header.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..header.len());
                header[at] = rng.random();
            }
            message.data_header = header.into();
            let mut body = message.data_body.to_vec();
            if !body.is_empty() && rng.random_bool(0.5) {
                let at = rng.random_range(0..body.len());
                body[at] = rng.random();
            }
            message.data_body = body.into();
            let mut batches = record_batches(futures::stream::iter(messages.into_iter().map(Ok)));
            while let Some(batch) = batches.next().await {
                if batch.is_err() {
                    break;
                }
            }
        }
    }
}
