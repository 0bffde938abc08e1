use arrow::array::{
    BooleanArray, DictionaryArray, Float32Array, Float64Array, Int8Array, Int32Array,
    LargeStringArray, ListArray, StringArray, StringViewArray, TimestampMillisecondArray,
    TimestampSecondArray, UInt16Array,
};
use arrow::datatypes::{Int8Type, TimeUnit};
use arrow::util::display::array_value_to_string;

use super::*;

fn time(_: &str) -> String {
    "time".to_string()
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn millis(values: &[i64]) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values.to_vec()))
}

fn decode_ok(batch: &RecordBatch) -> TableBatch {
    decode("m", batch, WriteLimits::default(), &time).unwrap()
}

fn decode_err(batch: &RecordBatch) -> String {
    decode("m", batch, WriteLimits::default(), &time)
        .unwrap_err()
        .to_string()
}

#[test]
fn every_arrow_type_weir_stores_is_cast_to_its_column_type_time_first() {
    let host: DictionaryArray<Int8Type> = vec!["a", "b", "a"].into_iter().collect();
    let out = decode_ok(&batch(vec![
        ("host", Arc::new(host) as ArrayRef),
        ("cpu", Arc::new(Float32Array::from(vec![0.5, 1.5, 2.5]))),
        (
            "time",
            millis(&[1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002]),
        ),
        (
            "cores",
            Arc::new(Int32Array::from(vec![Some(4), None, Some(8)])),
        ),
        ("port", Arc::new(UInt16Array::from(vec![80, 443, 8080]))),
        (
            "note",
            Arc::new(LargeStringArray::from(vec!["x", "y", "z"])),
        ),
        ("view", Arc::new(StringViewArray::from(vec!["p", "q", "r"]))),
        ("ok", Arc::new(BooleanArray::from(vec![true, false, true]))),
    ]));
    let schema = out.batch.schema();
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().as_str(),
                ColumnType::from_data_type(f.data_type()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("time", ColumnType::Time),
            ("host", ColumnType::Tag),
            ("cpu", ColumnType::F64),
            ("cores", ColumnType::I64),
            ("port", ColumnType::U64),
            ("note", ColumnType::String),
            ("view", ColumnType::String),
            ("ok", ColumnType::Bool),
        ]
    );
    let cell = |c: usize, r: usize| array_value_to_string(out.batch.column(c), r).unwrap();
    assert_eq!(cell(0, 1), "2023-11-14T22:13:20.001Z");
    assert_eq!(cell(1, 2), "a");
    assert_eq!(cell(2, 0), "0.5");
    assert!(out.batch.column(3).is_null(1));
    assert_eq!(out.first_rows, vec![0; 8]);
}

#[test]
fn the_time_column_must_be_there_be_a_timestamp_have_no_nulls_and_fit() {
    let value = || ("v", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef);
    assert!(decode_err(&batch(vec![value()])).contains("no time column \"time\""));
    assert!(
        decode_err(&batch(vec![
            ("time", Arc::new(Int32Array::from(vec![1]))),
            value()
        ]))
        .contains("not a Timestamp")
    );
    let null_time = TimestampMillisecondArray::from(vec![Some(1), None]);
    let err = decode_err(&batch(vec![
        ("time", Arc::new(null_time) as ArrayRef),
        ("v", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
    ]));
    assert!(err.contains("row 1") && err.contains("is null"), "{err}");
    // Year 2250, and a second count that overflows nanoseconds.
    let late = TimestampSecondArray::from(vec![1, 8_836_000_000]);
    assert!(
        decode_err(&batch(vec![("time", Arc::new(late) as ArrayRef)])).contains("out of range")
    );
    let huge = TimestampSecondArray::from(vec![i64::MAX / 2]);
    assert!(
        decode_err(&batch(vec![("time", Arc::new(huge) as ArrayRef)])).contains("cannot store")
    );
    let before_1970 = TimestampMillisecondArray::from(vec![-1]);
    assert!(
        decode_err(&batch(vec![("time", Arc::new(before_1970) as ArrayRef)]))
            .contains("out of range")
    );
}

#[test]
fn values_the_model_refuses_name_their_row() {
    let err = decode_err(&batch(vec![
        ("time", millis(&[1, 2, 3])),
        (
            "v",
            Arc::new(Float64Array::from(vec![Some(1.0), None, Some(f64::NAN)])),
        ),
    ]));
    assert!(err.contains("row 2") && err.contains("NaN"), "{err}");
    // A null slot may hold any bits: only valid values count.
    let nan_under_null = Float64Array::new(
        vec![1.0, f64::INFINITY].into(),
        Some(vec![true, false].into()),
    );
    decode_ok(&batch(vec![
        ("time", millis(&[1, 2])),
        ("v", Arc::new(nan_under_null)),
    ]));

    let long = "x".repeat(MAX_TAG_VALUE_BYTES + 1);
    let tags: DictionaryArray<Int32Type> = vec!["ok", long.as_str()].into_iter().collect();
    let err = decode_err(&batch(vec![
        ("time", millis(&[1, 2])),
        ("tag", Arc::new(tags)),
    ]));
    assert!(err.contains("row 1") && err.contains("4097 bytes"), "{err}");
}

#[test]
fn names_types_and_limits_are_checked() {
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
    let err = decode_err(&batch(vec![("time", millis(&[1])), ("l", Arc::new(list))]));
    assert!(err.contains("is not a Weir column type"), "{err}");

    // Arrow schemas may repeat a name; a table may not.
    let schema = Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("a", DataType::Int8, true),
        Field::new("a", DataType::Int8, true),
    ]);
    let repeated = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            millis(&[1]),
            Arc::new(Int8Array::from(vec![1])),
            Arc::new(Int8Array::from(vec![2])),
        ],
    )
    .unwrap();
    assert!(decode_err(&repeated).contains("set twice"));

    let ok = batch(vec![
        ("time", millis(&[1])),
        ("v", Arc::new(StringArray::from(vec!["x"]))),
    ]);
    let err = decode("weir_alerts", &ok, WriteLimits::default(), &time).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = decode("", &ok, WriteLimits::default(), &time).unwrap_err();
    assert!(err.to_string().contains("must not be empty"), "{err}");
    let blank = batch(vec![
        ("time", millis(&[1])),
        (" ", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
    ]);
    assert!(decode_err(&blank).contains("blank"));

    let narrow = WriteLimits {
        max_columns: 1,
        ..WriteLimits::default()
    };
    assert!(
        decode("m", &ok, narrow, &time)
            .unwrap_err()
            .to_string()
            .contains("limit of 1 columns")
    );
    let small = WriteLimits {
        max_cells: 1,
        ..WriteLimits::default()
    };
    assert!(
        decode("m", &ok, small, &time)
            .unwrap_err()
            .to_string()
            .contains("cells")
    );
}
