//! Bad input gets a clear error, loses nothing that was acknowledged, and
//! the server keeps serving. Writes are atomic: a request with one bad row
//! writes none of its rows.

use futures::StreamExt;
use tonic::Code;
use weir_e2e::{MetricRow, RequestBuilder, WeirServer, now_ns};
use weir_proto::v1::{Point, WriteRequest, field};

fn good_rows(n: usize) -> RequestBuilder {
    let mut req = RequestBuilder::default();
    for i in 0..n {
        req.metric(&MetricRow {
            service_name: format!("svc-{}", i % 3),
            status: "healthy",
            response_ms: Some(10.0 + i as f64),
            status_code: Some(200),
            recorded_at_ns: now_ns() - i as i64 * 1_000_000,
        });
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_rejected_clearly_and_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        WeirServer::start(&dir.path().join("data"), &["--max-message-size", "1MiB"]).unwrap();
    let mut client = server.client().await.unwrap();
    client.write(good_rows(10).build(0)).await.unwrap();

    let mut cases: Vec<(&str, WriteRequest, Code, &str)> = Vec::new();

    let mut nan = good_rows(3);
    nan.point(
        "service_metrics",
        now_ns(),
        &[("service_name", "x")],
        vec![("response_ms", field::Value::F64(f64::NAN))],
    );
    cases.push((
        "NaN",
        nan.build(0),
        Code::InvalidArgument,
        "row 3: NaN is not a finite number",
    ));

    let mut inf = good_rows(2);
    inf.point(
        "service_metrics",
        now_ns(),
        &[],
        vec![("response_ms", field::Value::F64(f64::INFINITY))],
    );
    cases.push((
        "infinity",
        inf.build(0),
        Code::InvalidArgument,
        "inf is not a finite number",
    ));

    let mut conflict = good_rows(2);
    conflict.point(
        "service_metrics",
        now_ns(),
        &[],
        vec![("response_ms", field::Value::I64(5))],
    );
    cases.push((
        "type conflict with the stored schema",
        conflict.build(0),
        Code::InvalidArgument,
        "type conflict in table \"service_metrics\", column \"response_ms\", row 2: column is f64, value is i64",
    ));

    let mut tag_vs_field = good_rows(1);
    tag_vs_field.point("service_metrics", now_ns(), &[("status", "x")], vec![]);
    cases.push((
        "a field used as a tag",
        tag_vs_field.build(0),
        Code::InvalidArgument,
        "column \"status\", row 1: column is string, value is tag",
    ));

    let mut empty_table = good_rows(1);
    empty_table.point("", now_ns(), &[], vec![("v", field::Value::I64(1))]);
    cases.push((
        "empty table name",
        empty_table.build(0),
        Code::InvalidArgument,
        "invalid table name \"\": must not be empty",
    ));

    let mut bad_column = good_rows(1);
    bad_column.point(
        "service_metrics",
        now_ns(),
        &[],
        vec![("bad\ncolumn", field::Value::I64(1))],
    );
    cases.push((
        "control character in a column name",
        bad_column.build(0),
        Code::InvalidArgument,
        "contains a control character",
    ));

    let mut time_column = good_rows(1);
    time_column.point(
        "service_metrics",
        now_ns(),
        &[],
        vec![("recorded_at", field::Value::I64(1))],
    );
    cases.push((
        "a field named like the time column",
        time_column.build(0),
        Code::InvalidArgument,
        "is the table's time column",
    ));

    let mut old = good_rows(1);
    old.point("service_metrics", -5, &[], vec![]);
    cases.push((
        "timestamp before 1970",
        old.build(0),
        Code::InvalidArgument,
        "timestamp -5 ns is out of range",
    ));

    let mut future = good_rows(1);
    future.point("service_metrics", i64::MAX, &[], vec![]);
    cases.push((
        "timestamp after 2200",
        future.build(0),
        Code::InvalidArgument,
        "is out of range",
    ));

    let mut bad_utf8 = good_rows(1).build(0);
    bad_utf8.symbols.push(b"\xc3\x28".to_vec().into());
    cases.push((
        "invalid UTF-8",
        bad_utf8,
        Code::InvalidArgument,
        "is not valid UTF-8",
    ));

    let mut out_of_range = good_rows(1).build(0);
    out_of_range.points.push(Point {
        table: 999,
        timestamp_ns: 1,
        tags: vec![],
        fields: vec![],
    });
    cases.push((
        "symbol index out of range",
        out_of_range,
        Code::InvalidArgument,
        "symbol index 999 out of range",
    ));

    let mut huge = good_rows(1);
    let blob = "x".repeat(2 << 20);
    huge.point(
        "service_metrics",
        now_ns(),
        &[],
        vec![("blob", field::Value::String(0))],
    );
    let mut huge = huge.build(0);
    huge.symbols.push(blob.into_bytes().into());
    cases.push((
        "message over the size limit",
        huge,
        Code::OutOfRange,
        "message length too large",
    ));

    for (what, request, code, message) in cases {
        let err = client.write(request).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(
            err.message().contains(message),
            "{what}: {:?} does not contain {message:?}",
            err.message()
        );
    }

    // Nothing of any rejected request was written; the first write is intact.
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM service_metrics")
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        server
            .count(
                "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT IN ('weir_plugins', 'weir_alerts', 'weir_suppressions', 'weir_alert_groups')"
            )
            .await
            .unwrap(),
        1
    );
    let columns = server.count("SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_name = 'service_metrics'").await.unwrap();
    assert_eq!(columns, 5, "rejected requests must not add columns");

    // A stream carries on past a rejected batch; the rejection is in its ack.
    let requests = vec![
        good_rows(5).build(1),
        {
            let mut bad = good_rows(2);
            bad.point(
                "service_metrics",
                now_ns(),
                &[],
                vec![("response_ms", field::Value::Bool(true))],
            );
            bad.build(2)
        },
        good_rows(7).build(3),
    ];
    let acks: Vec<_> = client
        .write_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    let acks: Vec<_> = acks.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        acks.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(acks[0].rows_written, 5);
    let error = acks[1].error.as_ref().expect("batch 2 rejected");
    assert_eq!(error.code, Code::InvalidArgument as i32);
    assert!(
        error.message.contains("column is f64, value is bool"),
        "{}",
        error.message
    );
    assert_eq!(acks[2].rows_written, 7);
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM service_metrics")
            .await
            .unwrap(),
        22
    );

    // Still serving, and the rejections are counted.
    assert_eq!(server.get("/health").await.unwrap().0, 200);
    let (_, metrics) = server.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("weir_ingest_rejected_requests_total 12"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_query_limits_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(
        &dir.path().join("data"),
        &["--query-memory-limit", "2MiB", "--query-timeout", "300ms"],
    )
    .unwrap();
    let mut client = server.client().await.unwrap();
    client.write(good_rows(5).build(0)).await.unwrap();

    for (query, status, message) in [
        ("SELEC 1", 400, "invalid query"),
        ("SELECT * FROM no_such_table", 400, "no_such_table"),
        (
            "SELECT no_such_column FROM service_metrics",
            400,
            "no_such_column",
        ),
        ("CREATE TABLE t (x INT)", 400, "read-only"),
        (
            "INSERT INTO service_metrics (status) VALUES ('x')",
            400,
            "read-only",
        ),
        ("", 400, "empty query"),
        (
            "SELECT array_agg(value) FROM range(50000000)",
            413,
            "memory limit of 2097152 bytes",
        ),
        (
            "SELECT COUNT(*) FROM range(1000000000000) a WHERE value % 7 = 3",
            408,
            "timeout of 300ms",
        ),
    ] {
        let (got, body) = server.sql_raw(query, "application/json").await.unwrap();
        assert_eq!(got, status, "{query}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(message),
            "{query}: {error:?} does not contain {message:?}"
        );
    }
    // The server is fine afterwards.
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM service_metrics")
            .await
            .unwrap(),
        5
    );
}

/// Each class of query that used to abort, freeze or balloon the server:
/// deep operator, set-operation, join and CTE chains (stack), endless
/// results (memory), oversized text, and errors in the data (which are the
/// user's, never a 500). The server answers each clearly and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_get_clear_errors_and_never_take_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(
        &dir.path().join("data"),
        &["--query-max-result-size", "16MiB"],
    )
    .unwrap();
    let mut client = server.client().await.unwrap();
    client.write(good_rows(5).build(0)).await.unwrap();

    let chain = |n: usize, term: &str, sep: &str| vec![term; n].join(sep);
    let n = 2_000;
    let deep = [
        format!("SELECT {}", chain(n, "1", "+")),
        format!("SELECT {}", chain(n, "'a'", "||")),
        format!("SELECT 1 WHERE {}", chain(n, "1 = 1", " AND ")),
        format!(
            "SELECT 1 FROM service_metrics WHERE {}",
            chain(n, "status = 'x'", " OR ")
        ),
        chain(n, "SELECT 1", " UNION ALL "),
        format!(
            "SELECT 1 FROM service_metrics {}",
            chain(n, "CROSS JOIN service_metrics", " ")
        ),
    ];
    let mut cases: Vec<(String, u16, &str)> = deep
        .into_iter()
        .map(|sql| (sql, 400, "flatten it"))
        .collect();
    cases.extend([
        (
            "SELECT * FROM generate_series(1, 10000000000)".to_string(),
            413,
            "add a LIMIT",
        ),
        (
            format!("SELECT 1 -- {}", "x".repeat(300 << 10)),
            413,
            "more than the limit",
        ),
        ("SELECT 1 / 0".to_string(), 400, "query failed"),
        (
            "SELECT CAST('not a number' AS INT)".to_string(),
            400,
            "query failed",
        ),
    ]);
    for (sql, status, message) in cases {
        let (got, body) = server.sql_raw(&sql, "application/json").await.unwrap();
        assert_eq!(got, status, "{}…: {body}", &sql[..40]);
        assert!(body.contains(message), "{}…: {body}", &sql[..40]);
    }
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM service_metrics")
            .await
            .unwrap(),
        5
    );
    assert_eq!(server.get("/health").await.unwrap().0, 200);
}

/// Tables named `weir_…` are Weir's: a write to one is refused with a clear
/// error and never acknowledged, in any spelling, alone or beside good rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_table_names_are_refused_not_swallowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(&dir.path().join("data"), &[]).unwrap();
    let mut client = server.client().await.unwrap();
    for table in [
        "weir_plugins",
        "weir_dead_letters",
        "WEIR_PLUGINS",
        "Weir_Dead_Letters",
        "weir_alerts",
        "weir_suppressions",
        "weir_alert_groups",
    ] {
        let mut req = good_rows(2);
        req.point(table, now_ns(), &[("k", "v")], vec![]);
        let err = client.write(req.build(0)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{table}: {err:?}");
        assert!(err.message().contains("reserved"), "{table}: {err:?}");
    }
    // Nothing of the refused requests was written, not even their good rows.
    let tables = server
        .count("SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT IN ('weir_plugins', 'weir_alerts', 'weir_suppressions', 'weir_alert_groups')")
        .await
        .unwrap();
    assert_eq!(tables, 0);

    // The CLI import goes through the same check.
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "time,k,v\n1700000000000000000,a,1\n").unwrap();
    let out = server
        .cli(&[
            "import",
            csv.to_str().unwrap(),
            "--table",
            "weir_dead_letters",
        ])
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("reserved"), "{text}");
    let (status, body) = server
        .sql_raw("SELECT * FROM weir_dead_letters", "application/json")
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
}

/// Wide and sparse writes are bounded by configuration at and past every
/// limit, and refused ones leave no columns behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_writes_are_capped_at_every_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(
        &dir.path().join("data"),
        &[
            "--max-columns-per-write",
            "100",
            "--max-tables-per-write",
            "10",
            "--max-columns-per-table",
            "150",
        ],
    )
    .unwrap();
    let mut client = server.client().await.unwrap();
    let wide = |table: &str, prefix: &str, columns: usize| {
        let mut req = RequestBuilder::default();
        let fields: Vec<(String, field::Value)> = (0..columns)
            .map(|i| (format!("{prefix}{i}"), field::Value::I64(i as i64)))
            .collect();
        let fields: Vec<(&str, field::Value)> =
            fields.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        req.point(table, now_ns(), &[], fields);
        req.build(0)
    };
    // At the per-write limit: fine. One past: refused, naming the setting.
    client.write(wide("w", "a", 100)).await.unwrap();
    let err = client.write(wide("w", "b", 101)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("limit of 100 columns per write"),
        "{err:?}"
    );
    // The table may grow to 150 columns, not past.
    client.write(wide("w", "c", 50)).await.unwrap();
    let err = client.write(wide("w", "d", 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("max_columns_per_table"), "{err:?}");
    let columns = server
        .count("SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_name = 'w'")
        .await
        .unwrap();
    assert_eq!(
        columns, 151,
        "time + 150 columns, nothing of the refused writes"
    );

    // Tables per write: 10 fine, 11 refused.
    let tables = |n: usize| {
        let mut req = RequestBuilder::default();
        for i in 0..n {
            req.point(
                &format!("t{i}"),
                now_ns(),
                &[],
                vec![("v", field::Value::I64(1))],
            );
        }
        req.build(0)
    };
    client.write(tables(10)).await.unwrap();
    let err = client.write(tables(11)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("limit of 10 tables"), "{err:?}");

    // The write that took tens of seconds and gigabytes: 60,000 new columns
    // in one request, each point bringing its own. Refused at the limit.
    let mut req = RequestBuilder::default();
    for i in 0..60_000 {
        req.point(
            "sparse",
            now_ns(),
            &[],
            vec![(&format!("f{i}"), field::Value::I64(1))],
        );
    }
    let err = client.write(req.build(0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Another table is written meanwhile and after, as usual.
    client.write(good_rows(3).build(0)).await.unwrap();
    assert_eq!(
        server
            .count("SELECT COUNT(*) AS n FROM service_metrics")
            .await
            .unwrap(),
        3
    );
}

/// Bytes that are not a protobuf message are the client's error:
/// INVALID_ARGUMENT on every RPC, never INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_grpc_requests_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(&dir.path().join("data"), &[]).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let garbage: [&[u8]; 4] = [
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x12\x80\x80\x80\x80\x10",
        b"\x0a",
        b"\x1a\x05\x08\x01\x1a",
    ];
    for path in [
        "/weir.v1.WriteService/Write",
        "/weir.v1.WriteService/WriteRaw",
    ] {
        for bytes in garbage {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let status = grpc
                .unary::<Vec<u8>, Vec<u8>, _>(
                    tonic::Request::new(bytes.to_vec()),
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    RawBytes,
                )
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path} {bytes:?}: {status:?}"
            );
        }
    }
    assert_eq!(server.get("/health").await.unwrap().0, 200);
}

/// Sends and receives message bytes as they are, bypassing our own client.
#[derive(Clone, Copy)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}
