//! The PostgreSQL wire protocol (`--pg-listen`, default `127.0.0.1:5433`):
//! psql, psycopg, JDBC, Grafana's PostgreSQL data source.
//!
//! `pgwire` speaks the protocol; every query runs through the same
//! [`QueryEngine`] as HTTP and Flight SQL (same memory limit, timeout,
//! read-only rule and metrics), in its Postgres [`Dialect`]: PostgreSQL
//! syntax plus the `pg_catalog` schema that clients read on connect and for
//! `\d`. Before that, `datafusion-postgres`' compatibility parser rewrites
//! what clients send that DataFusion cannot plan as written (`'t'::regclass`,
//! `OPERATOR(pg_catalog.~)`, psql's own catalog queries), and its hooks
//! answer the session statements a client sends around its queries (`SET`,
//! `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK`) — none of which reach the engine.
//!
//! Bounds: at most `max_connections` connections (more are told `53300`,
//! as Postgres does); a connection that has not finished its startup and
//! login within a minute is dropped; no message may be over
//! [`connection::MAX_MESSAGE_BYTES`] (see [`connection`]); a socket is not
//! read while its answer is not being read.

mod connection;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type,
};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireConnectionState,
    PgWireServerHandlers, PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};
use weir_query::{Dialect, QueryEngine, ScalarValue};

use crate::Error;
use crate::auth::{Authenticator, Scope};

/// The Postgres front end: one per server, shared by every connection.
pub(crate) struct PgFrontEnd {
    statements: Arc<Statements>,
    connections: Arc<ConnectionManager>,
    auth: Arc<Authenticator>,
    /// With TLS configured, a session must start with it.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// How statements are read and run; also `Parse`'s [`QueryParser`].
pub(crate) struct Statements {
    query: Arc<QueryEngine>,
    parser: PostgresCompatibilityParser,
    /// `SET`/`SHOW`, then `BEGIN`/`COMMIT`/`ROLLBACK` (which also refuses
    /// statements in a failed transaction, as Postgres does).
    hooks: Vec<Arc<dyn QueryHook>>,
}

impl PgFrontEnd {
    pub(crate) fn new(
        query: Arc<QueryEngine>,
        auth: Arc<Authenticator>,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        Self {
            statements: Arc::new(Statements {
                query,
                parser: PostgresCompatibilityParser::new(),
                hooks: vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)],
            }),
            connections: Arc::new(ConnectionManager::new()),
            auth,
            tls,
        }
    }

    /// Accepts connections until `stop` turns true; connections already
    /// open end with their client or with the process.
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        max_connections: usize,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let tls = self.tls.clone().map(pgwire::tokio::TlsAcceptor::from);
        let handlers = Arc::new(Handlers {
            cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&self.connections))),
            startup: Arc::new(Startup {
                connections: Arc::clone(&self.connections),
                auth: Arc::clone(&self.auth),
                keys: RandomPidSecretKeyGenerator::default(),
                tls_required: self.tls.is_some(),
            }),
            front_end: Arc::new(self),
        });
        let slots = Arc::new(Semaphore::new(max_connections));
        let stopped = crate::wait_for_stop(stop);
        tokio::pin!(stopped);
        loop {
            let (mut socket, peer) = tokio::select! {
                () = &mut stopped => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: back off, keep serving.
                        warn!(error = %e, "accepting a Postgres connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                warn!(%peer, max_connections, "Postgres connection refused: too many open");
                tokio::spawn(async move {
                    let _ = socket.write_all(&too_many_connections()).await;
                    let _ = socket.shutdown().await;
                });
                continue;
            };
            let handlers = Arc::clone(&handlers);
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Err(e) = connection::serve_connection(socket, tls, &*handlers).await {
                    debug!(%peer, error = %e, "Postgres connection ended");
                }
                drop(slot);
            });
        }
    }
}

impl Statements {
    /// Runs one statement the engine answers, bounded also by the client's
    /// `statement_timeout` when it set one, and answers its rows, encoded
    /// as the client asked (`format`), batch by batch as the engine
    /// computes them. A failure part way (or the client's deadline) ends
    /// the rows with the error, never silently.
    async fn answer<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
        params: Vec<ScalarValue>,
        format: &Format,
    ) -> PgWireResult<Response> {
        let deadline = client_timeout(client).map(|t| tokio::time::Instant::now() + t);
        let query = self.query.sql_stream_in(Dialect::Postgres, sql, params);
        let answer = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, query)
                .await
                .map_err(|_| statement_timeout())?,
            None => query.await,
        }
        .map_err(|e| query_error(Error::Query(e)))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &answer.schema,
            format,
            Some(options),
        )?);
        let batches = stream::unfold(Some(answer), move |answer| async move {
            let mut answer = answer?;
            let next = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, answer.next()).await {
                    Ok(next) => next,
                    Err(_) => return Some((Err(statement_timeout()), None)),
                },
                None => answer.next().await,
            };
            match next? {
                Ok(batch) => Some((Ok(batch), Some(answer))),
                Err(e) => Some((Err(query_error(Error::Query(e))), None)),
            }
        });
        let rows = batches.flat_map({
            let fields = Arc::clone(&fields);
            move |batch: PgWireResult<RecordBatch>| {
                let rows: Vec<PgWireResult<DataRow>> = match batch {
                    Ok(batch) => encode_recordbatch(Arc::clone(&fields), batch).collect(),
                    Err(e) => vec![Err(e)],
                };
                stream::iter(rows)
            }
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// `sql` read into statements, by the compatibility parser: the text
    /// as the client sent it is held to the engine's size limit first.
    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        weir_query::check_size(sql).map_err(|e| query_error(e.into()))?;
        self.parser
            .parse(sql)
            .map_err(|e| user_error("42601", &format!("invalid query: {e}")))
    }
}

fn statement_timeout() -> PgWireError {
    user_error("57014", "canceling statement due to statement timeout")
}

/// The `statement_timeout` a client set (`SET statement_timeout = '5s'`),
/// where `SetShowHook` keeps it; `0` means none, as in Postgres.
fn client_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .filter(|timeout| !timeout.is_zero())
}

/// A scratch session for the hooks, which take one to answer `SHOW` and to
/// apply a `SET` of a DataFusion option. Queries never see it: their
/// sessions are the engine's, and a client cannot loosen their bounds.
fn hook_session() -> SessionContext {
    SessionContext::new()
}

#[async_trait]
impl SimpleQueryHandler for PgFrontEnd {
    async fn do_query<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        admitted(client)?;
        let this = &self.statements;
        let statements = this.parse(sql)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        let session = hook_session();
        'statements: for statement in statements {
            if let Statement::Deallocate { name, .. } = &statement {
                // How psycopg drops the statements it prepared. (`ALL`
                // leaves them to the connection's end: the store cannot
                // list them.)
                client.portal_store().rm_statement(&name.value);
                responses.push(Response::Execution(Tag::new("DEALLOCATE")));
                continue;
            }
            for hook in &this.hooks {
                if let Some(response) = hook.handle_simple_query(&statement, &session, client).await
                {
                    responses.push(response?);
                    continue 'statements;
                }
            }
            let sql = statement.to_string();
            responses.push(
                this.answer(client, &sql, Vec::new(), &Format::UnifiedText)
                    .await?,
            );
        }
        Ok(responses)
    }
}

/// A statement prepared by `Parse`.
#[derive(Clone, Debug)]
pub(crate) enum Prepared {
    /// Answered by a hook; `plan` describes its answer.
    Session {
        statement: Box<Statement>,
        plan: Box<LogicalPlan>,
    },
    /// Answered by the engine.
    Query {
        sql: String,
        schema: SchemaRef,
        /// The types of `$1`, `$2`, … as the plan determines them.
        params: Vec<Option<DataType>>,
    },
}

#[async_trait]
impl QueryParser for Statements {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        admitted(client)?;
        let mut statements = self.parse(sql)?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let session = hook_session();
        for hook in &self.hooks {
            if let Some(plan) = hook
                .handle_extended_parse_query(&statement, &session, client)
                .await
            {
                return Ok(Some(Prepared::Session {
                    statement: Box::new(statement),
                    plan: Box::new(plan?),
                }));
            }
        }
        let sql = statement.to_string();
        let (schema, params) = self
            .query
            .plan_schema_in(Dialect::Postgres, &sql, Vec::new())
            .await
            .map_err(|e| query_error(Error::Query(e)))?;
        Ok(Some(Prepared::Query {
            sql,
            schema,
            params,
        }))
    }

    fn get_parameter_types(&self, prepared: &Prepared) -> PgWireResult<Vec<Type>> {
        match prepared {
            Prepared::Session { .. } => Ok(Vec::new()),
            Prepared::Query { params, .. } => params
                .iter()
                .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
                .collect(),
        }
    }

    fn get_result_schema(
        &self,
        prepared: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match prepared {
            Prepared::Session { plan, .. } => {
                arrow_schema_to_pg_fields(plan.schema().as_arrow(), format, None)
            }
            Prepared::Query { schema, .. } => arrow_schema_to_pg_fields(schema, format, None),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgFrontEnd {
    type Statement = Prepared;
    type QueryParser = Statements;

    fn query_parser(&self) -> Arc<Statements> {
        Arc::clone(&self.statements)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        admitted(client)?;
        let this = &self.statements;
        match &portal.statement.statement {
            Prepared::Session { statement, plan } => {
                let none = ParamValues::List(Vec::new());
                let session = hook_session();
                for hook in &this.hooks {
                    if let Some(response) = hook
                        .handle_extended_query(statement, plan, &none, &session, client)
                        .await
                    {
                        return response;
                    }
                }
                Err(user_error(
                    "0A000",
                    &format!("unsupported statement: {statement}"),
                ))
            }
            Prepared::Query { sql, params, .. } => {
                let types: Vec<Option<&DataType>> = params.iter().map(Option::as_ref).collect();
                let values = match deserialize_parameters(portal, &types)? {
                    ParamValues::List(values) => values.into_iter().map(|v| v.value).collect(),
                    ParamValues::Map(_) => {
                        return Err(user_error("42P02", "named parameters are not supported"));
                    }
                };
                this.answer(client, sql, values, &portal.result_column_format)
                    .await
            }
        }
    }
}

struct Handlers {
    front_end: Arc<PgFrontEnd>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.front_end)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.front_end)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

/// Startup: while tokens are enforced the client is asked for a password,
/// and the password is a token with the `query` scope (any user name).
/// pgwire's own cleartext handler would need each password in plaintext to
/// compare with `==`; this one checks the hashed token store in constant
/// time, and counts failures per peer like every other listener. The
/// connection manager is what lets a client cancel its running query
/// (psql's Ctrl-C).
struct Startup {
    connections: Arc<ConnectionManager>,
    auth: Arc<Authenticator>,
    keys: RandomPidSecretKeyGenerator,
    /// Refuse sessions that did not start with TLS (`sslmode=disable`):
    /// their password would cross the network in the clear.
    tls_required: bool,
}

impl Startup {
    /// Backend key (for cancelling), parameters, `ReadyForQuery`.
    async fn admit<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = self.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.connections.register(pid, secret_key);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        client.session_extensions().insert(Admitted);
        finish_authentication(client, &DefaultServerParameterProvider::default()).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if self.tls_required && !client.is_secure() {
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".to_string(),
                        "28000".to_string(),
                        "this server accepts TLS connections only: connect with sslmode=require \
                         (or verify-full)"
                            .to_string(),
                    ))));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.auth.enforced() {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                } else {
                    self.admit(client).await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(password)
                if matches!(
                    client.state(),
                    PgWireConnectionState::AuthenticationInProgress
                ) =>
            {
                let password = password.into_password()?;
                let peer = client.socket_addr().ip();
                let checked = self
                    .auth
                    .authenticate(Some(&password.password), Some(peer))
                    .await
                    .and_then(|principal| principal.require(Scope::Query));
                if let Err(e) = checked {
                    let error = Error::Auth(e);
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".to_string(),
                        error.sqlstate().to_string(),
                        error.to_string(),
                    ))));
                }
                self.admit(client).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Marks a session the startup handler admitted. The connection loop ends
/// a session at a refused login, before anything pipelined behind it is
/// run; every query path checks for this mark too, so that no other way
/// into the query handlers can skip the login.
struct Admitted;

fn admitted<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<()> {
    if client.session_extensions().get::<Admitted>().is_some() {
        return Ok(());
    }
    Err(PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        "28000".to_string(),
        "the session has not been authenticated".to_string(),
    ))))
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        debug!(peer = %client.socket_addr(), %error, "Postgres error sent");
    }
}

fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.to_string(),
    )))
}

fn query_error(error: Error) -> PgWireError {
    user_error(error.sqlstate(), &error.to_string())
}

/// What Postgres answers a connection over `max_connections`: an
/// `ErrorResponse` (`FATAL`, `53300`), sent before the startup is read.
fn too_many_connections() -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    message
}
