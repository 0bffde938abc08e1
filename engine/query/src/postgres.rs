//! What a Postgres client finds in a session besides Weir's tables: the
//! `pg_catalog` schema and the functions that psql, Grafana, JDBC and
//! psycopg call on connect and for `\d` (`pg_table_is_visible`,
//! `format_type`, `current_schemas`, the `regclass` casts, …), from
//! `datafusion-pg-catalog`.
//!
//! One catalog serves every session. `setup_pg_catalog` would build a new
//! one per session, which costs the parse of ~40 embedded tables each time
//! and, worse, numbers the tables' oids afresh: psql's `\d t` looks up
//! `t`'s oid in one query and reads its columns by that oid in the next,
//! so oids must stay the same from one query to the next.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
pub(crate) use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_pg_catalog::pg_catalog::{
    self as pg, PgCatalogSchemaProvider, PgCatalogStaticTables, array_bounds_udf, format_type,
    has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
};

use crate::engine::{CATALOG, SCHEMA, WeirSchema};

/// The `pg_catalog` schema shared by every Postgres session, built on first
/// use (nothing is spent on it unless a Postgres client connects).
pub(crate) struct PgCatalog {
    cell: OnceLock<Arc<Built>>,
}

struct Built {
    static_tables: Arc<PgCatalogStaticTables>,
    schema: Arc<dyn SchemaProvider>,
}

impl PgCatalog {
    pub(crate) fn new() -> Self {
        Self {
            cell: OnceLock::new(),
        }
    }

    /// The `pg_catalog` schema for `tables`, and what a session must also
    /// register ([`install`](Self::install)).
    fn built(&self, tables: &Arc<WeirSchema>) -> Result<Arc<Built>> {
        if let Some(built) = self.cell.get() {
            return Ok(Arc::clone(built));
        }
        let static_tables = Arc::new(
            PgCatalogStaticTables::try_new().map_err(|e| DataFusionError::External(e.into()))?,
        );
        let schema = PgCatalogSchemaProvider::try_new(
            WeirCatalogInfo {
                tables: Arc::clone(tables),
            },
            Arc::clone(&static_tables),
            EmptyContextProvider,
        )
        .map_err(|e| DataFusionError::External(e.into()))?;
        let built = Arc::new(Built {
            static_tables,
            schema: Arc::new(schema),
        });
        // Two first sessions may race; either build is as good, one is kept.
        Ok(Arc::clone(self.cell.get_or_init(|| built)))
    }

    /// The `pg_catalog` schema, to sit next to `public` in the session's
    /// catalog.
    pub(crate) fn schema(&self, tables: &Arc<WeirSchema>) -> Result<Arc<dyn SchemaProvider>> {
        Ok(Arc::clone(&self.built(tables)?.schema))
    }

    /// Registers the Postgres functions and type names in `ctx` — the same
    /// set `datafusion_pg_catalog::setup_pg_catalog` registers.
    pub(crate) fn install(&self, ctx: &SessionContext, tables: &Arc<WeirSchema>) -> Result<()> {
        let built = self.built(tables)?;
        ctx.register_udf(pg::create_current_database_udf(CATALOG));
        ctx.register_udf(pg::create_current_schema_udf());
        ctx.register_udf(pg::create_current_schemas_udf());
        ctx.register_udf(pg::create_pg_get_userbyid_udf());
        for name in [
            "has_table_privilege",
            "has_schema_privilege",
            "has_database_privilege",
            "has_any_column_privilege",
        ] {
            ctx.register_udf(has_privilege_udf::create_has_privilege_udf(name));
        }
        ctx.register_udf(pg::create_pg_table_is_visible());
        ctx.register_udf(format_type::create_format_type_udf());
        ctx.register_udf(pg::create_session_user_udf());
        ctx.register_udtf(
            "pg_get_keywords",
            Arc::clone(&built.static_tables.pg_get_keywords) as _,
        );
        ctx.register_udf(pg_get_expr_udf::create_pg_get_expr_udf());
        ctx.register_udf(pg::create_pg_get_partkeydef_udf());
        ctx.register_udf(pg::create_pg_relation_is_publishable_udf());
        ctx.register_udf(pg::create_pg_get_statisticsobjdef_columns_udf());
        ctx.register_udf(pg::create_pg_encoding_to_char_udf());
        ctx.register_udf(pg::create_pg_backend_pid_udf());
        ctx.register_udf(pg::create_pg_relation_size_udf());
        ctx.register_udf(pg::create_pg_total_relation_size_udf());
        ctx.register_udf(pg::create_pg_stat_get_numscans());
        ctx.register_udf(pg::create_pg_get_constraintdef());
        ctx.register_udf(pg::create_pg_get_partition_ancestors_udf());
        ctx.register_udf(quote_ident_udf::create_quote_ident_udf());
        ctx.register_udf(quote_ident_udf::create_parse_ident_udf());
        ctx.register_udf(array_bounds_udf::create_array_upper_udf());
        ctx.register_udf(array_bounds_udf::create_array_lower_udf());
        // `int4` bounds (from `array_upper`, say) for `generate_series`.
        CoerceIntArgsToBigInt::widen(ctx);
        Ok(())
    }
}

/// What `pg_class`, `pg_attribute` and `pg_namespace` list: Weir's tables,
/// as they are when the catalog is read.
#[derive(Clone)]
struct WeirCatalogInfo {
    tables: Arc<WeirSchema>,
}

impl std::fmt::Debug for WeirCatalogInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeirCatalogInfo").finish_non_exhaustive()
    }
}

#[async_trait]
impl CatalogInfo for WeirCatalogInfo {
    async fn catalog_names(&self) -> Result<Vec<String>> {
        Ok(vec![CATALOG.to_string()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>> {
        Ok((catalog == CATALOG).then(|| vec![SCHEMA.to_string()]))
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> Result<Option<Vec<String>>> {
        Ok((catalog == CATALOG && schema == SCHEMA).then(|| {
            let mut names = self.tables.table_names();
            // Sorted, so oids are handed out in the same order every time.
            names.sort();
            names
        }))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>> {
        if catalog != CATALOG || schema != SCHEMA {
            return Ok(None);
        }
        Ok(self.tables.table(table).await?.map(|t| t.schema()))
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>> {
        Ok(
            (catalog == CATALOG && schema == SCHEMA && self.tables.table_exist(table))
                .then_some(TableType::Base),
        )
    }
}
