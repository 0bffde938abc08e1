//! Arrow Flight SQL: queries from ADBC, JDBC and any Flight SQL client,
//! answered by the engine behind `POST /api/v1/sql` — the same memory
//! limit, timeout, read-only rule and metrics, one engine behind both
//! doors. It shares the gRPC port and the Flight service with `DoPut`
//! writes ([`crate::flight`]), which hands it every call but `DoPut`.
//!
//! A statement is planned at `GetFlightInfo`, for its schema (nothing is
//! read), and run at `DoGet`. The ticket carries the SQL, so the server
//! keeps nothing between the two calls. A prepared statement's handle
//! likewise carries its SQL and, once a client binds them (`DoPut` of one
//! row), its parameters as Arrow IPC: binding answers with a new handle
//! (Flight SQL's `DoPutPreparedStatementResult`), and the parameters are
//! bound to `$1`, `$2`, … as values, never spliced into the SQL. Handles
//! are sealed with an HMAC under a key drawn at start, so a handle that
//! comes back is decoded only if this process made it: arrow-ipc's readers
//! trust lengths in their input (a forged one asked for a 3 TB allocation
//! in a test) and are not for bytes a client made up. Answers go
//! out as the engine's Arrow batches, IPC-encoded; no row is converted.
//!
//! Catalog calls (`GetCatalogs`, `GetDbSchemas`, `GetTables` with or
//! without schemas, `GetTableTypes`) read `information_schema` through the
//! same engine, so they list exactly what SQL can query; `GetSqlInfo`
//! describes the server.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use ring::hmac;
use ring::rand::SystemRandom;
use tonic::{Request, Response, Status};
use tracing::warn;
use weir_query::{Dialect, QueryEngine, ScalarValue};

use crate::Error;

/// What `GetSqlInfo` says of this server.
static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "Weir");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow IPC format version (Schema.fbs, MetadataVersion V5).
    info.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.build()
        .expect("the SQL info table builds from constants")
});

type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Flight SQL, read-only, over a [`QueryEngine`].
#[derive(Clone)]
pub struct FlightSql {
    query: Arc<QueryEngine>,
    handles: Arc<Handles>,
}

impl FlightSql {
    pub fn new(query: Arc<QueryEngine>) -> Self {
        Self {
            query,
            handles: Arc::new(Handles::new()),
        }
    }

    /// The schema `sql` will answer with, or why it will not run.
    async fn schema_of(&self, sql: &str) -> Result<SchemaRef, Status> {
        Ok(self.plan(sql, Vec::new()).await?.0)
    }

    /// The schema `sql` will answer with `params` bound, and the types of
    /// the placeholders left unbound.
    async fn plan(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>), Status> {
        self.query
            .plan_schema(sql, params)
            .await
            .map_err(|e| Error::from(e).grpc_status())
    }

    /// Runs `sql` with `params` bound and streams its batches.
    async fn answer(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<Response<DataStream>, Status> {
        let failed = |e: weir_query::Error| {
            let e = Error::from(e);
            warn!(error = %e, "Flight SQL query failed");
            e.grpc_status()
        };
        let answer = self
            .query
            .sql_stream_in(Dialect::Weir, sql, params)
            .await
            .map_err(failed)?;
        let schema = Arc::clone(&answer.schema);
        // Batches go out as the engine computes them; a failure part way
        // ends the stream with its status.
        let batches =
            answer.map(move |batch| batch.map_err(|e| FlightError::Tonic(Box::new(failed(e)))));
        Ok(Response::new(encode_stream(schema, batches)))
    }

    /// Runs one of our own catalog queries; its SQL is fixed, so a failure
    /// is the server's.
    async fn catalog_rows(&self, sql: &str) -> Result<Vec<RecordBatch>, Status> {
        self.catalog_rows_bound(sql, Vec::new()).await
    }

    /// Like [`catalog_rows`](Self::catalog_rows), with `$n` bound to `params`.
    async fn catalog_rows_bound(
        &self,
        sql: &str,
        params: Vec<String>,
    ) -> Result<Vec<RecordBatch>, Status> {
        let params = params
            .into_iter()
            .map(|p| ScalarValue::Utf8(Some(p)))
            .collect();
        Ok(self
            .query
            .sql_bound(sql, params, usize::MAX)
            .await
            .map_err(|e| Error::from(e).grpc_status())?
            .batches)
    }
}

impl FlightSql {
    /// Binds the parameters a `DoPut` carries to a prepared statement: one
    /// row, one column per placeholder. The answer is the handle to run.
    pub async fn bind(
        &self,
        query: CommandPreparedStatementQuery,
        mut batches: BoxStream<'static, Result<RecordBatch, FlightError>>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let statement = self.handles.open(&query.prepared_statement_handle)?;
        let mut bound: Option<RecordBatch> = None;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                other => Status::invalid_argument(format!(
                    "the parameters are not an Arrow IPC record batch: {other}"
                )),
            })?;
            if batch.num_rows() == 0 {
                continue;
            }
            if bound.is_some() || batch.num_rows() > 1 {
                return Err(Status::invalid_argument(
                    "bind one row of parameters to a query (one value per placeholder)",
                ));
            }
            if batch.num_columns() > MAX_PARAMETERS {
                return Err(Status::invalid_argument(format!(
                    "{} parameters; at most {MAX_PARAMETERS} are bound to one query",
                    batch.num_columns()
                )));
            }
            bound = Some(batch);
        }
        // Planned with the values now, so that a wrong one is refused here
        // with its reason rather than at the first fetch.
        let params = match &bound {
            Some(batch) => row_values(batch).map_err(Status::invalid_argument)?,
            None => Vec::new(),
        };
        self.plan(&statement.sql, params).await?;
        let handle = self
            .handles
            .seal(&PreparedHandle::encode(&statement.sql, bound.as_ref())?);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }
}

/// Parameters bound to one query, at most.
const MAX_PARAMETERS: usize = 1_000;

/// Seals the handles this process hands out and opens only those.
struct Handles {
    key: hmac::Key,
}

impl Handles {
    fn new() -> Self {
        Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                .expect("the OS random source works"),
        }
    }

    /// `payload` behind its tag.
    fn seal(&self, payload: &[u8]) -> Bytes {
        let tag = hmac::sign(&self.key, payload);
        let mut sealed = Vec::with_capacity(tag.as_ref().len() + payload.len());
        sealed.extend_from_slice(tag.as_ref());
        sealed.extend_from_slice(payload);
        sealed.into()
    }

    /// The statement in `handle`, if this process sealed it.
    fn open(&self, handle: &[u8]) -> Result<PreparedHandle, Status> {
        let tag_len = hmac::HMAC_SHA256.digest_algorithm().output_len();
        let refused = || {
            Status::invalid_argument(
                "not a prepared statement handle of this server (handles do not survive a restart)",
            )
        };
        if handle.len() < tag_len {
            return Err(refused());
        }
        let (tag, payload) = handle.split_at(tag_len);
        hmac::verify(&self.key, payload, tag).map_err(|_| refused())?;
        PreparedHandle::decode(payload)
    }
}

/// A prepared statement: its SQL and the parameters bound to it. Encoded as
/// the SQL's length (u32, little-endian), the SQL, then the bound row as an
/// Arrow IPC stream (nothing if none is bound), and sealed by [`Handles`].
struct PreparedHandle {
    sql: String,
    params: Vec<ScalarValue>,
}

impl PreparedHandle {
    fn encode(sql: &str, params: Option<&RecordBatch>) -> Result<Bytes, Status> {
        let length = u32::try_from(sql.len())
            .map_err(|_| Status::invalid_argument("the statement is too long"))?;
        let mut out = Vec::with_capacity(4 + sql.len());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(sql.as_bytes());
        if let Some(batch) = params {
            let internal = |e: arrow::error::ArrowError| {
                Status::internal(format!("encoding the parameters: {e}"))
            };
            let mut writer = StreamWriter::try_new(&mut out, &batch.schema()).map_err(internal)?;
            writer.write(batch).map_err(internal)?;
            writer.finish().map_err(internal)?;
        }
        Ok(out.into())
    }

    fn decode(handle: &[u8]) -> Result<Self, Status> {
        let invalid = |why: &str| {
            Status::invalid_argument(format!("not a prepared statement handle of Weir's: {why}"))
        };
        let (length, rest) = handle
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("too short"))?;
        let length = u32::from_le_bytes(*length) as usize;
        if rest.len() < length {
            return Err(invalid("truncated"));
        }
        let (sql, ipc) = rest.split_at(length);
        let sql = String::from_utf8(sql.to_vec()).map_err(|_| invalid("the SQL is not UTF-8"))?;
        let params = if ipc.is_empty() {
            Vec::new()
        } else {
            read_parameters(ipc).map_err(|why| invalid(&why))?
        };
        Ok(Self { sql, params })
    }
}

/// The one bound row of a handle, as values.
fn read_parameters(ipc: &[u8]) -> Result<Vec<ScalarValue>, String> {
    let mut params = Vec::new();
    let reader = StreamReader::try_new(ipc, None).map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        if batch.num_rows() != 1 || batch.num_columns() > MAX_PARAMETERS {
            return Err("the bound parameters are not one row".to_string());
        }
        params = row_values(&batch)?;
    }
    Ok(params)
}

/// The values of a one-row batch, column by column.
fn row_values(batch: &RecordBatch) -> Result<Vec<ScalarValue>, String> {
    batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

fn schema_ipc(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?;
    Ok(bytes)
}

/// The batches as Flight data, schema first (also when there are none).
/// Dictionary columns (tags) stay dictionaries, as the schema announced at
/// `GetFlightInfo` says: the encoder's default would expand them.
fn encode(schema: SchemaRef, batches: Vec<RecordBatch>) -> DataStream {
    encode_stream(schema, futures::stream::iter(batches.into_iter().map(Ok)))
}

fn encode_stream(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> DataStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_dictionary_handling(DictionaryHandling::Resend)
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
}

/// A catalog answer: the one batch a metadata builder built.
fn one_batch(
    schema: SchemaRef,
    batch: Result<RecordBatch, FlightError>,
) -> Result<Response<DataStream>, Status> {
    Ok(Response::new(encode(
        schema,
        vec![batch.map_err(Status::from)?],
    )))
}

/// A `FlightInfo` with one endpoint whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the answer's schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("the {what} is not UTF-8")))
}

/// Column `index` of `batch` as strings (our catalog queries' columns are).
fn strings(batch: &RecordBatch, index: usize) -> Result<Vec<String>, Status> {
    let column = arrow::compute::cast(batch.column(index), &arrow::datatypes::DataType::Utf8)
        .map_err(|e| Status::internal(format!("reading the catalog: {e}")))?;
    let column = column
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| Status::internal("reading the catalog: not a string column"))?;
    Ok(column
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

/// `name` quoted as a SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.schema_of(&query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let sql = utf8(&ticket.statement_handle, "statement")?;
        self.answer(&sql, Vec::new()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (schema, placeholders) = self.plan(&query.query, Vec::new()).await?;
        // `$1`, `$2`, …, typed where the plan tells (a bare `SELECT $1` does
        // not): what a client may bind.
        let parameters = Schema::new(
            placeholders
                .into_iter()
                .enumerate()
                .map(|(i, data_type)| {
                    Field::new(
                        format!("${}", i + 1),
                        data_type.unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self
                .handles
                .seal(&PreparedHandle::encode(&query.query, None)?),
            dataset_schema: schema_ipc(&schema)?,
            parameter_schema: schema_ipc(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // The handle is the statement: nothing is held to free.
        Ok(())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = self.handles.open(&query.prepared_statement_handle)?;
        let (schema, _) = self.plan(&handle.sql, handle.params).await?;
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let handle = self.handles.open(&query.prepared_statement_handle)?;
        self.answer(&handle.sql, handle.params).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        for batch in self
            .catalog_rows("SELECT DISTINCT table_catalog FROM information_schema.tables")
            .await?
        {
            for catalog in strings(&batch, 0)? {
                builder.append(catalog);
            }
        }
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        for batch in self
            .catalog_rows(
                "SELECT DISTINCT table_catalog, table_schema FROM information_schema.tables",
            )
            .await?
        {
            let catalogs = strings(&batch, 0)?;
            let schemas = strings(&batch, 1)?;
            for (catalog, schema) in catalogs.into_iter().zip(schemas) {
                builder.append(catalog, schema);
            }
        }
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let include_schema = query.include_schema;
        // The request's filters go into the catalog query, so that only the
        // tables asked for have their schemas planned (ADBC's
        // `adbc_get_table_schema("t")` asks for one). Patterns are SQL
        // `LIKE` patterns in Flight SQL too; all are bound as values.
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        let bind = |params: &mut Vec<String>, value: &str| {
            params.push(value.to_string());
            format!("${}", params.len())
        };
        if let Some(catalog) = &query.catalog {
            conditions.push(format!("table_catalog = {}", bind(&mut params, catalog)));
        }
        if let Some(pattern) = &query.db_schema_filter_pattern {
            conditions.push(format!("table_schema LIKE {}", bind(&mut params, pattern)));
        }
        if let Some(pattern) = &query.table_name_filter_pattern {
            conditions.push(format!("table_name LIKE {}", bind(&mut params, pattern)));
        }
        if !query.table_types.is_empty() {
            let kinds: Vec<String> = query
                .table_types
                .iter()
                .map(|kind| bind(&mut params, kind))
                .collect();
            conditions.push(format!("table_type IN ({})", kinds.join(", ")));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let mut builder = query.into_builder();
        for batch in self
            .catalog_rows_bound(
                &format!(
                    "SELECT table_catalog, table_schema, table_name, table_type \
                     FROM information_schema.tables {filter} ORDER BY 1, 2, 3"
                ),
                params,
            )
            .await?
        {
            let rows = strings(&batch, 0)?
                .into_iter()
                .zip(strings(&batch, 1)?)
                .zip(strings(&batch, 2)?)
                .zip(strings(&batch, 3)?);
            for (((catalog, schema), table), kind) in rows {
                // A table's schema is planned only if it is asked for.
                let table_schema = if include_schema {
                    let sql = format!(
                        "SELECT * FROM {}.{}.{}",
                        quoted(&catalog),
                        quoted(&schema),
                        quoted(&table)
                    );
                    self.schema_of(&sql).await?
                } else {
                    Arc::new(Schema::empty())
                };
                builder
                    .append(catalog, schema, table, kind, &table_schema)
                    .map_err(Status::from)?;
            }
        }
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let mut builder = query.into_builder();
        for batch in self
            .catalog_rows("SELECT DISTINCT table_type FROM information_schema.tables ORDER BY 1")
            .await?
        {
            for kind in strings(&batch, 0)? {
                builder.append(kind);
            }
        }
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let builder = query.into_builder(&SQL_INFO);
        one_batch(builder.schema(), builder.build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use rand::Rng;

    use super::*;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn a_handle_carries_its_statement_and_bound_values() {
        let bound = batch(vec![
            ("a", Arc::new(Int64Array::from(vec![5])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec!["x'; DROP TABLE t; --"])),
            ),
        ]);
        let handle = PreparedHandle::encode("SELECT $1, $2", Some(&bound)).unwrap();
        let decoded = PreparedHandle::decode(&handle).unwrap();
        assert_eq!(decoded.sql, "SELECT $1, $2");
        assert_eq!(
            decoded.params,
            [
                ScalarValue::Int64(Some(5)),
                ScalarValue::Utf8(Some("x'; DROP TABLE t; --".into()))
            ]
        );
        let bare = PreparedHandle::encode("SELECT 1", None).unwrap();
        assert!(PreparedHandle::decode(&bare).unwrap().params.is_empty());
    }

    #[test]
    fn handles_that_are_not_ours_are_refused_unread() {
        let handles = Handles::new();
        let bound = batch(vec![("a", Arc::new(Int64Array::from(vec![7])) as ArrayRef)]);
        let sealed = handles.seal(&PreparedHandle::encode("SELECT $1", Some(&bound)).unwrap());
        let opened = handles.open(&sealed).unwrap();
        assert_eq!((opened.sql.as_str(), opened.params.len()), ("SELECT $1", 1));
        // Another process's handle, a bare statement, nothing at all.
        let elsewhere = Handles::new().seal(b"\x08\x00\x00\x00SELECT 1");
        for bad in [&elsewhere[..], b"\x08\x00\x00\x00SELECT 1", b""] {
            let refused = handles.open(bad).err().expect("refused");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        // Any change to a sealed handle is refused before its bytes are
        // read (arrow-ipc would allocate what a forged length asks for).
        let mut rng = rand::rng();
        for _ in 0..2_000 {
            let mut bytes = sealed.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= rng.random_range(1..=255u8);
            }
            bytes.truncate(rng.random_range(0..=bytes.len()));
            assert!(handles.open(&bytes).is_err());
        }
    }
}
