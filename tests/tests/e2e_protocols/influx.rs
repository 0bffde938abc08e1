//! InfluxDB line protocol at `/api/v2/write` and `/write`.

use std::io::Write;

use anyhow::Result;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use weir_e2e::WeirServer;

use super::{Refused, post, python_client, rows};

const V2: &str = "/api/v2/write?org=o&bucket=b";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The official Python client writes points, line protocol text, a batch
/// with one conflicting line, and gzip bodies; every value reads back in
/// SQL with its type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_influxdb_python_client_writes_unmodified() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = WeirServer::start_unconfigured(&dir.path().join("data"), &[])?;
    let seen = python_client(
        &server,
        "influx_write.py",
        &[server.http_url.as_ref()],
        "influxdb-client",
    )?;

    let stats = rows(
        &server,
        r#"SELECT CAST(time AS VARCHAR) AS t, CAST(host AS VARCHAR) AS host,
                  CAST(region AS VARCHAR) AS region, usage_user, cores, ok, note,
                  arrow_typeof(cores) AS cores_type
           FROM "host stats" ORDER BY time"#,
    )
    .await?;
    assert_eq!(stats.len(), 2, "{stats:?}");
    assert_eq!(stats[0]["t"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(stats[0]["host"], "db 1");
    assert_eq!(stats[0]["region"], "eu,west=1");
    assert_eq!(stats[0]["usage_user"], 12.5);
    assert_eq!(stats[0]["cores"], 8);
    assert_eq!(stats[0]["cores_type"], "Int64");
    assert_eq!(stats[0]["ok"], true);
    assert_eq!(stats[0]["note"], "say \"hi\"\\");
    assert_eq!(stats[1]["usage_user"], 3.25);
    assert!(stats[1].get("cores").is_none_or(Value::is_null));

    let disk = rows(
        &server,
        "SELECT CAST(time AS VARCHAR) AS t, used_pct FROM disk ORDER BY time",
    )
    .await?;
    assert_eq!(disk[0]["t"], "2023-11-14T22:13:20Z", "precision=s");
    assert_eq!(disk[1]["used_pct"], 12.0, "12 without a suffix is a float");

    // The partial write: InfluxDB's answer, and the good lines stored.
    let partial = &seen["partial"];
    assert_eq!(partial["status"], 400, "{seen}");
    assert_eq!(partial["body"]["code"], "invalid", "{seen}");
    assert_eq!(partial["body"]["line"], 2, "{seen}");
    let message = partial["body"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1 points dropped, 2 written") && message.contains("type conflict"),
        "{message}"
    );
    assert_eq!(
        server
            .count("SELECT COUNT(*) FROM cpu WHERE host = 'db-3'")
            .await?,
        2
    );

    // gzip, milliseconds.
    assert_eq!(server.count("SELECT COUNT(*) FROM gz").await?, 500);
    let last = rows(
        &server,
        "SELECT CAST(time AS VARCHAR) AS t, v FROM gz WHERE host = 'h499'",
    )
    .await?;
    assert_eq!(last[0]["t"], "2023-11-14T22:13:20.499Z");
    assert_eq!(last[0]["v"], 499);
    Ok(())
}

/// Hostile bodies, each answered in InfluxDB's convention; the good lines
/// of a request are kept, nothing acknowledged is lost across a `kill -9`,
/// and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_line_protocol_gets_influx_errors_and_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server =
        WeirServer::start_unconfigured(&dir.path().join("data"), &["--max-message-size", "1MiB"])?;

    // Every line wrong in its own way, around good ones.
    let body = concat!(
        "m,host=a v=1 1700000000000000000\n",
        "m,host=a v=\"text\" 1700000000000000001\n",
        "m,host=a v=1 1700000000000000002 junk\n",
        "m,host=a v=1e999 1700000000000000003\n",
        "weir_alerts v=1 1700000000000000004\n",
        "m,host=a v=1,v=2 1700000000000000005\n",
        "m,host=a v=1 -1\n",
        "m,host=a time=1 1700000000000000007\n",
        "m,host=a v=2 1700000000000000008\n",
    );
    let (status, text) = post(&server, V2, &[], body).await?;
    assert_eq!(status, 400, "{text}");
    let answer: Value = serde_json::from_str(&text)?;
    assert_eq!(answer["code"], "invalid");
    assert_eq!(answer["line"], 2);
    let message = answer["message"].as_str().unwrap();
    for want in [
        "7 points dropped, 2 written",
        "line 2:",
        "line 3:",
        "line 4:",
        "line 5:",
        "line 6:",
        "line 7:",
        "line 8:",
    ] {
        assert!(message.contains(want), "want {want:?} in {message}");
    }
    // The same through the v1 API: `{"error": …}`.
    let (status, text) = post(&server, "/write?db=x", &[], "m v=\"text\"\n").await?;
    assert_eq!(status, 400);
    assert!(
        serde_json::from_str::<Value>(&text)?["error"]
            .as_str()
            .is_some_and(|e| e.contains("type conflict")),
        "{text}"
    );

    // Whole-request failures.
    const GZIP: &[(&str, &str)] = &[("content-encoding", "gzip")];
    let refused = [
        Refused {
            path: V2,
            headers: GZIP,
            body: gzip(&vec![b'x'; 64 << 20]), // a bomb: 64 MiB in 64 KiB
            status: 413,
            says: "request too large",
        },
        Refused {
            path: V2,
            headers: GZIP,
            body: b"not gzip".to_vec(),
            status: 400,
            says: "not valid gzip",
        },
        Refused {
            path: V2,
            headers: &[("content-encoding", "br")],
            body: b"m v=1".to_vec(),
            status: 415,
            says: "not supported",
        },
        Refused {
            path: V2,
            headers: &[],
            body: b"m,host=\xff v=1\n".to_vec(),
            status: 400,
            says: "not UTF-8",
        },
        Refused {
            path: "/api/v2/write?bucket=b&precision=days",
            headers: &[],
            body: b"m v=1".to_vec(),
            status: 400,
            says: "precision",
        },
        Refused {
            path: V2,
            headers: &[],
            body: vec![b'#'; 2 << 20], // past --max-message-size
            status: 413,
            says: "",
        },
    ];
    for case in refused {
        case.check(&server).await?;
    }
    // Escapes of every kind round-trip.
    let (status, text) = post(
        &server,
        V2,
        &[],
        "esc\\ aped\\,m,t\\ k\\=\\,=v\\ 1\\=\\, f\\ k=\"a \\\"q\\\" \\\\ b\" 1700000000000000000\n",
    )
    .await?;
    assert_eq!(status, 204, "{text}");

    // Acknowledged means durable: kill -9, restart, all of it is there.
    server.kill9();
    server.restart()?;
    let m = rows(&server, "SELECT v FROM m ORDER BY time").await?;
    assert_eq!(m, rows_of(json!([{"v": 1.0}, {"v": 2.0}])));
    let esc = rows(
        &server,
        r#"SELECT CAST("t k=," AS VARCHAR) AS tag, "f k" AS field FROM "esc aped,m""#,
    )
    .await?;
    assert_eq!(
        esc,
        rows_of(json!([{"tag": "v 1=,", "field": "a \"q\" \\ b"}]))
    );
    Ok(())
}

fn rows_of(value: Value) -> Vec<serde_json::Map<String, Value>> {
    serde_json::from_value(value).unwrap()
}
