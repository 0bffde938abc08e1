//! An alert rule: SQL whose answer, row by row, says which alert instances
//! fail now. A row's string columns are its labels (its identity), a
//! boolean `firing` column says whether it fails (without one, every row
//! fails), a numeric `value` is kept for templates and the tables, and a
//! timestamp `checked_at` tells `consecutive` which check a row reports.
//!
//! `consecutive = 3` counts *checks*, not evaluations, when the answer has
//! `checked_at`: an evaluation only counts if it reports a newer check than
//! the last one counted, so "3 consecutive failures" means three failed
//! probe runs however often the rule is evaluated. Without `checked_at`,
//! each evaluation counts. The seed's case reads:
//!
//! ```sql
//! SELECT DISTINCT ON (service_name)
//!        service_name, status = 'unhealthy' AS firing,
//!        response_ms AS value, recorded_at AS checked_at
//! FROM service_metrics
//! WHERE recorded_at > now() - INTERVAL '15 minutes'
//! ORDER BY service_name, recorded_at DESC
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampNanosecondType};
use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weir_query::QueryResult;

use crate::config::{ReceiverSection, RuleSection};
use crate::context::Collectors;
use crate::groups::GroupingOverrides;
use crate::template::Template;
use crate::{Result, config_error, parse_duration};

/// The label every alert carries: its rule's name.
pub const ALERTNAME: &str = "alertname";
/// Columns of a rule's answer with a meaning of their own (never labels).
const FIRING: &str = "firing";
const VALUE: &str = "value";
const CHECKED_AT: &str = "checked_at";

/// `high` pages; `low` goes to chat or a ticket queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Low,
}

impl Priority {
    pub fn parse(what: &str, text: &str) -> Result<Self> {
        match text {
            "high" => Ok(Priority::High),
            "low" => Ok(Priority::Low),
            _ => Err(config_error(
                what,
                format!("{text:?} is not a priority: \"high\" or \"low\""),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked `[rules.NAME]`.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub name: String,
    pub query: String,
    pub interval: Duration,
    pub for_: Duration,
    pub consecutive: u32,
    pub keep_firing_for: Duration,
    pub priority: Priority,
    pub summary: Template,
    pub description: Template,
    pub runbook: Template,
    /// Static labels, templated.
    pub labels: BTreeMap<String, Template>,
    pub receivers: Option<Vec<String>>,
    /// Its own grouping, over the configured one.
    pub grouping: GroupingOverrides,
    /// What its notifications carry besides the alert.
    pub collect: Collectors,
}

impl RuleDef {
    pub fn from_section(
        name: &str,
        section: &RuleSection,
        receivers: &BTreeMap<String, ReceiverSection>,
    ) -> Result<Self> {
        let what = format!("rules.{name}");
        let key = |k: &str| format!("{what}.{k}");
        weir_model::validate_name(weir_model::NameKind::Column, name)
            .map_err(|e| config_error(&what, format!("the rule's name: {e}")))?;
        let columns = output_columns(&section.query).map_err(|e| config_error(key("query"), e))?;
        let interval = match &section.interval {
            Some(text) => parse_duration(&key("interval"), text)?,
            None => Duration::from_secs(60),
        };
        if interval < Duration::from_secs(1) {
            return Err(config_error(key("interval"), "must be at least 1s"));
        }
        let duration = |k: &str, text: &Option<String>| -> Result<Duration> {
            text.as_deref()
                .map_or(Ok(Duration::ZERO), |t| parse_duration(&key(k), t))
        };
        let consecutive = section.consecutive.unwrap_or(1);
        if consecutive == 0 {
            return Err(config_error(key("consecutive"), "must be 1 or more"));
        }
        let priority = Priority::parse(
            &key("priority"),
            section.priority.as_deref().unwrap_or("low"),
        )?;
        // Labels a template may name: the answer's columns (any of which may
        // be a string) and the static labels.
        let mut known: Option<BTreeSet<String>> = columns.map(|names| {
            names
                .into_iter()
                .filter(|n| ![FIRING, VALUE, CHECKED_AT].contains(&n.as_str()))
                .collect()
        });
        if let Some(known) = &mut known {
            known.extend(section.labels.keys().cloned());
            known.insert(ALERTNAME.into());
        }
        let template = |k: &str, text: &Option<String>| {
            Template::parse(&key(k), text.as_deref().unwrap_or(""), known.as_ref())
        };
        let mut labels = BTreeMap::new();
        for (label, text) in &section.labels {
            weir_model::validate_name(weir_model::NameKind::Column, label)
                .map_err(|e| config_error(key("labels"), e.to_string()))?;
            if label == ALERTNAME {
                return Err(config_error(
                    key("labels"),
                    "alertname is the rule's name and cannot be set",
                ));
            }
            labels.insert(
                label.clone(),
                Template::parse(&format!("{what}.labels.{label}"), text, known.as_ref())?,
            );
        }
        if let Some(names) = &section.receivers {
            for receiver in names {
                if !receivers.contains_key(receiver) {
                    return Err(config_error(
                        key("receivers"),
                        format!("no receiver named {receiver:?} is configured"),
                    ));
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            query: section.query.clone(),
            interval,
            for_: duration("for", &section.for_)?,
            consecutive,
            keep_firing_for: duration("keep_firing_for", &section.keep_firing_for)?,
            priority,
            summary: template("summary", &section.summary)?,
            description: template("description", &section.description)?,
            runbook: template("runbook", &section.runbook)?,
            labels,
            receivers: section.receivers.clone(),
            grouping: GroupingOverrides::parse(
                &what,
                section.group_by.as_deref(),
                section.group_wait.as_deref(),
                section.group_interval.as_deref(),
                section.repeat_interval.as_deref(),
                section.group_window.as_deref(),
            )?,
            collect: Collectors::parse(&key("collect"), &section.collect, known.as_ref())?,
        })
    }
}

/// Checks rule sections without running anything: names, durations, SQL
/// that parses to one read-only query, and templates that resolve.
/// Planning against real tables happens when the rule first runs (and in
/// `weir rules test`).
pub fn check_rule_sections(
    rules: &BTreeMap<String, RuleSection>,
    receivers: &BTreeMap<String, ReceiverSection>,
) -> Result<usize> {
    for (name, section) in rules {
        RuleDef::from_section(name, section, receivers)?;
    }
    Ok(rules.len())
}

/// The names of a query's output columns, from its SQL alone; `None` when
/// it selects `*`. Refuses anything but one query.
fn output_columns(sql: &str) -> Result<Option<Vec<String>>, String> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| format!("the SQL does not parse: {e}"))?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err("must be exactly one SELECT query".into());
    };
    let mut body = query.body.as_ref();
    // A set operation's columns are its first branch's.
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    let select = match body {
        SetExpr::Select(select) => select,
        SetExpr::Query(_) | SetExpr::Values(_) => return Ok(None),
        _ => return Err("must be a SELECT query".into()),
    };
    let mut names = Vec::new();
    for item in &select.projection {
        match item {
            SelectItem::ExprWithAlias { alias, .. } => names.push(alias.value.clone()),
            SelectItem::ExprWithAliases { aliases, .. } => {
                names.extend(aliases.iter().map(|a| a.value.clone()))
            }
            SelectItem::UnnamedExpr(Expr::Identifier(id)) => names.push(id.value.clone()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
                if let Some(last) = ids.last() {
                    names.push(last.value.clone());
                }
            }
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => return Ok(None),
            // An unnamed expression gets a generated name no template can
            // sensibly use; it is not a label.
            SelectItem::UnnamedExpr(_) => {}
        }
    }
    Ok(Some(names))
}

/// The tables a query reads (names as written, unquoted; CTE names too).
pub fn table_names(sql: &str) -> Result<BTreeSet<String>, String> {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{TableFactor, Visit, Visitor};

    struct Tables(BTreeSet<String>);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, .. } = factor
                && let Some(ident) = name.0.last().and_then(|p| p.as_ident())
            {
                self.0.insert(ident.value.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| format!("the SQL does not parse: {e}"))?;
    let mut tables = Tables(BTreeSet::new());
    for statement in &statements {
        let _ = statement.visit(&mut tables);
    }
    Ok(tables.0)
}

/// `sql` as it would have run at `at_ns`: `now()` and `CURRENT_TIMESTAMP`
/// are `at_ns`, and each table named in `time_columns` (table → its time
/// column) shows only rows up to `at_ns` (`weir rules test --at`).
pub fn sql_at(
    sql: &str,
    at_ns: i64,
    time_columns: &BTreeMap<String, String>,
) -> Result<String, String> {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{TableFactor, VisitMut, VisitorMut};

    struct AsOf<'a> {
        now: Expr,
        at_ns: i64,
        time_columns: &'a BTreeMap<String, String>,
        error: Option<String>,
    }
    impl VisitorMut for AsOf<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr
                && let Some(name) = f.name.0.last().and_then(|part| part.as_ident())
                && ["now", "current_timestamp"].contains(&name.value.to_ascii_lowercase().as_str())
            {
                *expr = self.now.clone();
            }
            ControlFlow::Continue(())
        }
        fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, alias, .. } = factor else {
                return ControlFlow::Continue(());
            };
            let Some(table) = name.0.last().and_then(|p| p.as_ident()) else {
                return ControlFlow::Continue(());
            };
            let Some(time_column) = self.time_columns.get(&table.value) else {
                return ControlFlow::Continue(());
            };
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let alias = alias
                .as_ref()
                .map_or_else(|| quote(&table.value), |a| a.name.to_string());
            let text = format!(
                "SELECT * FROM (SELECT * FROM {name} WHERE {} <= to_timestamp_nanos({})) AS {alias}",
                quote(time_column),
                self.at_ns
            );
            match parse_from(&text) {
                Ok(derived) => *factor = derived,
                Err(e) => self.error = Some(e),
            }
            ControlFlow::Continue(())
        }
    }
    fn parse_from(text: &str) -> Result<TableFactor, String> {
        let statements = Parser::parse_sql(&GenericDialect {}, text).map_err(|e| e.to_string())?;
        if let [Statement::Query(query)] = statements.as_slice()
            && let SetExpr::Select(select) = query.body.as_ref()
            && let Some(from) = select.from.first()
        {
            return Ok(from.relation.clone());
        }
        Err("could not rewrite a table reference".into())
    }
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| format!("the SQL does not parse: {e}"))?;
    let now = Parser::new(&GenericDialect {})
        .try_with_sql(&format!("to_timestamp_nanos({at_ns})"))
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())?;
    let mut as_of = AsOf {
        now,
        at_ns,
        time_columns,
        error: None,
    };
    for statement in &mut statements {
        let _ = statement.visit(&mut as_of);
    }
    if let Some(e) = as_of.error {
        return Err(e);
    }
    Ok(statements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(";\n"))
}

impl RuleDef {
    /// The summary an observation would carry.
    pub fn summary_for(&self, obs: &Observation) -> String {
        let cx = crate::template::Context {
            rule: &self.name,
            priority: self.priority.as_str(),
            labels: &obs.labels,
            value: obs.value,
        };
        self.summary.render(&cx)
    }
}

/// One alert instance as one evaluation saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub labels: BTreeMap<String, String>,
    pub firing: bool,
    pub value: Option<f64>,
    pub checked_at_ns: Option<i64>,
}

/// Turns a rule's answer into observations, one per distinct label set
/// (rows with the same labels merge: firing if any fires).
pub fn observations(rule: &RuleDef, result: &QueryResult) -> Result<Vec<Observation>, String> {
    let schema = &result.schema;
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Observation> = BTreeMap::new();
    for field in schema.fields() {
        match field.name().as_str() {
            FIRING if field.data_type() != &DataType::Boolean => {
                return Err(format!(
                    "column `firing` must be a boolean, not {}",
                    field.data_type()
                ));
            }
            VALUE if !field.data_type().is_numeric() => {
                return Err(format!(
                    "column `value` must be a number, not {}",
                    field.data_type()
                ));
            }
            CHECKED_AT if !matches!(field.data_type(), DataType::Timestamp(..)) => {
                return Err(format!(
                    "column `checked_at` must be a timestamp, not {}",
                    field.data_type()
                ));
            }
            _ => {}
        }
    }
    let cast = |array: &dyn Array, to: &DataType| {
        arrow::compute::cast(array, to).map_err(|e| format!("reading the answer: {e}"))
    };
    for batch in &result.batches {
        let firing = batch.column_by_name(FIRING).map(|c| c.as_boolean().clone());
        let value = batch
            .column_by_name(VALUE)
            .map(|c| cast(c, &DataType::Float64))
            .transpose()?;
        let checked_at = batch
            .column_by_name(CHECKED_AT)
            .map(|c| cast(c, &DataType::Timestamp(TimeUnit::Nanosecond, None)))
            .transpose()?;
        let mut label_columns = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            if [FIRING, VALUE, CHECKED_AT].contains(&field.name().as_str()) {
                continue;
            }
            if is_string(field.data_type()) {
                let strings = cast(batch.column(i), &DataType::Utf8)?;
                label_columns.push((field.name().clone(), strings));
            }
        }
        for row in 0..batch.num_rows() {
            let mut labels = BTreeMap::new();
            for (name, column) in &label_columns {
                let strings = column.as_string::<i32>();
                if strings.is_valid(row) {
                    labels.insert(name.clone(), strings.value(row).to_string());
                }
            }
            labels.insert(ALERTNAME.to_string(), rule.name.clone());
            let fires = firing
                .as_ref()
                .is_none_or(|f| f.is_valid(row) && f.value(row));
            let value = value.as_ref().and_then(|v| {
                let v = v.as_primitive::<Float64Type>();
                v.is_valid(row).then(|| v.value(row))
            });
            let checked_at_ns = checked_at.as_ref().and_then(|c| {
                let c = c.as_primitive::<TimestampNanosecondType>();
                c.is_valid(row).then(|| c.value(row))
            });
            let seen = by_labels.entry(labels.clone()).or_insert(Observation {
                labels,
                firing: false,
                value: None,
                checked_at_ns: None,
            });
            if fires && !seen.firing {
                seen.firing = true;
                seen.value = value;
            } else if seen.value.is_none() {
                seen.value = value;
            }
            seen.checked_at_ns = seen.checked_at_ns.max(checked_at_ns);
        }
    }
    Ok(by_labels.into_values().collect())
}

fn is_string(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_string(value),
        _ => false,
    }
}

/// An alert's identity: its rule and labels, hashed. Stable across
/// restarts and versions (PagerDuty's `dedup_key`, the webhook's
/// `fingerprint`).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (name, value) in labels {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn rule(text: &str) -> Result<RuleDef> {
        let section: RuleSection = toml::from_str(text).unwrap();
        let receivers = BTreeMap::from([("chat".to_string(), ReceiverSection::default())]);
        RuleDef::from_section("down", &section, &receivers)
    }

    #[test]
    fn bad_rules_are_clear_load_errors() {
        for (text, expect) in [
            ("query = 'SELEC 1'", "does not parse"),
            ("query = 'SELECT 1; SELECT 2'", "exactly one"),
            ("query = 'DROP TABLE x'", "exactly one SELECT"),
            (
                "query = 'SELECT a FROM t' \n interval = '0s'",
                "at least 1s",
            ),
            ("query = 'SELECT a FROM t' \n consecutive = 0", "1 or more"),
            (
                "query = 'SELECT a FROM t' \n priority = 'urgent'",
                "not a priority",
            ),
            (
                "query = 'SELECT a FROM t' \n for = 'a while'",
                "rules.down.for",
            ),
            (
                "query = 'SELECT a FROM t' \n summary = '${labels.b}'",
                "unknown placeholder",
            ),
            (
                "query = 'SELECT a FROM t' \n summary = '${labels.firing}'",
                "unknown placeholder",
            ),
            (
                "query = 'SELECT a FROM t' \n runbook = '${nope}'",
                "unknown placeholder",
            ),
            (
                "query = 'SELECT a FROM t' \n labels = { x = '${labels.y}' }",
                "rules.down.labels.x",
            ),
            (
                "query = 'SELECT a FROM t' \n labels = { alertname = 'x' }",
                "cannot be set",
            ),
            (
                "query = 'SELECT a FROM t' \n receivers = ['pager']",
                "no receiver named",
            ),
        ] {
            let err = rule(text).unwrap_err().to_string();
            assert!(
                err.contains(expect) && err.starts_with("rules.down"),
                "{text}: {err}"
            );
        }
        let ok = rule(
            "query = 'SELECT t.service_name, x AS region, 1 AS value FROM t UNION ALL SELECT a, b, 2 FROM u' \n summary = '${labels.service_name} in ${labels.region} (${labels.team}): ${value}, ${labels.alertname}' \n labels = { team = 'core' } \n receivers = ['chat']",
        );
        assert!(ok.is_ok(), "{ok:?}");
        // With `*` the labels cannot be known before the rule runs.
        assert!(rule("query = 'SELECT * FROM t' \n summary = '${labels.anything}'").is_ok());
    }

    #[test]
    fn answers_become_observations() {
        let rule = rule("query = 'SELECT 1'").unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("service_name", DataType::Utf8, true),
            Field::new("firing", DataType::Boolean, true),
            Field::new("value", DataType::Int64, true),
            Field::new("count", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    None,
                ])),
                Arc::new(BooleanArray::from(vec![
                    Some(false),
                    None,
                    Some(true),
                    Some(true),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(Int64Array::from(vec![0, 0, 0, 0])),
            ],
        )
        .unwrap();
        let result = QueryResult {
            schema,
            batches: vec![batch],
        };
        let obs = observations(&rule, &result).unwrap();
        let find = |service: Option<&str>| {
            obs.iter()
                .find(|o| o.labels.get("service_name").map(String::as_str) == service)
                .unwrap()
        };
        assert_eq!(obs.len(), 3);
        assert!(find(Some("a")).firing);
        assert_eq!(find(Some("a")).value, Some(3.0));
        assert!(!find(Some("b")).firing, "a null `firing` is not firing");
        assert!(find(None).firing);
        assert_eq!(find(None).labels.get(ALERTNAME).unwrap(), "down");
        assert!(!find(None).labels.contains_key("count"));

        let wrong = Arc::new(Schema::new(vec![Field::new(
            "firing",
            DataType::Int64,
            true,
        )]));
        let err = observations(
            &rule,
            &QueryResult {
                schema: Arc::clone(&wrong),
                batches: vec![
                    RecordBatch::try_new(wrong, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap(),
                ],
            },
        )
        .unwrap_err();
        assert!(err.contains("must be a boolean"), "{err}");
    }

    #[test]
    fn rules_are_rewritten_as_of_a_time() {
        let sql = "SELECT a FROM t AS x JOIN u ON x.k = u.k WHERE time > now() - INTERVAL '5 minutes' AND b < CURRENT_TIMESTAMP";
        assert_eq!(
            table_names(sql).unwrap().into_iter().collect::<Vec<_>>(),
            ["t", "u"]
        );
        let times = BTreeMap::from([("t".to_string(), "recorded_at".to_string())]);
        let at = sql_at(sql, 1_700_000_000_000_000_000, &times).unwrap();
        assert_eq!(
            at.matches("to_timestamp_nanos(1700000000000000000)")
                .count(),
            3,
            "{at}"
        );
        assert!(!at.to_lowercase().contains("now()"), "{at}");
        assert!(
            at.contains(r#"(SELECT * FROM t WHERE "recorded_at" <= to_timestamp_nanos(1700000000000000000)) AS x"#),
            "{at}"
        );
        // A table without a known time column is read as it is.
        assert!(at.contains("JOIN u ON"), "{at}");
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = BTreeMap::from([("alertname".to_string(), "x".to_string())]);
        let b = BTreeMap::from([("alertname".to_string(), "x ".to_string())]);
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 16);
    }
}
