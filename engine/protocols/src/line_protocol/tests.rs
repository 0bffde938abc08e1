use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt64Type};
use weir_model::{ColumnDef, TableBatch, TableSchema};

use super::*;

const NOW: i64 = 1_700_000_000_000_000_000;

fn time(_: &str) -> String {
    "time".to_string()
}

fn lp(body: &str) -> Decoded {
    decode(
        body.as_bytes(),
        Precision::Nanoseconds,
        NOW,
        WriteLimits::default(),
        &time,
    )
    .unwrap()
}

fn table<'a>(decoded: &'a Decoded, name: &str) -> &'a TableBatch {
    decoded
        .batches
        .iter()
        .find(|b| b.table == name)
        .unwrap_or_else(|| panic!("no table {name}"))
}

fn column_names(batch: &TableBatch) -> Vec<String> {
    batch
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn every_field_type_and_tags() {
    let out = lp(concat!(
        "cpu,host=db-1,region=eu usage=12.5,cores=8i,inodes=9u,ok=true,note=\"fine\" 1700000000000000001\n",
        "cpu,host=db-2 usage=3,ok=f\n",
    ));
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let cpu = table(&out, "cpu");
    assert_eq!(
        column_names(cpu),
        [
            "time", "host", "region", "usage", "cores", "inodes", "ok", "note"
        ]
    );
    let b = &cpu.batch;
    let times = b.column(0).as_primitive::<TimestampNanosecondType>();
    assert_eq!(times.value(0), 1_700_000_000_000_000_001);
    assert_eq!(times.value(1), NOW, "no timestamp: the server's time");
    assert_eq!(b.column(3).as_primitive::<Float64Type>().value(1), 3.0);
    assert_eq!(b.column(4).as_primitive::<Int64Type>().value(0), 8);
    assert!(b.column(4).is_null(1));
    assert_eq!(b.column(5).as_primitive::<UInt64Type>().value(0), 9);
    assert!(!b.column(6).as_boolean().value(1));
    assert_eq!(b.column(7).as_string::<i32>().value(0), "fine");
}

#[test]
fn escapes_quotes_comments_and_blank_lines() {
    let out = lp(concat!(
        "# a comment\n",
        "\n",
        "my\\ table,tag\\,key=a\\=b\\ c field\\ name=\"say \\\"hi\\\"\\\\\" 1\n",
        "   \n",
    ));
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let t = table(&out, "my table");
    assert_eq!(column_names(t), ["time", "tag,key", "field name"]);
    let tag = t.batch.column(1).as_dictionary::<Int32Type>();
    let values = tag.values().as_string::<i32>();
    assert_eq!(values.value(tag.keys().value(0) as usize), "a=b c");
    assert_eq!(
        t.batch.column(2).as_string::<i32>().value(0),
        "say \"hi\"\\"
    );
}

#[test]
fn precision_scales_timestamps_and_overflow_drops_the_line() {
    let body = b"m v=1 1700000000\nm v=2 99999999999999999\n";
    let out = decode(body, Precision::Seconds, NOW, WriteLimits::default(), &time).unwrap();
    let m = table(&out, "m");
    assert_eq!(m.batch.num_rows(), 1);
    assert_eq!(
        m.batch
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .value(0),
        1_700_000_000_000_000_000
    );
    assert_eq!(out.rejected.points, 1);
    assert_eq!(out.rejected.reasons[0].at, 2);
    assert!(
        out.rejected.reasons[0].message.contains("does not fit"),
        "{:?}",
        out.rejected
    );
    for (text, precision) in [
        ("ns", Precision::Nanoseconds),
        ("n", Precision::Nanoseconds),
        ("us", Precision::Microseconds),
        ("u", Precision::Microseconds),
        ("ms", Precision::Milliseconds),
        ("s", Precision::Seconds),
        ("m", Precision::Minutes),
        ("h", Precision::Hours),
    ] {
        assert_eq!(Precision::parse(text), Some(precision), "{text}");
    }
    assert_eq!(Precision::parse("d"), None);
    assert_eq!(Precision::Hours.to_ns(2), Some(7_200_000_000_000));
}

/// Each line that is wrong in its own way is dropped with its line number
/// and the reason; every good line around them is kept.
#[test]
fn bad_lines_are_dropped_and_named_the_rest_is_written() {
    let out = lp(concat!(
        "ok v=1 1\n",               // 1 kept
        "ok v=\"text\" 2\n",        // 2 type conflict with line 1
        "ok v=1 3 trailing\n",      // 3 does not parse
        "ok,host=a\n",              // 4 no fields
        "weir_alerts v=1 5\n",      // 5 Weir's own table
        "ok v=1,v=2 6\n",           // 6 field twice
        "ok,v=tag v=1 7\n",         // 7 tag and field share a name
        "ok time=1 8\n",            // 8 the time column as a field
        "ok v=1 -5\n",              // 9 before 1970
        "ok v=2 2\n",               // 10 kept
        "ok,host=b w=1i 3\n",       // 11 kept: a new column
        "ok,host=a,host=b v=1 4\n", // 12 tag twice
    ));
    let ok = table(&out, "ok");
    assert_eq!(ok.batch.num_rows(), 3, "{:?}", out.rejected);
    assert_eq!(column_names(ok), ["time", "v", "host", "w"]);
    let at: Vec<usize> = out.rejected.reasons.iter().map(|r| r.at).collect();
    assert_eq!(at, [2, 3, 4, 5, 6, 7, 8, 9, 12]);
    assert_eq!(out.rejected.points, 9);
    let reason = |line: usize| {
        out.rejected
            .reasons
            .iter()
            .find(|r| r.at == line)
            .unwrap()
            .message
            .clone()
    };
    assert!(reason(2).contains("type conflict"), "{}", reason(2));
    assert!(reason(5).contains("weir_"), "{}", reason(5));
    assert!(reason(6).contains("set twice"), "{}", reason(6));
    assert!(reason(8).contains("time column"), "{}", reason(8));
    assert!(reason(9).contains("out of range"), "{}", reason(9));
    assert!(reason(12).contains("set twice"), "{}", reason(12));
}

#[test]
fn a_type_conflict_with_stored_data_drops_the_line() {
    struct Stored;
    impl Tables for Stored {
        fn time_column(&self, _: &str) -> String {
            "time".into()
        }
        fn schema(&self, table: &str) -> Option<TableSchema> {
            let mut schema = TableSchema::new(table, "time");
            schema.add_columns([ColumnDef {
                name: "v".into(),
                column_type: ColumnType::I64,
            }]);
            Some(schema)
        }
    }
    let out = decode(
        b"m v=1.5 1\nm v=2i 2\n",
        Precision::Nanoseconds,
        NOW,
        WriteLimits::default(),
        &Stored,
    )
    .unwrap();
    assert_eq!(table(&out, "m").batch.num_rows(), 1);
    assert_eq!(out.rejected.reasons[0].at, 1);
    assert!(
        out.rejected.reasons[0].message.contains("column is i64"),
        "{:?}",
        out.rejected
    );
}

#[test]
fn nan_and_infinite_floats_are_dropped() {
    // The parser refuses the words; 1e999 parses as infinity.
    let out = lp("m v=NaN 1\nm v=1e999 2\nm v=inf 3\nm v=1 4\n");
    assert_eq!(table(&out, "m").batch.num_rows(), 1);
    assert_eq!(out.rejected.points, 3, "{:?}", out.rejected);
}

#[test]
fn what_concerns_the_whole_request_fails_it() {
    let err = decode(
        b"m v=1 1\nm,host=\xff v=1 2\n",
        Precision::Nanoseconds,
        NOW,
        WriteLimits::default(),
        &time,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("line 2: the body is not UTF-8"),
        "{err}"
    );

    let limits = WriteLimits {
        max_tables: 2,
        ..WriteLimits::default()
    };
    let err = decode(
        b"a v=1\nb v=1\nc v=1\n",
        Precision::Nanoseconds,
        NOW,
        limits,
        &time,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(weir_model::Error::TooManyTables { .. })),
        "{err}"
    );
}

#[test]
fn only_reasons_for_the_first_lines_are_kept() {
    let body: String = (0..1000).map(|i| format!("m v={i} -1\n")).collect();
    let out = lp(&body);
    assert!(out.batches.is_empty());
    assert_eq!(out.rejected.points, 1000);
    assert_eq!(out.rejected.reasons.len(), Rejected::KEPT);
    assert!(out.rejected.summary("line").ends_with("and 990 more"));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes at all: an answer, never a panic, and every line
        /// either written or rejected.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body, Precision::Nanoseconds, NOW, WriteLimits::default(), &time);
        }

        /// Line-protocol-shaped text: written rows plus rejected lines
        /// account for every line.
        #[test]
        fn every_line_is_written_or_rejected(
            lines in proptest::collection::vec(
                ("[a-c]{1,2}", proptest::option::of("[a-c]{1,2}=[a-z ,=\\\\]{0,4}"), "[a-c]{1,2}", "-?[0-9]{1,3}(\\.[0-9])?[iu]?|\"[a-z]*\"|true|nan", proptest::option::of(-5i64..5)),
                1..20,
            )
        ) {
            let body: String = lines.iter().map(|(m, tag, f, v, ts)| {
                let tag = tag.as_ref().map(|t| format!(",{t}")).unwrap_or_default();
                let ts = ts.map(|t| format!(" {t}")).unwrap_or_default();
                format!("{m}{tag} {f}={v}{ts}\n")
            }).collect();
            let out = decode(body.as_bytes(), Precision::Nanoseconds, NOW, WriteLimits::default(), &time).unwrap();
            prop_assert_eq!(out.rows() + out.rejected.points, lines.len() as u64, "{}", body);
        }
    }
}
