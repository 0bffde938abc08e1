//! Backtest: replays stored history through a rule set — rules, grouping,
//! suppressions — and reports what would have fired, when, how it would
//! have been grouped and told, and what suppressions would have withheld,
//! without sending anything or touching the live alert state.
//!
//! Each rule is evaluated at every step from `from` to `to` (its own
//! `interval`, or the step asked for) against the data as it was then:
//! `now()` is the evaluation's time and rows stored later are hidden (see
//! [`sql_at`]). The answers go into an alert book of their own, in memory,
//! with the live suppressions (each active in its own window, so one made
//! last week hides what it hid then); groups are flushed at every step, so
//! a notification's time is exact to one step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use weir_query::QueryEngine;
use weir_storage::Store;

use crate::alerts::{AlertBook, AlertState};
use crate::groups::Grouping;
use crate::notify::ReceiverDef;
use crate::rule::{ALERTNAME, RuleDef, observations, sql_at, table_names};
use crate::suppress::{Suppression, SuppressionBook};
use crate::{Result, config_error};

/// Most rule evaluations one backtest may run.
pub const MAX_EVALUATIONS: usize = 50_000;
/// Most transitions and notifications one report lists.
const MAX_REPORTED: usize = 10_000;

/// What a backtest replays.
pub struct BacktestPlan {
    pub rules: Vec<RuleDef>,
    pub receivers: Arc<BTreeMap<String, ReceiverDef>>,
    pub grouping: Grouping,
    pub suppressions: Vec<Arc<Suppression>>,
    pub from_ns: i64,
    pub to_ns: i64,
    /// Instead of each rule's interval.
    pub step: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestTransition {
    pub time: String,
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub from: &'static str,
    pub to: &'static str,
    pub value: Option<f64>,
    pub summary: String,
    /// Suppressions that would have withheld its notifications.
    pub suppressed_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacktestNotification {
    pub time: String,
    pub receiver: String,
    pub group_id: String,
    pub group_key: BTreeMap<String, String>,
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub alerts: usize,
    pub firing: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BacktestReport {
    pub from: String,
    pub to: String,
    pub evaluations: usize,
    pub failed_evaluations: usize,
    /// The first error of each rule that failed, if any.
    pub errors: BTreeMap<String, String>,
    pub transitions: Vec<BacktestTransition>,
    pub notifications: Vec<BacktestNotification>,
    /// True when more happened than the report lists.
    pub truncated: bool,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every (time, rule index) evaluation of the plan, in time order.
fn schedule(plan: &BacktestPlan) -> Result<Vec<(i64, usize)>> {
    if plan.to_ns <= plan.from_ns {
        return Err(config_error("backtest", "--to is not after --from"));
    }
    let mut evaluations = Vec::new();
    for (i, rule) in plan.rules.iter().enumerate() {
        let step = plan.step.unwrap_or(rule.interval).as_nanos().max(1) as i64;
        let count = ((plan.to_ns - plan.from_ns) / step + 1) as usize;
        if evaluations.len() + count > MAX_EVALUATIONS {
            return Err(config_error(
                "backtest",
                format!(
                    "{} evaluations or more, past the {MAX_EVALUATIONS} one backtest may run: a shorter period or a longer --step",
                    evaluations.len() + count
                ),
            ));
        }
        evaluations.extend((0..count).map(|k| (plan.from_ns + k as i64 * step, i)));
    }
    evaluations.sort();
    Ok(evaluations)
}

pub async fn run(plan: BacktestPlan, query: &QueryEngine, store: &Store) -> Result<BacktestReport> {
    let evaluations = schedule(&plan)?;
    let suppressions = SuppressionBook::replay(plan.suppressions.iter().map(|s| (**s).clone()));
    let book = AlertBook::open(None)?
        .with_grouping(plan.grouping.clone())
        .with_suppressions(suppressions);
    let time_columns: Vec<BTreeMap<String, String>> = plan
        .rules
        .iter()
        .map(|rule| {
            table_names(&rule.query)
                .map(|tables| {
                    tables
                        .into_iter()
                        .map(|t| {
                            let column = store.time_column_for(&t);
                            (t, column)
                        })
                        .collect()
                })
                .map_err(|e| config_error(format!("rules.{}", rule.name), e))
        })
        .collect::<Result<_>>()?;
    let receivers = Arc::clone(&plan.receivers);
    let route = move |rule: &RuleDef, labels: &BTreeMap<String, String>| {
        crate::notify::route(&receivers, rule, labels)
    };
    let mut report = BacktestReport {
        from: rfc3339(plan.from_ns),
        to: rfc3339(plan.to_ns),
        ..Default::default()
    };
    for (at_ns, i) in evaluations {
        let rule = &plan.rules[i];
        report.evaluations += 1;
        let answer = match sql_at(&rule.query, at_ns, &time_columns[i]) {
            Ok(sql) => query
                .sql_limited(&sql, 10_000)
                .await
                .map_err(|e| e.to_string())
                .and_then(|result| observations(rule, &result)),
            Err(e) => Err(e),
        };
        match answer {
            Ok(obs) => {
                book.apply(rule, &obs, true, at_ns, &route);
            }
            Err(e) => {
                report.failed_evaluations += 1;
                report.errors.entry(rule.name.clone()).or_insert(e);
            }
        }
        book.flush_groups(at_ns);
        // In memory: saving only marks what is owed as ready to hand out.
        book.save().await?;
        let due = book.take_due();
        for t in &due.history {
            if report.transitions.len() == MAX_REPORTED {
                report.truncated = true;
                break;
            }
            report.transitions.push(BacktestTransition {
                time: rfc3339(t.time_ns),
                rule: t.rule.clone(),
                labels: t
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != ALERTNAME)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                from: t.from.as_str(),
                to: t.to.as_str(),
                value: t.value,
                summary: t.summary.clone(),
                suppressed_by: t.suppressed_by.clone(),
            });
        }
        book.history_stored(due.history.len());
        for owed in due.notifications {
            book.notification_done(owed.id);
            if report.notifications.len() == MAX_REPORTED {
                report.truncated = true;
                continue;
            }
            let firing = owed
                .alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .count();
            report.notifications.push(BacktestNotification {
                time: rfc3339(at_ns),
                receiver: owed.receiver.clone(),
                group_id: owed.group_id.clone(),
                group_key: owed.group_key.clone(),
                status: owed.status().as_str(),
                alerts: owed.alerts.len(),
                firing,
            });
        }
    }
    Ok(report)
}
