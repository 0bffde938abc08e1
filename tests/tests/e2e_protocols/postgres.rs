//! The PostgreSQL wire protocol, with the real `psql` and `psycopg`, and
//! with bytes no client would send.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_e2e::{WeirServer, tests_dir};

use super::{python_client, seed_uptime};

/// Runs `psql` against the server with `args`; returns its standard output.
fn psql(server: &WeirServer, args: &[&str]) -> Result<String> {
    let (host, port) = server.pg_addr.rsplit_once(':').context("a host:port")?;
    let out = Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port])
        .args(["-U", "analyst", "-d", "weir"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .context("psql (tests/run.sh installs postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "psql {args:?} failed:\n{}\nweir log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The reference uptime query runs verbatim through psql and psycopg and
/// answers what HTTP answers; psql's `\dt` and `\d` describe the tables;
/// psycopg's server-side parameters are values, never SQL; the queries
/// Grafana's PostgreSQL data source sends work; writes are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_psycopg_query_over_the_postgres_protocol() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = WeirServer::start(&dir.path().join("data"), &[])?;
    seed_uptime(&server).await?;
    let reference_path = tests_dir().join("sql/reference_uptime.sql");
    let over_http = server
        .sql(&std::fs::read_to_string(&reference_path)?)
        .await?;
    ensure!(over_http.len() == 20, "{over_http:?}");
    let over_http: BTreeMap<String, serde_json::Map<String, Value>> = over_http
        .into_iter()
        .map(|row| {
            (
                row["service_name"].as_str().unwrap_or_default().to_string(),
                row,
            )
        })
        .collect();
    let same_as_http = |service: &str, avg: f64, worst: f64, degraded: i64, status: &str| {
        let http = &over_http[service];
        assert!(
            (http["avg_uptime_pct"].as_f64().unwrap() - avg).abs() < 1e-9,
            "{service}"
        );
        assert!(
            (http["worst_hour_pct"].as_f64().unwrap() - worst).abs() < 1e-9,
            "{service}"
        );
        assert_eq!(http["degraded_hours"], degraded, "{service}");
        assert_eq!(http["status"], status, "{service}");
    };

    // psql, the reference query verbatim from its file, unaligned output.
    let out = psql(
        &server,
        &[
            "-A",
            "-t",
            "-F",
            "\t",
            "-f",
            reference_path.to_str().context("utf-8")?,
        ],
    )?;
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 20, "{out}");
    for line in lines {
        let cells: Vec<&str> = line.split('\t').collect();
        assert_eq!(cells.len(), 5, "{line}");
        same_as_http(
            cells[0],
            cells[1].parse()?,
            cells[2].parse()?,
            cells[3].parse()?,
            cells[4],
        );
    }

    // psql's describe commands read pg_catalog.
    let tables = psql(&server, &["-c", "\\dt"])?;
    assert!(tables.contains("service_metrics"), "{tables}");
    let described = psql(&server, &["-c", "\\d service_metrics"])?;
    for expected in [
        "service_name",
        "recorded_at",
        "timestamp with time zone",
        "status_code",
        "bigint",
        "response_ms",
        "double precision",
        "text",
    ] {
        assert!(
            described.contains(expected),
            "{expected:?} in:\n{described}"
        );
    }

    // psycopg: the reference query and a session as scripts and Grafana use it.
    let (host, port) = server.pg_addr.rsplit_once(':').context("host:port")?;
    let seen = python_client(
        &server,
        "postgres.py",
        &[host.as_ref(), port.as_ref(), reference_path.as_ref()],
        "psycopg",
    )?;
    let reference = seen["reference"].as_array().context("reference rows")?;
    assert_eq!(reference.len(), 20, "{seen}");
    for row in reference {
        same_as_http(
            row["service_name"].as_str().context("a name")?,
            // NUMERIC-free: psycopg gives floats for float8.
            row["avg_uptime_pct"].as_f64().context("avg")?,
            row["worst_hour_pct"].as_f64().context("worst")?,
            row["degraded_hours"].as_i64().context("degraded")?,
            row["status"].as_str().context("status")?,
        );
    }
    assert_eq!(
        seen["latest_python_types"],
        serde_json::json!(["str", "str", "int", "float", "datetime"]),
        "{seen}"
    );
    assert_eq!(seen["latest_tz_aware"], true, "{seen}");
    assert_eq!(seen["null_value"], Value::Null, "{seen}");
    assert_eq!(
        seen["null_count"],
        server
            .count("SELECT count(*) FROM service_metrics WHERE response_ms IS NULL")
            .await?,
        "{seen}"
    );
    assert_eq!(
        seen["scalars"],
        serde_json::json!([true, false, 1.5]),
        "{seen}"
    );
    let count = |sql: &'static str| server.count(sql);
    let unhealthy = count("SELECT count(*) FROM service_metrics WHERE status_code = 503").await?;
    let healthy = count("SELECT count(*) FROM service_metrics WHERE status = 'healthy'").await?;
    assert_eq!(seen["bound_503"], unhealthy, "{seen}");
    assert_eq!(seen["prepared_503"], unhealthy, "{seen}");
    assert_eq!(seen["prepared_200"], healthy, "{seen}");
    assert_eq!(seen["bound_healthy"], healthy, "{seen}");
    assert_eq!(seen["bound_injection"], 0, "{seen}");
    assert_eq!(seen["bound_injection_drop"], 0, "{seen}");
    assert_eq!(
        seen["bound_since"],
        count(
            "SELECT count(*) FROM service_metrics WHERE recorded_at >= NOW() - INTERVAL '1 hour'"
        )
        .await?,
        "{seen}"
    );
    assert_eq!(seen["search_path"], "public", "{seen}");
    for (what, sqlstate, says) in [
        ("insert", "25006", "read-only"),
        ("drop", "25006", "read-only"),
        ("broken", "42601", "SELEC"),
        ("unknown", "42000", "nope"),
        ("bad_parameter", "22P02", "parse parameter"),
    ] {
        let error = &seen[what];
        assert_eq!(error["sqlstate"], sqlstate, "{what}: {seen}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{what}: want {says:?} in {message:?}"
        );
    }
    assert_eq!(seen["grafana_health"], 1, "{seen}");
    let tables: Vec<&str> = seen["grafana_tables"]
        .as_array()
        .context("grafana tables")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tables.contains(&"service_metrics"), "{seen}");
    // (`data_type` is DataFusion's name of the Arrow type, not Postgres'.)
    let columns: Vec<&String> = seen["grafana_columns"]
        .as_object()
        .context("grafana columns")?
        .keys()
        .collect();
    assert_eq!(
        columns,
        [
            "recorded_at",
            "response_ms",
            "service_name",
            "status",
            "status_code"
        ],
        "{seen}"
    );
    assert_eq!(
        seen["grafana_panel_rows"].as_u64().map(|n| n >= 3),
        Some(true),
        "{seen}"
    );
    assert_eq!(seen["grafana_table_rows"], 5, "{seen}");
    // Nothing was written or dropped.
    assert_eq!(count("SELECT count(*) FROM service_metrics").await?, 720);
    Ok(())
}

/// Reads what the server sends until it closes or `wait` passes.
async fn drain(socket: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() > 1 << 20 {
            break;
        }
    }
    got
}

fn startup_packet(user: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec(); // protocol 3.0
    for (key, value) in [("user", user), ("database", "weir")] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Connects and finishes the startup: true once the server says
/// ReadyForQuery.
async fn start_session(addr: &str) -> Result<TcpStream> {
    let mut socket = TcpStream::connect(addr).await?;
    socket.write_all(&startup_packet("idle")).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // ReadyForQuery: 'Z', length 5, status 'I'.
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await??;
        ensure!(n > 0, "closed during startup: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(socket)
}

/// Malformed startup packets and messages — lengths that lie, in both
/// directions, unknown types, random bytes and mutations of valid
/// sessions for a bounded time — each get an error or a closed connection,
/// never a crash or a hang; 1,000 idle sessions do not stop the server
/// serving, and connections past the cap are refused with Postgres' own
/// `53300`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_protocol_survives_hostile_clients() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = WeirServer::start(&dir.path().join("data"), &["--pg-max-connections", "1010"])?;
    seed_uptime(&server).await?;
    let addr = server.pg_addr.clone();
    let wait = Duration::from_secs(2);

    // Lengths that lie, before and after the startup.
    let mut huge_startup = 0x7fff_fff0u32.to_be_bytes().to_vec();
    huge_startup.extend_from_slice(&196_608u32.to_be_bytes());
    let mut huge_query = startup_packet("x");
    huge_query.extend_from_slice(&[b'Q', 0x3f, 0xff, 0xff, 0xf0]);
    huge_query.extend_from_slice(&[b'a'; 4096]);
    let mut short_query = startup_packet("x");
    short_query.extend_from_slice(&[b'Q', 0, 0, 0, 2]);
    let mut unknown_type = startup_packet("x");
    unknown_type.extend_from_slice(&message(b'!', b"what"));
    let mut unterminated = startup_packet("x");
    unterminated.extend_from_slice(&message(b'Q', b"SELECT 1")); // no NUL
    let mut bind_nothing = startup_packet("x");
    bind_nothing.extend_from_slice(&message(b'B', b"\0nope\0\0\x7f\xff"));
    bind_nothing.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    bind_nothing.extend_from_slice(&message(b'S', b""));
    let mut negative_counts = startup_packet("x");
    negative_counts.extend_from_slice(&message(b'P', b"\0SELECT $1\0\xff\xff"));
    negative_counts.extend_from_slice(&message(b'S', b""));
    for (what, bytes) in [
        ("a 2 GB startup", huge_startup),
        ("a 1 GB query", huge_query),
        ("a length shorter than its header", short_query),
        ("an unknown message type", unknown_type),
        ("a query without its NUL", unterminated),
        ("a Bind of no statement", bind_nothing),
        ("a negative parameter count", negative_counts),
        ("a startup of zeros", vec![0u8; 64]),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ] {
        let started = Instant::now();
        let mut socket = TcpStream::connect(&addr).await?;
        let _ = socket.write_all(&bytes).await;
        drain(&mut socket, wait).await;
        ensure!(started.elapsed() < Duration::from_secs(5), "{what} hung");
        ensure!(
            psql(&server, &["-A", "-t", "-c", "SELECT 1"])?.trim() == "1",
            "after {what}"
        );
    }

    // A message at the size limit (1 MiB, its length field included) is
    // read, and answered: its statement is over the SQL limit, and the
    // session goes on. One byte past it, the header alone is refused with
    // `54000` and the connection closed, before any body is buffered.
    const MESSAGE_LIMIT: usize = 1 << 20;
    let mut at_limit = b"SELECT 7 ".to_vec();
    at_limit.resize(MESSAGE_LIMIT - 4 - 1, b' ');
    at_limit.push(0);
    let mut socket = start_session(&addr).await?;
    socket
        .write_all(&[message(b'Q', &at_limit), message(b'Q', b"SELECT 8\0")].concat())
        .await?;
    let got = drain(&mut socket, wait).await;
    ensure!(
        got.first() == Some(&b'E'),
        "no error for the oversized SQL: {got:?}"
    );
    ensure!(
        got.windows(5).any(|w| w == [0, 0, 0, 1, b'8']),
        "the session did not go on after a message at the limit: {got:?}"
    );
    let mut socket = start_session(&addr).await?;
    let started = Instant::now();
    socket.write_all(b"Q").await?;
    socket
        .write_all(&(MESSAGE_LIMIT as u32 + 1).to_be_bytes())
        .await?;
    let got = drain(&mut socket, wait).await;
    ensure!(
        got.windows(5).any(|w| w == b"54000") && started.elapsed() < wait,
        "a message past the limit was not refused at its header: {got:?}"
    );

    // Random bytes and mutated sessions, for a bounded time.
    let seed: u64 = rand::random();
    eprintln!("pgwire fuzz seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut valid = startup_packet("fuzz");
    valid.extend_from_slice(&message(b'Q', b"SELECT count(*) FROM service_metrics\0"));
    valid.extend_from_slice(&message(
        b'P',
        b"s\0SELECT $1::bigint + 1\0\0\x01\0\0\0\x14",
    ));
    valid.extend_from_slice(&message(b'B', b"\0s\0\0\x01\0\0\0\x01\0\0\0\x012\0\0"));
    valid.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    valid.extend_from_slice(&message(b'S', b""));
    valid.extend_from_slice(&message(b'X', b""));
    let fuzz_until = Instant::now() + Duration::from_secs(6);
    let mut cases = 0;
    while Instant::now() < fuzz_until {
        let mut bytes = valid.clone();
        match rng.random_range(0..3) {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
            }
            1 => bytes.truncate(rng.random_range(0..bytes.len())),
            _ => {
                let n = rng.random_range(0..512);
                bytes = (0..n).map(|_| rng.random()).collect();
            }
        }
        let mut socket = TcpStream::connect(&addr).await?;
        let _ = socket.write_all(&bytes).await;
        drain(&mut socket, Duration::from_millis(300)).await;
        cases += 1;
    }
    eprintln!("pgwire fuzz: {cases} cases");
    ensure!(psql(&server, &["-A", "-t", "-c", "SELECT 1"])?.trim() == "1");

    // 1,000 sessions that start and then idle.
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(start_session(&addr).await?);
    }
    let count = psql(
        &server,
        &["-A", "-t", "-c", "SELECT count(*) FROM service_metrics"],
    )?;
    assert_eq!(count.trim(), "720");
    assert_eq!(
        server.count("SELECT count(*) FROM service_metrics").await?,
        720
    );
    // Past the cap (1,010): refused the way Postgres refuses.
    let mut refused = 0;
    for _ in 0..20 {
        let mut socket = TcpStream::connect(&addr).await?;
        let _ = socket.write_all(&startup_packet("one-too-many")).await;
        let got = drain(&mut socket, wait).await;
        if got.first() == Some(&b'E') && got.windows(5).any(|w| w == b"53300") {
            refused += 1;
        } else {
            idle.push(socket);
        }
    }
    ensure!(refused >= 10, "{refused} of 20 refused past the cap");
    drop(idle);
    // The slots come back once the idle clients go.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match psql(&server, &["-A", "-t", "-c", "SELECT 2"]) {
            Ok(out) if out.trim() == "2" => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => bail!("after the idle clients left: {other:?}"),
        }
    }
    Ok(())
}
