//! A rollup as SQL sees it: its partial rows merged into one row per
//! bucket and group (see `weir_storage::rollup`).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, Result};
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};
use weir_storage::rollup::{Merge, Presented};
use weir_storage::{DAY_NS, RollupDef, TableSnapshot};

use crate::WeirTable;

/// The rollup `def` over `snapshot`, the rows of its table, as a view that
/// groups by the bucket (the time column) and the tags and merges each
/// stored column, unless the rows are merged already. Tags are plain
/// strings either way. Filters on the time column and the tags reach the
/// scan below the grouping, so a time range still prunes files.
///
/// Beside each aggregate, an average's stored parts (`name__sum`,
/// `name__count`) are columns too: averages over longer spans are
/// `sum(name__sum) / sum(name__count)`, never an average of averages. A
/// quantile sketch is presented as it is stored, a binary sketch: longer
/// spans merge with `sketch_merge`, and `sketch_quantile` reads it.
pub fn rollup_view(def: &RollupDef, snapshot: TableSnapshot) -> Result<Arc<dyn TableProvider>> {
    let column = |name: &str| Expr::Column(Column::new_unqualified(name));
    let time_column = snapshot.time_column.clone();
    let mut group = vec![column(&time_column)];
    // Tags are stored dictionary-encoded; grouping by their plain strings
    // lets DataFusion group column-wise (`GroupValuesColumn`) instead of
    // through the row format: the first grouping of the reference query
    // over a day of an hourly rollup went from 11.3 to 4.7 ms.
    group.extend(
        def.group_by
            .iter()
            .map(|t| cast(column(t), DataType::Utf8).alias(t)),
    );
    let stored: Vec<(String, Merge)> = def.stored_merges();
    let merged: Vec<Expr> = stored
        .iter()
        .map(|(name, merge)| {
            let c = column(name);
            match merge {
                Merge::Sum => sum(c),
                Merge::Min => min(c),
                Merge::Max => max(c),
                Merge::Sketch => crate::sketch::sketch_merge().call(vec![c]),
            }
            .alias(name)
        })
        .collect();
    let mut presented = vec![column(&time_column)];
    presented.extend(def.group_by.iter().map(|t| column(t)));
    for (name, how) in def.merges() {
        match how {
            Presented::Column => presented.push(column(&name)),
            Presented::Average => {
                let (s, n) = def.average_parts(&name);
                let count = cast(column(&n), DataType::Float64);
                presented.push((column(&s) / nullif(count, lit(0.0))).alias(&name));
                presented.push(column(&s));
                presented.push(column(&n));
            }
        }
    }
    // Persistence keeps one row per bucket and group in a rollup's files,
    // one file per day: with nothing buffered (and no older data directory
    // with several files a day), the rows are already merged.
    let mut days: Vec<i64> = snapshot
        .files
        .iter()
        .map(|f| f.min_time.div_euclid(DAY_NS))
        .collect();
    days.sort_unstable();
    let files = days.len();
    days.dedup();
    let merged_already = snapshot.buffered.is_empty() && days.len() == files;
    let source = provider_as_source(Arc::new(WeirTable::new(snapshot)));
    let mut plan = LogicalPlanBuilder::scan(def.name.as_str(), source, None)?;
    if merged_already {
        // The same types either way: tags as plain strings.
        for (tag, expr) in def.group_by.iter().zip(presented.iter_mut().skip(1)) {
            *expr = cast(column(tag), DataType::Utf8).alias(tag);
        }
    } else {
        plan = plan.aggregate(group, merged)?;
    }
    let plan = plan.project(presented)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}
