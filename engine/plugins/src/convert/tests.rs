//! Guest output is untrusted input: whatever WIT values a plugin returns,
//! validating and applying them answers `Ok` or `Err(message)`, never a
//! panic. Properties over arbitrary values (wild lengths, offsets, keys,
//! bitmaps, bytes) and over well-formed values with one thing broken, plus
//! one test per known way to be malformed.

use proptest::collection::vec;
use proptest::prelude::*;
use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};

use super::*;

const NOW: i64 = 1_700_000_000_000_000_000;

fn time_column(_: &str) -> String {
    "time".to_string()
}

/// A host batch of `rows` rows: a tag, a float and a string column.
fn table(rows: usize) -> TableBatch {
    let mut b = WriteBatchBuilder::new(NOW);
    let t = b.table("checks", "time").unwrap();
    let host = b.column(t, "host", ColumnType::Tag, 0).unwrap();
    let v = b.column(t, "v", ColumnType::F64, 0).unwrap();
    let s = b.column(t, "s", ColumnType::String, 0).unwrap();
    for row in 0..rows {
        b.begin_point(t, row, NOW + row as i64).unwrap();
        b.set(t, host, row, Value::Tag(["a", "b"][row % 2]))
            .unwrap();
        if row % 3 != 0 {
            b.set(t, v, row, Value::F64(row as f64)).unwrap();
        }
        b.set(t, s, row, Value::String("é")).unwrap();
    }
    b.finish().unwrap().pop().unwrap()
}

// ---- arbitrary values: any shape at all ----

fn any_validity() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), vec(any::<u8>(), 0..4)]
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..12),
        "[a-zé€]{0,6}".prop_map(String::into_bytes),
    ]
}

fn any_values() -> impl Strategy<Value = ColumnValues> {
    prop_oneof![
        (
            vec(0u32..16, 0..6),
            any_bytes(),
            vec(0u32..8, 0..10),
            any_validity()
        )
            .prop_map(|(dictionary_offsets, dictionary_data, keys, validity)| {
                ColumnValues::Tag(TagColumn {
                    dictionary_offsets,
                    dictionary_data,
                    keys,
                    validity,
                })
            }),
        (vec(any::<f64>(), 0..10), any_validity())
            .prop_map(|(values, validity)| ColumnValues::F64(F64Column { values, validity })),
        (vec(any::<i64>(), 0..10), any_validity())
            .prop_map(|(values, validity)| ColumnValues::S64(I64Column { values, validity })),
        (vec(any::<u64>(), 0..10), any_validity())
            .prop_map(|(values, validity)| ColumnValues::U64(U64Column { values, validity })),
        (vec(any::<u8>(), 0..10), any_validity())
            .prop_map(|(values, validity)| ColumnValues::Bool(BoolColumn { values, validity })),
        (vec(0u32..16, 0..10), any_bytes(), any_validity()).prop_map(
            |(offsets, data, validity)| ColumnValues::String(StringColumn {
                offsets,
                data,
                validity,
            })
        ),
    ]
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("host".to_string()),
        Just("v".to_string()),
        Just("time".to_string()),
        "[a-z_]{1,4}",
        any::<String>(),
    ]
}

fn any_table_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("checks".to_string()),
        Just("weir_plugins".to_string()),
        "[a-z]{0,3}",
        any::<String>(),
    ]
}

fn any_column() -> impl Strategy<Value = Column> {
    (any_name(), any_values()).prop_map(|(name, values)| Column { name, values })
}

fn any_time() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0), NOW..NOW + 1_000, any::<i64>()]
}

fn any_batch() -> impl Strategy<Value = Batch> {
    (
        any_table_name(),
        vec(any_time(), 0..8),
        vec(any_column(), 0..4),
    )
        .prop_map(|(table, time, columns)| Batch {
            table,
            time,
            columns,
        })
}

// ---- well-formed values, then one thing broken ----

fn validity_for(rows: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), vec(any::<u8>(), rows.div_ceil(8))]
}

/// Offsets and bytes of `strings`, as the WIT spells them.
fn buffers(strings: &[&str]) -> (Vec<u32>, Vec<u8>) {
    let mut offsets = vec![0];
    let mut data = Vec::new();
    for s in strings {
        data.extend_from_slice(s.as_bytes());
        offsets.push(data.len() as u32);
    }
    (offsets, data)
}

const WORDS: &[&str] = &["", "a", "é", "€uro", "api"];

/// A column of `rows` rows that passes `check_column`.
fn column_for(rows: usize) -> impl Strategy<Value = ColumnValues> {
    let word = prop::sample::select(WORDS);
    prop_oneof![
        (vec(word.clone(), 1..4), validity_for(rows)).prop_flat_map(move |(dict, validity)| {
            let entries = dict.len() as u32;
            vec(0..entries, rows).prop_map(move |keys| {
                let (dictionary_offsets, dictionary_data) = buffers(&dict);
                ColumnValues::Tag(TagColumn {
                    dictionary_offsets,
                    dictionary_data,
                    keys,
                    validity: validity.clone(),
                })
            })
        }),
        (
            vec(prop_oneof![-1e9..1e9, any::<f64>()], rows),
            validity_for(rows)
        )
            .prop_map(|(values, validity)| ColumnValues::F64(F64Column { values, validity })),
        (vec(any::<i64>(), rows), validity_for(rows))
            .prop_map(|(values, validity)| ColumnValues::S64(I64Column { values, validity })),
        (vec(any::<u64>(), rows), validity_for(rows))
            .prop_map(|(values, validity)| ColumnValues::U64(U64Column { values, validity })),
        (vec(any::<u8>(), rows), validity_for(rows))
            .prop_map(|(values, validity)| ColumnValues::Bool(BoolColumn { values, validity })),
        (vec(word, rows), validity_for(rows)).prop_map(|(strings, validity)| {
            let (offsets, data) = buffers(&strings);
            ColumnValues::String(StringColumn {
                offsets,
                data,
                validity,
            })
        }),
    ]
}

/// One way to break a column's shape.
#[derive(Debug, Clone, Copy)]
enum Break {
    None,
    Grow,
    Shrink,
    CutValidity,
    OffsetsDown,
    OffsetPastEnd,
    NotUtf8,
    KeyOutOfRange,
    NoOffsets,
}

fn any_break() -> impl Strategy<Value = Break> {
    prop_oneof![
        3 => Just(Break::None),
        1 => Just(Break::Grow),
        1 => Just(Break::Shrink),
        1 => Just(Break::CutValidity),
        1 => Just(Break::OffsetsDown),
        1 => Just(Break::OffsetPastEnd),
        1 => Just(Break::NotUtf8),
        1 => Just(Break::KeyOutOfRange),
        1 => Just(Break::NoOffsets),
    ]
}

fn offsets_of(values: &mut ColumnValues) -> Option<(&mut Vec<u32>, &mut Vec<u8>)> {
    match values {
        ColumnValues::Tag(c) => Some((&mut c.dictionary_offsets, &mut c.dictionary_data)),
        ColumnValues::String(c) => Some((&mut c.offsets, &mut c.data)),
        _ => None,
    }
}

fn apply_break(mut values: ColumnValues, how: Break) -> ColumnValues {
    let validity = match &mut values {
        ColumnValues::Tag(c) => &mut c.validity,
        ColumnValues::F64(c) => &mut c.validity,
        ColumnValues::S64(c) => &mut c.validity,
        ColumnValues::U64(c) => &mut c.validity,
        ColumnValues::Bool(c) => &mut c.validity,
        ColumnValues::String(c) => &mut c.validity,
    };
    match how {
        Break::None => {}
        Break::CutValidity => {
            validity.pop();
        }
        Break::Grow | Break::Shrink => {
            let grow = matches!(how, Break::Grow);
            match &mut values {
                ColumnValues::Tag(c) => resize(&mut c.keys, grow, 0),
                ColumnValues::F64(c) => resize(&mut c.values, grow, 0.5),
                ColumnValues::S64(c) => resize(&mut c.values, grow, 1),
                ColumnValues::U64(c) => resize(&mut c.values, grow, 1),
                ColumnValues::Bool(c) => resize(&mut c.values, grow, 1),
                ColumnValues::String(c) => {
                    let last = c.offsets.last().copied().unwrap_or(0);
                    resize(&mut c.offsets, grow, last)
                }
            }
        }
        Break::OffsetsDown => {
            if let Some((offsets, _)) = offsets_of(&mut values)
                && offsets.len() >= 2
            {
                offsets[0] = offsets[1] + 1;
            }
        }
        Break::OffsetPastEnd => {
            if let Some((offsets, data)) = offsets_of(&mut values)
                && let Some(last) = offsets.last_mut()
            {
                *last = data.len() as u32 + 3;
            }
        }
        Break::NotUtf8 => {
            if let Some((_, data)) = offsets_of(&mut values) {
                data.push(0xff);
            }
        }
        Break::KeyOutOfRange => {
            if let ColumnValues::Tag(c) = &mut values
                && let Some(key) = c.keys.last_mut()
            {
                *key = u32::MAX;
            }
        }
        Break::NoOffsets => {
            if let Some((offsets, _)) = offsets_of(&mut values) {
                offsets.clear();
            }
        }
    }
    values
}

fn resize<T: Copy>(values: &mut Vec<T>, grow: bool, with: T) {
    if grow {
        values.extend([with; 9]);
    } else {
        values.pop();
    }
}

fn shaped_columns(rows: usize) -> impl Strategy<Value = Vec<Column>> {
    vec(
        (any_name(), column_for(rows), any_break()).prop_map(|(name, values, how)| Column {
            name,
            values: apply_break(values, how),
        }),
        0..4,
    )
}

fn shaped_batch() -> impl Strategy<Value = Batch> {
    (0usize..10).prop_flat_map(|rows| {
        (
            any_table_name(),
            vec(any_time(), rows),
            shaped_columns(rows),
        )
            .prop_map(|(table, time, columns)| Batch {
                table,
                time,
                columns,
            })
    })
}

/// Kept rows: arbitrary, or valid for `rows` with one thing perhaps wrong.
fn kept_for(rows: usize) -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        vec(any::<u32>(), 0..8),
        vec(0u32..(rows as u32 + 2), 0..8),
        prop::sample::subsequence((0..rows as u32).collect::<Vec<_>>(), 0..=rows),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn adapter_output_never_panics(batches in prop_oneof![
        vec(any_batch(), 0..3),
        vec(shaped_batch(), 0..3),
    ]) {
        match adapter_output(&batches, NOW, &time_column) {
            Ok(out) => {
                let rows: usize = out.iter().map(|t| t.batch.num_rows()).sum();
                let given: usize = batches.iter().map(|b| b.time.len()).sum();
                prop_assert_eq!(rows, given);
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn a_checked_column_reads_in_bounds(rows in 0usize..10, column in any_column()) {
        if check_column(&column, rows).is_ok() {
            for row in 0..rows {
                // Only that it answers; `wit_value` is total anyway, so
                // also ask past the end.
                let _ = wit_value(&column.values, row);
            }
        }
        let _ = wit_value(&column.values, rows + 100);
    }

    #[test]
    fn well_formed_columns_pass(
        (rows, values) in (0usize..10).prop_flat_map(|rows| (Just(rows), column_for(rows)))
    ) {
        let column = Column { name: "c".into(), values };
        prop_assert_eq!(check_column(&column, rows), Ok(()));
        let breaks: &[Break] = if rows == 0 { &[Break::Grow] } else { &[Break::Grow, Break::Shrink] };
        for &how in breaks {
            let broken = Column { name: "c".into(), values: apply_break(column.values.clone(), how) };
            prop_assert!(check_column(&broken, rows).is_err(), "{:?}", how);
        }
    }

    #[test]
    fn apply_filter_never_panics(
        (rows, kept) in (1usize..7).prop_flat_map(|rows| (Just(rows), kept_for(rows)))
    ) {
        let table = table(rows);
        let valid = kept.windows(2).all(|w| w[0] < w[1]) && kept.iter().all(|k| (*k as usize) < rows);
        match apply_filter(&table, &kept) {
            Ok(out) => {
                prop_assert!(valid, "accepted {:?} for {} rows", kept, rows);
                prop_assert_eq!(out.batch.num_rows(), kept.len());
            }
            Err(message) => prop_assert!(!valid, "refused {:?} for {} rows: {}", kept, rows, message),
        }
    }

    #[test]
    fn apply_enrichment_never_panics(
        (rows, changes) in (1usize..7).prop_flat_map(|rows| (
            Just(rows),
            prop_oneof![vec(any_column(), 0..4), shaped_columns(rows)],
        ))
    ) {
        match apply_enrichment(&table(rows), &changes, NOW) {
            Ok(out) => prop_assert_eq!(out.batch.num_rows(), rows),
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }
}

// ---- each known way to be malformed, by name ----

fn tag(keys: Vec<u32>, validity: Vec<u8>) -> Column {
    let (dictionary_offsets, dictionary_data) = buffers(&["a", "b"]);
    Column {
        name: "host".into(),
        values: ColumnValues::Tag(TagColumn {
            dictionary_offsets,
            dictionary_data,
            keys,
            validity,
        }),
    }
}

fn batch_of(rows: usize, column: Column) -> Batch {
    Batch {
        table: "checks".into(),
        time: vec![NOW; rows],
        columns: vec![column],
    }
}

fn refused(rows: usize, column: Column, expect: &str) {
    let err = adapter_output(&[batch_of(rows, column.clone())], NOW, &time_column).unwrap_err();
    assert!(err.contains(expect), "{err}");
    let err = apply_enrichment(&table(rows), &[column], NOW).unwrap_err();
    assert!(err.contains(expect), "{err}");
}

#[test]
fn more_keys_than_rows_with_a_short_bitmap_is_an_error_not_a_panic() {
    // The original defect: the bitmap was read per key before the key
    // count was checked, so key 8 read byte 1 of a 1-byte bitmap.
    refused(1, tag(vec![0; 20], vec![0xff]), "20 values for 1 rows");
}

#[test]
fn every_malformed_shape_is_refused_with_its_reason() {
    refused(3, tag(vec![0, 1], Vec::new()), "2 values for 3 rows");
    refused(
        9,
        tag(vec![0; 9], vec![0xff]),
        "validity of 1 bytes for 9 rows",
    );
    refused(
        2,
        tag(vec![0, 2], Vec::new()),
        "key 2 outside a dictionary of 2",
    );
    let dictionary = |offsets: Vec<u32>, data: &[u8]| Column {
        name: "host".into(),
        values: ColumnValues::Tag(TagColumn {
            dictionary_offsets: offsets,
            dictionary_data: data.to_vec(),
            keys: vec![0],
            validity: Vec::new(),
        }),
    };
    refused(1, dictionary(vec![], b"a"), "no offsets");
    refused(1, dictionary(vec![0, 5], b"a"), "offset 5 past 1 bytes");
    refused(1, dictionary(vec![1, 0], b"a"), "bad offsets 1..0");
    refused(1, dictionary(vec![0, 1], b"\xe9"), "not UTF-8");
    refused(
        1,
        dictionary(vec![0, 1], "é".as_bytes()),
        "bad offsets 0..1",
    );
    let string = |offsets: Vec<u32>, data: &[u8]| Column {
        name: "s".into(),
        values: ColumnValues::String(StringColumn {
            offsets,
            data: data.to_vec(),
            validity: Vec::new(),
        }),
    };
    refused(2, string(vec![0, 1], b"a"), "2 offsets for 2 rows");
    refused(1, string(vec![], b""), "0 offsets for 1 rows");
    refused(2, string(vec![0, 2, 1], b"ab"), "bad offsets 2..1");
    let floats = Column {
        name: "v".into(),
        values: ColumnValues::F64(F64Column {
            values: vec![1.0; 4],
            validity: Vec::new(),
        }),
    };
    refused(3, floats, "4 values for 3 rows");
}

#[test]
fn kept_rows_must_be_in_range_ascending_and_unique() {
    let table = table(4);
    assert_eq!(apply_filter(&table, &[0, 2]).unwrap().batch.num_rows(), 2);
    assert_eq!(apply_filter(&table, &[]).unwrap().batch.num_rows(), 0);
    let err = apply_filter(&table, &[4]).unwrap_err();
    assert!(err.contains("kept row 4 of a batch of 4"), "{err}");
    let err = apply_filter(&table, &[2, 1]).unwrap_err();
    assert!(err.contains("not ascending"), "{err}");
    let err = apply_filter(&table, &[1, 1]).unwrap_err();
    assert!(err.contains("not ascending"), "{err}");
}
