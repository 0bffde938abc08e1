//! Rollups: per-bucket aggregates of a table, kept as data is written.
//!
//! A rollup is declared in configuration ([`RollupDef`]): a source table, a
//! time bucket, the tags to group by and the aggregates to keep. The store
//! keeps it as a table of its own whose rows are *partial* aggregates: one
//! row per (bucket, group) per slice of writes. Every aggregate is mergeable
//! (counts and sums add, minimums and maximums take the extreme, an average
//! is a sum and a count, quantile sketches add their buckets' counts — see
//! [`QuantileSketch`]), so any number of partial rows of a group merge
//! into the one row the raw rows would give — which is what makes a rollup
//! exact under late and out-of-order writes: a late row adds one more
//! partial row for its old bucket.
//!
//! Where partial rows come from, and why they are never in the WAL:
//!
//! - each write's rows are aggregated before the WAL append
//!   ([`Accumulator::add_raw`]) and the partial rows go to the write buffer
//!   beside the raw rows, in the same WAL-thread step, so a query sees both
//!   or neither;
//! - on replay, they are computed again from the replayed raw rows;
//! - persistence merges a generation's partial rows, with the rollup's file
//!   of each day they touch, into one row per bucket and group
//!   ([`Accumulator::add_partial`]) and one file per day, committed with
//!   the raw rows' files (compaction, should a day have several files,
//!   merges the same way);
//! - retention drops the rollup's day partitions with the source's, so a
//!   rollup never counts a row its source no longer has;
//! - a rollup declared over a table that already has files is filled from
//!   them when the store opens (and again from scratch when its definition
//!   changes).
//!
//! Queries see the merged rows: the query engine groups the partial rows by
//! bucket and tags ([`RollupDef::stored_merges`], [`RollupDef::merges`]),
//! or reads them as they are when nothing is buffered and each day has one
//! file.

mod accumulator;
mod sketch;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use accumulator::Accumulator;
use arrow::record_batch::RecordBatch;
pub use sketch::{QuantileSketch, RELATIVE_ACCURACY};
use weir_model::{ColumnDef, ColumnType, NameKind, validate_name};

use crate::parquet_files::DAY_NS;

/// The suffixes of an average's two stored columns.
pub const AVG_SUM_SUFFIX: &str = "__sum";
pub const AVG_COUNT_SUFFIX: &str = "__count";

/// Most aggregates one rollup may keep.
pub const MAX_AGGREGATES: usize = 64;
/// Most tags one rollup may group by.
pub const MAX_GROUP_BY: usize = 16;

/// One rollup, as configured and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupDef {
    pub name: String,
    pub source: String,
    /// Divides a day, so a bucket never straddles two day partitions.
    pub bucket: Duration,
    pub group_by: Vec<String>,
    pub aggregates: Vec<Aggregate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub name: String,
    pub function: Function,
}

/// What an aggregate computes over a bucket's rows, with SQL's meaning:
/// nulls are skipped; a sum, minimum or maximum of no values is null.
#[derive(Debug, Clone, PartialEq)]
pub enum Function {
    /// `count(*)`
    Count,
    /// `count(*) FILTER (WHERE column op literal)`
    CountIf(Condition),
    Min(String),
    Max(String),
    Sum(String),
    /// Kept as a sum and a count of the non-null values.
    Avg(String),
    /// `quantile_sketch(col)`: the distribution of the non-null values, as
    /// a [`QuantileSketch`] (a binary column).
    QuantileSketch(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub op: CmpOp,
    pub value: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Number(f64),
    Bool(bool),
}

/// How the query engine merges one stored column's partial values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Sum,
    Min,
    Max,
    /// `sketch_merge`: add the sketches' bucket counts.
    Sketch,
}

/// How partial values of a float column merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatMerge {
    Sum,
    Min,
    Max,
}

/// How the query engine presents one aggregate from its stored columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Presented {
    /// The stored column of the same name.
    Column,
    /// `sum(name__sum) / sum(name__count)`, null when the count is 0.
    Average,
}

impl RollupDef {
    /// Builds and checks a definition. `aggregates` pairs each name with
    /// its expression, e.g. `("up", "count_if(status = 'healthy')")`.
    pub fn new(
        name: &str,
        source: &str,
        bucket: Duration,
        group_by: Vec<String>,
        aggregates: &[(String, String)],
    ) -> Result<Self, String> {
        validate_name(NameKind::Table, name).map_err(|e| e.to_string())?;
        validate_name(NameKind::Table, source).map_err(|e| e.to_string())?;
        if weir_model::is_system_table(name) {
            return Err(format!(
                "the name {name:?} is reserved for Weir's own tables (weir_…)"
            ));
        }
        if name == source {
            return Err("a rollup cannot have its source's name".into());
        }
        let bucket_ns = i64::try_from(bucket.as_nanos()).unwrap_or(i64::MAX);
        if bucket_ns < 1_000_000_000 || DAY_NS % bucket_ns != 0 {
            return Err(format!(
                "bucket {bucket:?} must be whole seconds dividing a day (1m, 5m, 1h, 1d, …) \
                 so that no bucket straddles two days"
            ));
        }
        if group_by.len() > MAX_GROUP_BY {
            return Err(format!(
                "group_by has {} tags; at most {MAX_GROUP_BY}",
                group_by.len()
            ));
        }
        for (i, tag) in group_by.iter().enumerate() {
            validate_name(NameKind::Column, tag).map_err(|e| e.to_string())?;
            if group_by[..i].contains(tag) {
                return Err(format!("group_by names {tag:?} twice"));
            }
        }
        if aggregates.is_empty() {
            return Err("a rollup needs at least one aggregate".into());
        }
        if aggregates.len() > MAX_AGGREGATES {
            return Err(format!(
                "{} aggregates; at most {MAX_AGGREGATES}",
                aggregates.len()
            ));
        }
        let mut parsed = Vec::with_capacity(aggregates.len());
        for (agg_name, text) in aggregates {
            validate_name(NameKind::Column, agg_name).map_err(|e| e.to_string())?;
            if agg_name.contains("__") {
                return Err(format!(
                    "aggregate name {agg_name:?}: `__` is kept for stored columns"
                ));
            }
            let function =
                Function::parse(text).map_err(|e| format!("aggregate {agg_name:?}: {e}"))?;
            parsed.push(Aggregate {
                name: agg_name.clone(),
                function,
            });
        }
        let def = Self {
            name: name.to_string(),
            source: source.to_string(),
            bucket,
            group_by,
            aggregates: parsed,
        };
        let mut seen = std::collections::HashSet::new();
        let slots = def
            .aggregates
            .iter()
            .flat_map(|a| a.slots())
            .map(|(n, _)| n);
        for column in def.group_by.iter().cloned().chain(slots) {
            if !seen.insert(column.clone()) {
                return Err(format!("the column name {column:?} is used twice"));
            }
        }
        Ok(def)
    }

    pub fn bucket_ns(&self) -> i64 {
        self.bucket.as_nanos() as i64
    }

    /// The columns of the rollup's table after its time column: the tags
    /// grouped by, then each aggregate's stored columns.
    pub fn stored_columns(&self) -> Vec<ColumnDef> {
        let mut columns: Vec<ColumnDef> = self
            .group_by
            .iter()
            .map(|tag| ColumnDef {
                name: tag.clone(),
                column_type: ColumnType::Tag,
            })
            .collect();
        for a in &self.aggregates {
            for (name, slot) in a.slots() {
                columns.push(ColumnDef {
                    name,
                    column_type: slot.column_type(),
                });
            }
        }
        columns
    }

    /// For each aggregate, its presented name and how it is computed from
    /// the stored columns.
    pub fn merges(&self) -> Vec<(String, Presented)> {
        self.aggregates
            .iter()
            .map(|a| {
                let presented = match &a.function {
                    Function::Avg(_) => Presented::Average,
                    _ => Presented::Column,
                };
                (a.name.clone(), presented)
            })
            .collect()
    }

    /// Every stored column after the tags, with how its partial values
    /// merge.
    pub fn stored_merges(&self) -> Vec<(String, Merge)> {
        self.aggregates
            .iter()
            .flat_map(|a| a.slots())
            .map(|(name, slot)| {
                let merge = match slot {
                    Slot::Count | Slot::Float(FloatMerge::Sum) => Merge::Sum,
                    Slot::Float(FloatMerge::Min) => Merge::Min,
                    Slot::Float(FloatMerge::Max) => Merge::Max,
                    Slot::Sketch => Merge::Sketch,
                };
                (name, merge)
            })
            .collect()
    }

    /// The stored sum and count columns of the average `name`.
    pub fn average_parts(&self, name: &str) -> (String, String) {
        (
            format!("{name}{AVG_SUM_SUFFIX}"),
            format!("{name}{AVG_COUNT_SUFFIX}"),
        )
    }

    /// The definition as one line; a change of it rebuilds the rollup.
    pub fn fingerprint(&self) -> String {
        let aggregates: Vec<String> = self
            .aggregates
            .iter()
            .map(|a| format!("{}={}", a.name, a.function))
            .collect();
        format!(
            "source={} bucket={}s group_by=[{}] aggregates=[{}]",
            self.source,
            self.bucket.as_secs(),
            self.group_by.join(","),
            aggregates.join(", ")
        )
    }
}

/// The configured rollups, found by name and by source.
#[derive(Debug, Default)]
pub(crate) struct Rollups {
    by_name: HashMap<String, Arc<RollupDef>>,
    by_source: HashMap<String, Vec<Arc<RollupDef>>>,
}

impl Rollups {
    /// Checks that the rollups can live together: distinct names, and no
    /// rollup of a rollup (its partial rows are not raw rows).
    pub fn new(defs: &[RollupDef]) -> Result<Self, String> {
        let mut rollups = Self::default();
        for def in defs {
            let def = Arc::new(def.clone());
            if rollups
                .by_name
                .insert(def.name.clone(), Arc::clone(&def))
                .is_some()
            {
                return Err(format!("two rollups are named {:?}", def.name));
            }
            rollups
                .by_source
                .entry(def.source.clone())
                .or_default()
                .push(def);
        }
        for def in rollups.by_name.values() {
            if rollups.by_name.contains_key(&def.source) {
                return Err(format!(
                    "rollup {:?} reads rollup {:?}: a rollup's source must be a table of raw rows",
                    def.name, def.source
                ));
            }
        }
        Ok(rollups)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<RollupDef>> {
        self.by_name.get(name)
    }

    pub fn of_source(&self, table: &str) -> &[Arc<RollupDef>] {
        self.by_source.get(table).map_or(&[], Vec::as_slice)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<RollupDef>> {
        self.by_name.values()
    }
}

/// The partial rows of `batch`, a batch of `def`'s source.
pub(crate) fn partial_rows(def: &RollupDef, batch: &RecordBatch) -> Result<RecordBatch, String> {
    let mut accumulator = Accumulator::new(def);
    accumulator.add_raw(batch)?;
    accumulator.finish(batch.schema().field(0).name())
}

/// Merges partial rows into one row per (bucket, group).
pub(crate) fn merge_partial_rows(
    def: &RollupDef,
    batches: &[RecordBatch],
    time_column: &str,
) -> Result<RecordBatch, String> {
    let mut accumulator = Accumulator::new(def);
    for batch in batches {
        accumulator.add_partial(batch)?;
    }
    accumulator.finish(time_column)
}

/// One stored column of an aggregate: its type and how partial values
/// merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// An `i64` count.
    Count,
    /// A nullable `f64`.
    Float(FloatMerge),
    /// A nullable serialized [`QuantileSketch`].
    Sketch,
}

impl Slot {
    fn column_type(self) -> ColumnType {
        match self {
            Slot::Count => ColumnType::I64,
            Slot::Float(_) => ColumnType::F64,
            Slot::Sketch => ColumnType::Binary,
        }
    }
}

impl Aggregate {
    /// The stored columns: one, or two for an average.
    pub(crate) fn slots(&self) -> Vec<(String, Slot)> {
        match &self.function {
            Function::Count | Function::CountIf(_) => vec![(self.name.clone(), Slot::Count)],
            Function::Min(_) => vec![(self.name.clone(), Slot::Float(FloatMerge::Min))],
            Function::Max(_) => vec![(self.name.clone(), Slot::Float(FloatMerge::Max))],
            Function::Sum(_) => vec![(self.name.clone(), Slot::Float(FloatMerge::Sum))],
            Function::QuantileSketch(_) => vec![(self.name.clone(), Slot::Sketch)],
            Function::Avg(_) => vec![
                (
                    format!("{}{AVG_SUM_SUFFIX}", self.name),
                    Slot::Float(FloatMerge::Sum),
                ),
                (format!("{}{AVG_COUNT_SUFFIX}", self.name), Slot::Count),
            ],
        }
    }
}

impl Function {
    /// Parses `count(*)`, `count_if(col op literal)`, `min(col)`,
    /// `max(col)`, `sum(col)`, `avg(col)` or `quantile_sketch(col)`. Column
    /// names may be double-quoted; string literals are single-quoted (`''`
    /// is a quote).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let open = text
            .find('(')
            .ok_or_else(|| format!("{text:?} is not `function(argument)`"))?;
        if !text.ends_with(')') {
            return Err(format!("{text:?} does not end with `)`"));
        }
        let function = text[..open].trim().to_ascii_lowercase();
        let argument = text[open + 1..text.len() - 1].trim();
        let column = || parse_column(argument);
        Ok(match function.as_str() {
            "count" if argument == "*" => Function::Count,
            "count" => {
                return Err("only count(*) is kept; use count_if(col != …) or avg's count".into());
            }
            "count_if" => Function::CountIf(Condition::parse(argument)?),
            "min" => Function::Min(column()?),
            "max" => Function::Max(column()?),
            "sum" => Function::Sum(column()?),
            "avg" => Function::Avg(column()?),
            "quantile_sketch" => Function::QuantileSketch(column()?),
            other => {
                return Err(format!(
                    "unknown aggregate {other:?}; known: count(*), count_if(col op value), \
                     min, max, sum, avg, quantile_sketch"
                ));
            }
        })
    }
}

fn parse_column(text: &str) -> Result<String, String> {
    let text = text.trim();
    let name = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => text.to_string(),
    };
    validate_name(NameKind::Column, &name).map_err(|e| e.to_string())?;
    Ok(name)
}

impl Condition {
    fn parse(text: &str) -> Result<Self, String> {
        // The operator is the first one outside a quoted name or string.
        let bytes = text.as_bytes();
        let mut quote = None;
        let mut at = None;
        for (i, &b) in bytes.iter().enumerate() {
            match (quote, b) {
                (None, b'"' | b'\'') => quote = Some(b),
                (Some(q), b) if b == q => quote = None,
                (None, b'=' | b'!' | b'<' | b'>') => {
                    at = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let at = at.ok_or_else(|| format!("{text:?} is not `column op value`"))?;
        let rest = &text[at..];
        let (op, len) = [
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("!=", CmpOp::Ne),
            ("<>", CmpOp::Ne),
            ("=", CmpOp::Eq),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .iter()
        .find(|(s, _)| rest.starts_with(s))
        .map(|(s, op)| (*op, s.len()))
        .ok_or_else(|| format!("{text:?}: unknown comparison"))?;
        let column = parse_column(&text[..at])?;
        let value = Literal::parse(text[at + len..].trim())?;
        Ok(Self { column, op, value })
    }
}

impl Literal {
    fn parse(text: &str) -> Result<Self, String> {
        if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            if inner.replace("''", "").contains('\'') {
                return Err(format!("{text:?}: a quote inside a string is written ''"));
            }
            return Ok(Literal::String(inner.replace("''", "'")));
        }
        match text.to_ascii_lowercase().as_str() {
            "true" => return Ok(Literal::Bool(true)),
            "false" => return Ok(Literal::Bool(false)),
            _ => {}
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Literal::Number(n)),
            _ => Err(format!(
                "{text:?} is not a value: write 'text', a number, true or false"
            )),
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Function::Count => write!(f, "count(*)"),
            Function::CountIf(c) => write!(f, "count_if({c})"),
            Function::Min(c) => write!(f, "min({})", quote(c)),
            Function::Max(c) => write!(f, "max({})", quote(c)),
            Function::Sum(c) => write!(f, "sum({})", quote(c)),
            Function::Avg(c) => write!(f, "avg({})", quote(c)),
            Function::QuantileSketch(c) => write!(f, "quantile_sketch({})", quote(c)),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        };
        write!(f, "{} {op} {}", quote(&self.column), self.value)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(aggregates: &[(&str, &str)]) -> Result<RollupDef, String> {
        let aggregates: Vec<(String, String)> = aggregates
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        RollupDef::new(
            "m_1h",
            "m",
            Duration::from_secs(3600),
            vec!["service".into()],
            &aggregates,
        )
    }

    #[test]
    fn parses_every_function_and_prints_it_back() {
        for text in [
            "count(*)",
            "count_if(\"status\" = 'healthy')",
            "count_if(\"ms\" >= 250)",
            "count_if(\"ok\" != true)",
            "count_if(\"s\" = 'it''s')",
            "min(\"ms\")",
            "max(\"ms\")",
            "sum(\"ms\")",
            "avg(\"ms\")",
            "quantile_sketch(\"ms\")",
        ] {
            let parsed = Function::parse(text).unwrap();
            assert_eq!(parsed.to_string(), text);
            assert_eq!(Function::parse(&parsed.to_string()).unwrap(), parsed);
        }
        assert_eq!(
            Function::parse(" COUNT_IF( status<>'up' ) ").unwrap(),
            Function::CountIf(Condition {
                column: "status".into(),
                op: CmpOp::Ne,
                value: Literal::String("up".into())
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_keep_exactly() {
        for bad in [
            "count(ms)",
            "median(ms)",
            "avg ms",
            "avg(ms",
            "count_if(status)",
            "count_if(status = up)",
            "count_if(status = 'a'b')",
            "count_if(x = NaN)",
            "min(\"\")",
            "quantile_sketch(\"\")",
        ] {
            assert!(Function::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn checks_names_buckets_and_sizes() {
        assert!(def(&[("checks", "count(*)")]).is_ok());
        assert!(def(&[]).is_err());
        assert!(def(&[("a__b", "count(*)")]).is_err());
        assert!(
            def(&[("service", "count(*)")]).is_err(),
            "collides with a tag"
        );
        assert!(def(&[("ms", "avg(ms)"), ("ms__sum", "count(*)")]).is_err());
        let many: Vec<(String, String)> = (0..=MAX_AGGREGATES)
            .map(|i| (format!("a{i}"), "count(*)".to_string()))
            .collect();
        let agg = |n: usize| many[..n].to_vec();
        let rollup = |aggs: &[(String, String)]| {
            RollupDef::new("r", "m", Duration::from_secs(60), vec![], aggs)
        };
        assert!(rollup(&agg(MAX_AGGREGATES)).is_ok());
        assert!(rollup(&agg(MAX_AGGREGATES + 1)).is_err());
        let checks = [("c".to_string(), "count(*)".to_string())];
        for (secs, ok) in [(60, true), (3600, true), (86_400, true), (7 * 60, false)] {
            let r = RollupDef::new("r", "m", Duration::from_secs(secs), vec![], &checks);
            assert_eq!(r.is_ok(), ok, "{secs}s");
        }
        assert!(RollupDef::new("r", "m", Duration::from_millis(500), vec![], &checks).is_err());
        assert!(
            RollupDef::new("r", "m", Duration::from_secs(2 * 86_400), vec![], &checks).is_err()
        );
        assert!(RollupDef::new("weir_r", "m", Duration::from_secs(60), vec![], &checks).is_err());
        assert!(RollupDef::new("m", "m", Duration::from_secs(60), vec![], &checks).is_err());
        let tags = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        let r = |n| RollupDef::new("r", "m", Duration::from_secs(60), tags(n), &checks);
        assert!(r(MAX_GROUP_BY).is_ok());
        assert!(r(MAX_GROUP_BY + 1).is_err());
        assert!(
            RollupDef::new(
                "r",
                "m",
                Duration::from_secs(60),
                vec!["a".into(), "a".into()],
                &checks
            )
            .is_err()
        );
    }
}
