use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type, TimestampNanosecondType};
use weir_model::TableBatch;

use super::*;

const NOW: i64 = 1_700_000_000_000_000_000;
const T: i64 = 1_700_000_000_000; // ms

fn time(_: &str) -> String {
    "time".to_string()
}

fn label(name: &[u8], value: &[u8]) -> Label {
    Label {
        name: Bytes::copy_from_slice(name),
        value: Bytes::copy_from_slice(value),
    }
}

fn series(labels: &[(&[u8], &[u8])], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| Sample { value, timestamp })
            .collect(),
        histograms: Vec::new(),
    }
}

fn snappy(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

fn write(timeseries: Vec<TimeSeries>) -> RemoteWrite {
    decode_snappy(
        &snappy(&WriteRequest { timeseries }),
        1 << 20,
        NOW,
        WriteLimits::default(),
        &time,
    )
    .unwrap()
}

fn table<'a>(out: &'a RemoteWrite, name: &str) -> &'a TableBatch {
    out.decoded
        .batches
        .iter()
        .find(|b| b.table == name)
        .unwrap_or_else(|| panic!("no table {name}"))
}

fn tag(batch: &TableBatch, column: usize, row: usize) -> String {
    let dict = batch.batch.column(column).as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    values.value(dict.keys().value(row) as usize).to_string()
}

#[test]
fn series_land_in_tables_by_metric_name() {
    let out = write(vec![
        series(
            &[
                (b"__name__", b"up"),
                (b"job", b"api"),
                (b"instance", b"a:9100"),
            ],
            &[(1.0, T), (0.0, T + 15_000)],
        ),
        series(
            &[(b"job", b"db"), (b"__name__", b"up"), (b"zone", b"")],
            &[(1.0, T)],
        ),
        series(&[(b"__name__", b"http_requests_total")], &[(42.0, T)]),
    ]);
    assert!(
        out.decoded.rejected.is_empty(),
        "{:?}",
        out.decoded.rejected
    );
    let up = table(&out, "up");
    let names: Vec<_> = up
        .batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["time", "job", "instance", "value"],
        "an empty label is no label"
    );
    assert_eq!(up.batch.num_rows(), 3);
    assert_eq!(
        up.batch
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .value(1),
        (T + 15_000) * 1_000_000
    );
    assert_eq!(tag(up, 1, 2), "db");
    assert!(up.batch.column(2).is_null(2));
    assert_eq!(
        up.batch.column(3).as_primitive::<Float64Type>().value(1),
        0.0
    );
    assert_eq!(table(&out, "http_requests_total").batch.num_rows(), 1);
}

#[test]
fn stale_markers_are_skipped_other_non_finite_values_are_null() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let out = write(vec![series(
        &[(b"__name__", b"q")],
        &[
            (stale, T),
            (f64::NAN, T + 1),
            (f64::INFINITY, T + 2),
            (2.5, T + 3),
        ],
    )]);
    assert_eq!(out.stale_markers, 1);
    assert!(out.decoded.rejected.is_empty());
    let q = table(&out, "q");
    assert_eq!(q.batch.num_rows(), 3);
    let values = q.batch.column(1).as_primitive::<Float64Type>();
    assert_eq!(values.null_count(), 2);
    assert_eq!(values.value(2), 2.5);
}

/// Each series wrong in its own way is dropped with its index and reason;
/// the good series around them are written.
#[test]
fn bad_series_are_dropped_and_named_the_rest_is_written() {
    let out = write(vec![
        series(&[(b"__name__", b"ok"), (b"a", b"1")], &[(1.0, T)]), // 0 kept
        series(&[(b"job", b"x")], &[(1.0, T)]),                     // 1 no name
        series(&[(b"__name__", b"ok"), (b"a", b"\xff")], &[(1.0, T)]), // 2 not UTF-8
        series(
            &[(b"__name__", b"ok"), (b"a", b"1"), (b"a", b"2")],
            &[(1.0, T)],
        ), // 3 twice
        series(&[(b"__name__", b"weir_x")], &[(1.0, T)]),           // 4 Weir's own
        series(&[(b"__name__", b"ok"), (b"value", b"v")], &[(1.0, T)]), // 5 tag named value
        series(
            &[(b"__name__", b"ok"), (b"b", b"2")],
            &[(1.0, -1), (2.0, 0), (3.0, T)],
        ), // 6: two samples out of range
        series(&[(b"__name__", b"ok"), (b"bad name\n", b"2")], &[(1.0, T)]), // 7 bad label name
    ]);
    let ok = table(&out, "ok");
    assert_eq!(ok.batch.num_rows(), 2, "{:?}", out.decoded.rejected);
    let at: Vec<usize> = out.decoded.rejected.reasons.iter().map(|r| r.at).collect();
    assert_eq!(at, [1, 2, 3, 4, 5, 6, 6, 7]);
    assert_eq!(out.decoded.rejected.points, 8);
    let messages: Vec<&str> = out
        .decoded
        .rejected
        .reasons
        .iter()
        .map(|r| r.message.as_str())
        .collect();
    assert!(messages[0].contains("no __name__"), "{messages:?}");
    assert!(messages[1].contains("not UTF-8"), "{messages:?}");
    assert!(messages[2].contains("set twice"), "{messages:?}");
    assert!(messages[3].contains("weir_"), "{messages:?}");
    assert!(messages[4].contains("type conflict"), "{messages:?}");
    assert!(messages[5].contains("out of range"), "{messages:?}");
}

#[test]
fn native_histograms_are_reported_not_stored() {
    let mut s = series(&[(b"__name__", b"h")], &[]);
    s.histograms = vec![NativeHistogram {}, NativeHistogram {}];
    let out = write(vec![s]);
    assert!(out.decoded.batches.is_empty());
    assert_eq!(out.decoded.rejected.points, 2);
    assert!(
        out.decoded.rejected.reasons[0]
            .message
            .contains("native histograms")
    );
}

#[test]
fn broken_bodies_fail_the_request() {
    let err = decode_snappy(
        b"\x10not snappy",
        1 << 20,
        NOW,
        WriteLimits::default(),
        &time,
    )
    .unwrap_err();
    assert!(err.to_string().contains("snappy"), "{err}");

    let request = WriteRequest {
        timeseries: vec![series(&[(b"__name__", b"up")], &[(1.0, T)])],
    };
    let protobuf = request.encode_to_vec();
    let truncated = snap::raw::Encoder::new()
        .compress_vec(&protobuf[..protobuf.len() - 3])
        .unwrap();
    let err = decode_snappy(&truncated, 1 << 20, NOW, WriteLimits::default(), &time).unwrap_err();
    assert!(
        err.to_string().contains("not a remote-write protobuf"),
        "{err}"
    );

    let err = decode_snappy(&snappy(&request), 4, NOW, WriteLimits::default(), &time).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any bytes, snappy-wrapped or not: an answer, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_snappy(&body, 1 << 20, NOW, WriteLimits::default(), &time);
            let wrapped = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            let _ = decode_snappy(&wrapped, 1 << 20, NOW, WriteLimits::default(), &time);
        }

        /// Generated series: every sample is written, skipped as stale, or
        /// rejected.
        #[test]
        fn every_sample_is_accounted_for(
            all in proptest::collection::vec(
                (proptest::option::of("[a-c]{1,2}"), proptest::collection::vec(("[a-c_]{0,2}", "[a-c]{0,2}"), 0..4),
                 proptest::collection::vec((prop_oneof![Just(f64::from_bits(STALE_NAN_BITS)), Just(f64::NAN), -1e3f64..1e3], -2i64..3), 0..4)),
                0..8,
            )
        ) {
            let timeseries: Vec<TimeSeries> = all.iter().map(|(name, labels, samples)| {
                let mut l: Vec<(&[u8], &[u8])> = labels.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
                if let Some(name) = name { l.push((b"__name__", name.as_bytes())); }
                let samples: Vec<(f64, i64)> = samples.iter().map(|&(v, t)| (v, T + t)).collect();
                series(&l, &samples)
            }).collect();
            let total: usize = timeseries.iter().map(|s| s.samples.len().max(1)).sum();
            let out = write(timeseries.clone());
            let accounted = out.decoded.rows() + out.stale_markers + out.decoded.rejected.points;
            // A rejected series without samples still counts one point.
            let empty_ok = timeseries.iter().filter(|s| s.samples.is_empty()).count() as u64;
            prop_assert!(accounted <= total as u64 && accounted + empty_ok >= total as u64,
                "{} written + {} stale + {} rejected vs {} samples", out.decoded.rows(), out.stale_markers, out.decoded.rejected.points, total);
        }
    }
}
