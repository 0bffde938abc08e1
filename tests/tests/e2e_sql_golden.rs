//! SQL golden file: `tests/sql/golden.slt` holds queries and their expected
//! CSV answers over a fixed data set written over gRPC. Regenerate with
//! `WEIR_GOLDEN_COMPLETE=1 cargo test -p weir-e2e --test e2e_sql_golden`,
//! then read the diff before committing it.
//!
//! Format: blocks of `query` / SQL lines / `----` / expected CSV lines,
//! separated by blank lines; `#` starts a comment line.

use weir_e2e::{RequestBuilder, WeirServer, tests_dir};
use weir_proto::v1::field;

const T0: i64 = 1_763_596_800_000_000_000; // 2025-11-20T00:00:00Z

async fn load_fixture(server: &WeirServer) {
    let mut req = RequestBuilder::default();
    let services = ["api", "db", "web"];
    for i in 0..36i64 {
        let service = services[(i % 3) as usize];
        let minute = 60_000_000_000;
        let failing = (service == "db" && i % 4 == 1) || (service == "web" && i > 30);
        let healthy = !failing;
        let mut fields = vec![(
            "status",
            field::Value::String(req.symbol(if healthy { "healthy" } else { "unhealthy" })),
        )];
        if i % 5 != 0 {
            fields.push((
                "response_ms",
                field::Value::F64(10.0 + (i * 7 % 50) as f64 / 2.0),
            ));
        }
        if i % 7 != 0 {
            fields.push((
                "status_code",
                field::Value::I64(if healthy { 200 } else { 503 }),
            ));
        }
        req.point(
            "service_metrics",
            T0 + i * 10 * minute,
            &[("service_name", service)],
            fields,
        );
    }
    req.point(
        "events",
        T0,
        &[("host", "h1")],
        vec![
            ("ok", field::Value::Bool(true)),
            ("bytes", field::Value::U64(u64::MAX)),
        ],
    );
    server
        .client()
        .await
        .unwrap()
        .write(req.build(0))
        .await
        .unwrap();
}

struct Case {
    sql: String,
    expected: String,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block.lines().filter(|l| !l.starts_with('#')).collect();
        if lines.is_empty() {
            continue;
        }
        assert_eq!(lines[0], "query", "block must start with `query`: {block}");
        let split = lines
            .iter()
            .position(|l| *l == "----")
            .expect("`----` line");
        cases.push(Case {
            sql: lines[1..split].join("\n"),
            expected: lines[split + 1..].join("\n"),
        });
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = WeirServer::start(&dir.path().join("data"), &[]).unwrap();
    load_fixture(&server).await;
    let path = tests_dir().join("sql/golden.slt");
    let text = std::fs::read_to_string(&path).unwrap();
    let cases = parse(&text);
    assert!(cases.len() >= 8, "golden file has {} cases", cases.len());
    let mut completed = Vec::new();
    let mut failures = Vec::new();
    for case in &cases {
        let (status, body) = server.sql_raw(&case.sql, "text/csv").await.unwrap();
        let got = if status == 200 {
            body.trim_end().to_string()
        } else {
            format!("error {status}: {body}")
        };
        if got != case.expected {
            failures.push(format!(
                "{}\n--- expected\n{}\n--- got\n{got}",
                case.sql, case.expected
            ));
        }
        completed.push(format!("query\n{}\n----\n{got}", case.sql));
    }
    if std::env::var_os("WEIR_GOLDEN_COMPLETE").is_some() {
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, format!("{header}{}\n", completed.join("\n\n"))).unwrap();
        return;
    }
    assert!(
        failures.is_empty(),
        "{} golden cases differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
