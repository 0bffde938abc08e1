//! The order rows are stored in: by UTC day (one file per day), then by the
//! tag columns (the series key), then by time — across all the batches of a
//! buffer generation, without concatenating them.
//!
//! Persistence used to `concat_batches` a whole generation and
//! `lexsort_to_indices` it. On a 2-core machine under load that sort was 40%
//! of the server's CPU (a dynamic multi-column comparator, a string compare
//! per tag per comparison) and the concatenation a second copy of hundreds of
//! MiB. Here every tag value is ranked once — tags are dictionaries, so a
//! generation has a few thousand distinct values against millions of rows —
//! the ranks of a row's tags fold into one integer series id, and rows sort
//! as `(series, time)` pairs of plain integers. The result addresses rows as
//! `(batch, row)`, ready for `interleave_record_batch`.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::parquet_files::DAY_NS;

/// One row's place in the storage order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SortEntry {
    /// The row's tags as one number that orders like the tags themselves
    /// (nulls first). Compared first.
    series: u64,
    time: i64,
    pub batch: u32,
    pub row: u32,
}

/// Rows of `batches` grouped by UTC day (ascending), each day's rows in
/// storage order. Every batch must have the time column (timestamp ns) first;
/// `tags` names the tag columns in sort-key order (dictionaries of strings; a
/// batch without one has nulls there).
pub(crate) fn storage_order(
    batches: &[RecordBatch],
    tags: &[&str],
) -> Result<BTreeMap<i64, Vec<SortEntry>>, ArrowError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if batches.len() > u32::MAX as usize || batches.iter().any(|b| b.num_rows() > u32::MAX as usize)
    {
        return Err(ArrowError::ComputeError(
            "too many rows to order in one persist".to_string(),
        ));
    }
    let mut series = vec![0u64; rows];
    // How many distinct values `series` can take so far (its radix).
    let mut series_span: u64 = 1;
    for tag in tags {
        let (ranks, span) = tag_ranks(batches, tag)?;
        if series_span.checked_mul(span).is_none() {
            // Too many combinations for one u64: renumber the series seen so
            // far densely (there are at most as many as rows), then go on.
            series_span = densify(&mut series);
        }
        series_span = series_span
            .checked_mul(span)
            .ok_or_else(|| ArrowError::ComputeError("series key overflow".to_string()))?;
        for (s, r) in series.iter_mut().zip(&ranks) {
            *s = *s * span + u64::from(*r);
        }
    }

    let times = batches
        .iter()
        .map(|batch| {
            batch
                .column(0)
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(|| {
                    ArrowError::ComputeError("the time column is not a timestamp".to_string())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A null time (never written by Weir) sorts first, as in lexsort.
    let time_at = |times: &arrow::array::TimestampNanosecondArray, row: usize| {
        if times.is_null(row) {
            i64::MIN
        } else {
            times.value(row)
        }
    };
    // Count first so each day's entries are allocated once, exactly.
    let mut day_rows: BTreeMap<i64, usize> = BTreeMap::new();
    for times in &times {
        for row in 0..times.len() {
            *day_rows
                .entry(time_at(times, row).div_euclid(DAY_NS))
                .or_default() += 1;
        }
    }
    let mut by_day: BTreeMap<i64, Vec<SortEntry>> = day_rows
        .into_iter()
        .map(|(day, n)| (day, Vec::with_capacity(n)))
        .collect();
    let mut series = series.into_iter();
    for (b, times) in times.iter().enumerate() {
        for row in 0..times.len() {
            let time = time_at(times, row);
            let entry = SortEntry {
                series: series.next().unwrap_or_default(),
                time,
                batch: b as u32,
                row: row as u32,
            };
            if let Some(entries) = by_day.get_mut(&time.div_euclid(DAY_NS)) {
                entries.push(entry);
            }
        }
    }
    for entries in by_day.values_mut() {
        entries.sort_unstable_by_key(|e| (e.series, e.time));
    }
    Ok(by_day)
}
/// Each row's rank of its value of `tag` across all batches: 0 for null, then
/// 1.. in string order, equal strings equal ranks. Also the span (largest
/// rank + 1).
fn tag_ranks(batches: &[RecordBatch], tag: &str) -> Result<(Vec<u32>, u64), ArrowError> {
    // Distinct values over every batch's dictionary.
    let mut distinct: HashMap<&str, u32> = HashMap::new();
    for batch in batches {
        if let Some(column) = batch.column_by_name(tag) {
            let dictionary = column.as_dictionary_opt::<Int32Type>().ok_or_else(|| {
                ArrowError::ComputeError(format!("tag column {tag:?} is not a dictionary"))
            })?;
            let values = dictionary.values().as_string_opt::<i32>().ok_or_else(|| {
                ArrowError::ComputeError(format!("tag column {tag:?} has non-string values"))
            })?;
            for value in values.iter().flatten() {
                let next = distinct.len() as u32;
                distinct.entry(value).or_insert(next);
            }
        }
    }
    let mut sorted: Vec<&str> = distinct.keys().copied().collect();
    sorted.sort_unstable();
    for (rank, value) in sorted.iter().enumerate() {
        distinct.insert(value, rank as u32 + 1);
    }

    let mut ranks = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let Some(column) = batch.column_by_name(tag) else {
            ranks.extend(std::iter::repeat_n(0, batch.num_rows()));
            continue;
        };
        let dictionary = column.as_dictionary::<Int32Type>();
        let values = dictionary.values().as_string::<i32>();
        // Rank of each dictionary entry, then of each row through its key.
        let entry_ranks: Vec<u32> = values
            .iter()
            .map(|v| v.map_or(0, |v| distinct[v]))
            .collect();
        let keys = dictionary.keys();
        for (i, key) in keys.values().iter().enumerate() {
            let rank = if keys.is_null(i) {
                0
            } else {
                // Arrow validates dictionary keys on construction; an
                // out-of-range key is a bug upstream, not a panic here.
                *usize::try_from(*key)
                    .ok()
                    .and_then(|k| entry_ranks.get(k))
                    .ok_or_else(|| {
                        ArrowError::ComputeError(format!("tag column {tag:?}: key out of range"))
                    })?
            };
            ranks.push(rank);
        }
    }
    Ok((ranks, sorted.len() as u64 + 1))
}

/// Renumbers `values` to 0.. in the same order; returns how many distinct.
fn densify(values: &mut [u64]) -> u64 {
    let mut distinct = values.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    for v in values.iter_mut() {
        *v = distinct.binary_search(v).unwrap_or_default() as u64;
    }
    distinct.len() as u64
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayAccessor, ArrayRef, DictionaryArray, StringArray, TimestampNanosecondArray,
    };
    use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use proptest::prelude::*;

    use super::*;

    fn schema(tags: usize) -> Arc<Schema> {
        let mut fields = vec![Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        )];
        for t in 0..tags {
            fields.push(Field::new(
                format!("t{t}"),
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ));
        }
        Arc::new(Schema::new(fields))
    }

    /// Rows as (time, tag values); tags drawn from a small alphabet so
    /// batches share values through different dictionaries.
    fn batch(schema: &Arc<Schema>, rows: &[(i64, Vec<Option<u8>>)]) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(TimestampNanosecondArray::from(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ))];
        for t in 0..schema.fields().len() - 1 {
            let values: Vec<Option<String>> = rows
                .iter()
                .map(|r| r.1[t].map(|v| format!("v{}", v % 7)))
                .collect();
            let dictionary: DictionaryArray<Int32Type> =
                values.iter().map(|v| v.as_deref()).collect();
            columns.push(Arc::new(dictionary));
        }
        RecordBatch::try_new(Arc::clone(schema), columns).unwrap()
    }

    /// The (day, tags..., time) of each row in `order`, as strings, for comparing
    /// orders that may differ among equal keys.
    fn keys_in(batches: &[RecordBatch], rows: impl Iterator<Item = (usize, usize)>) -> Vec<String> {
        rows.map(|(b, r)| {
            let batch = &batches[b];
            let mut key = vec![
                batch
                    .column(0)
                    .as_primitive::<TimestampNanosecondType>()
                    .value(r)
                    .div_euclid(DAY_NS)
                    .to_string(),
            ];
            for c in 1..batch.num_columns() {
                let d = batch.column(c).as_dictionary::<Int32Type>();
                let v = d.downcast_dict::<StringArray>().unwrap();
                key.push(if v.is_null(r) {
                    "\0null".into()
                } else {
                    v.value(r).to_string()
                });
            }
            key.push(
                batch
                    .column(0)
                    .as_primitive::<TimestampNanosecondType>()
                    .value(r)
                    .to_string(),
            );
            key.join("|")
        })
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Same keys in the same order as day-partitioning plus lexsort over
        /// the concatenated batches (the order persistence used before).
        #[test]
        fn orders_like_lexsort_over_the_concatenation(
            tags in 0usize..4,
            raw in prop::collection::vec(
                prop::collection::vec((-3 * DAY_NS..3 * DAY_NS, prop::collection::vec(prop::option::weighted(0.8, 0u8..20), 4)), 0..40),
                1..5,
            ),
        ) {
            let schema = schema(tags);
            let batches: Vec<RecordBatch> = raw.iter().map(|rows| batch(&schema, rows)).collect();
            let names: Vec<String> = (0..tags).map(|t| format!("t{t}")).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let ours = storage_order(&batches, &names).unwrap();
            let ours: Vec<(usize, usize)> = ours
                .values()
                .flatten()
                .map(|e| (e.batch as usize, e.row as usize))
                .collect();

            let all = concat_batches(&schema, &batches).unwrap();
            let starts: Vec<usize> = batches.iter().scan(0, |s, b| { let at = *s; *s += b.num_rows(); Some(at) }).collect();
            // A row of the concatenation back to (batch, row).
            let locate = |i: usize| {
                let b = (0..batches.len())
                    .find(|&k| starts[k] <= i && i < starts[k] + batches[k].num_rows())
                    .unwrap();
                (b, i - starts[b])
            };
            let day: ArrayRef = Arc::new(arrow::array::Int64Array::from(
                all.column(0).as_primitive::<TimestampNanosecondType>().values().iter().map(|t| t.div_euclid(DAY_NS)).collect::<Vec<_>>(),
            ));
            let mut keys = vec![SortColumn { values: day, options: None }];
            for c in 1..all.num_columns() {
                keys.push(SortColumn { values: Arc::clone(all.column(c)), options: None });
            }
            keys.push(SortColumn { values: Arc::clone(all.column(0)), options: None });
            let theirs = lexsort_to_indices(&keys, None).unwrap();
            let theirs = theirs.values().iter().map(|i| locate(*i as usize));

            prop_assert_eq!(ours.len(), all.num_rows());
            prop_assert_eq!(keys_in(&batches, ours.into_iter()), keys_in(&batches, theirs));
        }
    }

    /// The renumbering used when tags' value counts multiply past a u64
    /// keeps the order and makes the values dense.
    #[test]
    fn densify_keeps_order() {
        let mut values = vec![u64::MAX, 3, u64::MAX, 0, 3];
        assert_eq!(densify(&mut values), 3);
        assert_eq!(values, vec![2, 1, 2, 0, 1]);
    }
}
