//! Arrow Flight SQL: queries from ADBC, JDBC and any Flight SQL client,
//! answered by the engine behind `POST /api/v1/sql` — the same memory
//! limit, timeout, read-only rule and metrics, one engine behind both
//! doors. It shares the gRPC port and the Flight service with `DoPut`
//! writes ([`crate::flight`]), which hands it every call but `DoPut`.
//!
//! A statement is planned at `GetFlightInfo`, for its schema (nothing is
//! read), and run at `DoGet`. The ticket carries the SQL, so the server
//! keeps nothing between the two calls. A prepared statement's handle is
//! its SQL too; binding parameters to one is not served yet. Answers go out
//! as the engine's Arrow batches, IPC-encoded; no row is converted.
//!
//! Catalog calls (`GetCatalogs`, `GetDbSchemas`, `GetTables` with or
//! without schemas, `GetTableTypes`) read `information_schema` through the
//! same engine, so they list exactly what SQL can query; `GetSqlInfo`
//! describes the server.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::warn;
use weir_query::QueryEngine;

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
}

impl FlightSql {
    pub fn new(query: Arc<QueryEngine>) -> Self {
        Self { query }
    }

    /// The schema `sql` will answer with, or why it will not run.
    async fn schema_of(&self, sql: &str) -> Result<SchemaRef, Status> {
        self.query
            .plan_schema(sql)
            .await
            .map_err(|e| Error::from(e).grpc_status())
    }

    /// Runs `sql` and streams its batches.
    async fn answer(&self, sql: &str) -> Result<Response<DataStream>, Status> {
        let result = self.query.sql(sql).await.map_err(|e| {
            let e = Error::from(e);
            warn!(error = %e, "Flight SQL query failed");
            e.grpc_status()
        })?;
        Ok(Response::new(encode(result.schema, result.batches)))
    }

    /// Runs one of our own catalog queries; its SQL is fixed, so a failure
    /// is the server's.
    async fn catalog_rows(&self, sql: &str) -> Result<Vec<RecordBatch>, Status> {
        Ok(self
            .query
            .sql(sql)
            .await
            .map_err(|e| Error::from(e).grpc_status())?
            .batches)
    }
}

/// The batches as Flight data, schema first (also when there are none).
/// Dictionary columns (tags) stay dictionaries, as the schema announced at
/// `GetFlightInfo` says: the encoder's default would expand them.
fn encode(schema: SchemaRef, batches: Vec<RecordBatch>) -> DataStream {
    let batches = futures::stream::iter(batches.into_iter().map(Ok));
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_dictionary_handling(DictionaryHandling::Resend)
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from),
    )
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
        self.answer(&sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = self.schema_of(&query.query).await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e| Status::internal(format!("encoding the answer's schema: {e}")))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
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
        let sql = utf8(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        let schema = self.schema_of(&sql).await?;
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DataStream>, Status> {
        let sql = utf8(
            &query.prepared_statement_handle,
            "prepared statement handle",
        )?;
        self.answer(&sql).await
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
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
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
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
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
        let mut builder = query.into_builder();
        for batch in self
            .catalog_rows(
                "SELECT table_catalog, table_schema, table_name, table_type \
                 FROM information_schema.tables ORDER BY 1, 2, 3",
            )
            .await?
        {
            let rows = strings(&batch, 0)?
                .into_iter()
                .zip(strings(&batch, 1)?)
                .zip(strings(&batch, 2)?)
                .zip(strings(&batch, 3)?);
            for (((catalog, schema), table), kind) in rows {
                // The builder filters by the request's patterns and types;
                // a table's schema is planned only if it is asked for.
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
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
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
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
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
        let schema = builder.schema();
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(encode(schema, vec![batch])))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
