//! Tokens and scopes on every listener, with real clients: HTTP (as curl
//! sends it), a gRPC client, the `weir` CLI, `psql`, psycopg, ADBC's Flight
//! SQL driver and pyarrow's Flight `DoPut`; revocation while running; the
//! per-address limit on failed attempts; and the secure-by-default rule
//! for listeners beyond loopback.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use weir_e2e::{
    KillOnDrop, MetricRow, RequestBuilder, WeirServer, eventually, now_ns, weir_binary,
};

use super::python_client;

/// `weir token create` on a data directory; the token it prints once.
pub(super) fn create_token(data_dir: &std::path::Path, scope: &str, name: &str) -> Result<String> {
    let out = Command::new(weir_binary())
        .args([
            "token",
            "create",
            "--scope",
            scope,
            "--name",
            name,
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("WEIR_CONFIG")
        .output()?;
    ensure!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    ensure!(token.starts_with("weir_"), "{token:?}");
    Ok(token)
}

/// An HTTP request with an optional `Authorization` value, from `local`
/// (a loopback address other than 127.0.0.1 is another peer).
async fn http(
    server: &WeirServer,
    method: reqwest::Method,
    path: &str,
    authorization: Option<String>,
    body: &str,
    local: Option<IpAddr>,
) -> Result<(u16, reqwest::header::HeaderMap, String)> {
    let client = reqwest::Client::builder().local_address(local).build()?;
    let mut request = client
        .request(method, format!("{}{path}", server.http_url))
        .body(body.to_string());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok((status, headers, response.text().await?))
}

/// `POST /api/v1/sql` of `COUNT_HEALTHY` with `authorization`, from `local`.
async fn sql_as(
    server: &WeirServer,
    authorization: Option<String>,
    local: Option<IpAddr>,
) -> Result<(u16, String)> {
    let (status, _, body) = http(
        server,
        reqwest::Method::POST,
        "/api/v1/sql",
        authorization,
        COUNT_HEALTHY,
        local,
    )
    .await?;
    Ok((status, body))
}

const COUNT_HEALTHY: &str = "SELECT count(*) AS n FROM service_metrics WHERE status = 'healthy'";

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

/// `Authorization: Basic`, as Prometheus' `basic_auth` and Influx 1.x send it.
fn basic(user: &str, password: &str) -> Option<String> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(format!("Basic {encoded}"))
}

/// Writes `n` healthy checks over native gRPC with `token`.
async fn grpc_write(
    server: &WeirServer,
    token: Option<&str>,
    n: i64,
) -> Result<Result<u64, tonic::Status>> {
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_url.clone())?
        .connect()
        .await?;
    let header: Option<tonic::metadata::MetadataValue<_>> =
        token.map(|t| format!("Bearer {t}").parse()).transpose()?;
    let mut client = weir_proto::v1::write_service_client::WriteServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            if let Some(value) = &header {
                request
                    .metadata_mut()
                    .insert("authorization", value.clone());
            }
            Ok(request)
        },
    );
    let mut request = RequestBuilder::default();
    let now = now_ns();
    for i in 0..n {
        request.metric(&MetricRow {
            service_name: format!("svc-{i}"),
            status: "healthy",
            response_ms: Some(10.0),
            status_code: Some(200),
            recorded_at_ns: now - i * 1_000_000_000,
        });
    }
    Ok(client
        .write(request.build(0))
        .await
        .map(|r| r.into_inner().rows_written))
}

/// `psql -w` (never prompt) with `PGPASSWORD`; its output or its error.
fn psql(server: &WeirServer, password: Option<&str>, sql: &str) -> Result<Result<String, String>> {
    let (host, port) = server.pg_addr.rsplit_once(':').context("host:port")?;
    let mut command = Command::new("psql");
    command
        .args([
            "-X", "-w", "-At", "-h", host, "-p", port, "-U", "analyst", "-d", "weir", "-c", sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let out = command
        .output()
        .context("psql (tests/run.sh installs postgresql-client)")?;
    Ok(if out.status.success() {
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    })
}

/// A Postgres message: its type, then its length, then `body`.
fn pg_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![tag];
    message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// A Postgres startup, then `after` in the same write, as a client past
/// any driver can send them; every byte the server answers until it
/// closes (5 s at most).
async fn pg_raw(server: &WeirServer, after: &[u8]) -> Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut startup = 196_608u32.to_be_bytes().to_vec();
    startup.extend_from_slice(b"user\0analyst\0database\0weir\0\0");
    let mut bytes = (startup.len() as u32 + 4).to_be_bytes().to_vec();
    bytes.extend_from_slice(&startup);
    bytes.extend_from_slice(after);
    let mut socket = tokio::net::TcpStream::connect(&server.pg_addr).await?;
    socket.write_all(&bytes).await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    Ok(answer)
}

/// Without a token every door but health is shut; a `query` token
/// queries and cannot write, a `write` token writes and cannot query, an
/// `admin` token persists; on HTTP, gRPC, the CLI, psql, psycopg, ADBC
/// Flight SQL and Flight `DoPut`. No token reaches the log. A revoked
/// token is refused within a few seconds; a peer that keeps failing is
/// refused even with a good token while other peers are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_needs_a_token_with_the_right_scope() -> Result<()> {
    use reqwest::Method;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let query = create_token(&data, "query", "grafana")?;
    let write = create_token(&data, "write", "collector")?;
    let admin = create_token(&data, "admin", "ops")?;
    let server = WeirServer::start(&data, &[])?;
    let sql = COUNT_HEALTHY;

    // gRPC: the write API needs `write`.
    let refused = grpc_write(&server, None, 1).await?.expect_err("no token");
    ensure!(
        refused.code() == tonic::Code::Unauthenticated,
        "{refused:?}"
    );
    let refused = grpc_write(&server, Some(&query), 1)
        .await?
        .expect_err("query token");
    ensure!(
        refused.code() == tonic::Code::PermissionDenied,
        "{refused:?}"
    );
    ensure!(refused.message().contains("write scope"), "{refused:?}");
    ensure!(grpc_write(&server, Some(&write), 30).await?? == 30);

    // HTTP, as curl sends it.
    for open in ["/health", "/health/ready"] {
        let (status, ..) = http(&server, Method::GET, open, None, "", None).await?;
        ensure!(status == 200, "{open}: {status}");
    }
    let (status, headers, body) =
        http(&server, Method::POST, "/api/v1/sql", None, sql, None).await?;
    ensure!(status == 401, "{status} {body}");
    ensure!(headers.get("www-authenticate").is_some(), "{headers:?}");
    let (status, ..) = http(&server, Method::GET, "/metrics", None, "", None).await?;
    ensure!(status == 401, "/metrics without a token: {status}");
    let wrong = format!("{}0", &query[..query.len() - 1]);
    let wrong = if wrong == query {
        format!("{}1", &query[..query.len() - 1])
    } else {
        wrong
    };
    let (status, ..) = sql_as(&server, bearer(&wrong), None).await?;
    ensure!(status == 401, "a wrong token: {status}");
    let (status, body) = sql_as(&server, bearer(&query), None).await?;
    ensure!(status == 200 && body.contains("30"), "{status} {body}");
    let (status, body) = sql_as(&server, bearer(&write), None).await?;
    ensure!(
        status == 403 && body.contains("query scope"),
        "{status} {body}"
    );
    let line = "auth_lines,host=a cpu=0.5";
    let (status, _, body) = http(
        &server,
        Method::POST,
        "/api/v2/write?bucket=b",
        Some(format!("Token {query}")),
        line,
        None,
    )
    .await?;
    ensure!(
        status == 403,
        "influx write with a query token: {status} {body}"
    );
    let (status, _, body) = http(
        &server,
        Method::POST,
        "/api/v2/write?bucket=b",
        Some(format!("Token {write}")),
        line,
        None,
    )
    .await?;
    ensure!(status == 204, "influx 2 write (Token): {status} {body}");
    let (status, _, body) = http(
        &server,
        Method::POST,
        &format!("/write?db=b&u=me&p={write}"),
        None,
        line,
        None,
    )
    .await?;
    ensure!(status == 204, "influx 1 write (?p=): {status} {body}");
    let (status, _, body) = http(
        &server,
        Method::POST,
        "/write?db=b",
        basic("me", &write),
        line,
        None,
    )
    .await?;
    ensure!(status == 204, "influx 1 write (Basic): {status} {body}");
    let (status, ..) = http(
        &server,
        Method::POST,
        "/api/v1/persist",
        bearer(&write),
        "",
        None,
    )
    .await?;
    ensure!(status == 403, "persist with a write token: {status}");
    let (status, _, body) = http(
        &server,
        Method::POST,
        "/api/v1/persist",
        bearer(&admin),
        "",
        None,
    )
    .await?;
    ensure!(
        status == 200,
        "persist with an admin token: {status} {body}"
    );
    let (status, ..) = http(&server, Method::GET, "/metrics", bearer(&query), "", None).await?;
    ensure!(status == 200, "/metrics with a query token: {status}");

    // The CLI sends WEIR_TOKEN.
    let out = server.cli(&["sql", "SELECT 1 AS one"])?;
    ensure!(!out.status.success(), "weir sql without a token succeeded");
    let out = Command::new(weir_binary())
        .args(["sql", "SELECT 1 AS one"])
        .env("WEIR_HTTP_URL", &server.http_url)
        .env("WEIR_TOKEN", &query)
        .output()?;
    ensure!(
        out.status.success(),
        "weir sql with a token: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // psql: the password is the token.
    let refused = psql(&server, None, sql)?.expect_err("psql without a password");
    ensure!(refused.contains("password"), "{refused}");
    ensure!(psql(&server, Some(&query), sql)?.as_deref() == Ok("30"));
    let refused = psql(&server, Some(&write), sql)?.expect_err("psql with a write token");
    ensure!(refused.contains("query scope"), "{refused}");

    // Queries pipelined behind a wrong password are not run.
    let wrong_password = pg_message(b'p', b"weir_000000000000_wrong\0");
    let pipelined = pg_message(b'Q', b"SELECT count(*) FROM service_metrics\0");
    let answer = pg_raw(&server, &[wrong_password, pipelined].concat()).await?;
    ensure!(
        answer.windows(5).any(|w| w == b"28P01"),
        "no 28P01 in {answer:?}"
    );
    ensure!(
        !answer.windows(7).any(|w| w == b"SELECT "),
        "a query ran: {answer:?}"
    );
    // Nor is a message over the size limit buffered before a login: the
    // header of a 1 GiB query is refused as soon as it arrives.
    let answer = pg_raw(&server, &[b'Q', 0x40, 0, 0, 0]).await?;
    ensure!(
        answer.windows(5).any(|w| w == b"54000"),
        "no 54000 in {answer:?}"
    );

    // psycopg, ADBC Flight SQL, pyarrow Flight DoPut.
    let (host, port) = server.pg_addr.rsplit_once(':').context("host:port")?;
    let seen = python_client(
        &server,
        "auth.py",
        &[
            host,
            port,
            &server.grpc_url.replace("http://", "grpc://"),
            &query,
            &write,
        ]
        .map(std::ffi::OsStr::new),
        "psycopg, adbc-driver-flightsql, pyarrow",
    )?;
    let at = |key: &str, field: &str| seen[key][field].clone();
    ensure!(
        at("pg_none", "error")
            .as_str()
            .is_some_and(|e| e.contains("no password supplied")),
        "{seen}"
    );
    ensure!(at("pg_query", "rows") == 30, "{seen}");
    // libpq reports a refused login without its SQLSTATE: the message it is.
    ensure!(
        at("pg_write", "error")
            .as_str()
            .is_some_and(|e| e.contains("lacks the query scope")),
        "{seen}"
    );
    let unauthenticated = |e: &str| {
        let e = e.to_lowercase();
        e.contains("unauthenticated") || e.contains("authentication required")
    };
    ensure!(
        at("adbc_none", "error")
            .as_str()
            .is_some_and(unauthenticated),
        "{seen}"
    );
    ensure!(at("adbc_basic_query", "rows") == 30, "{seen}");
    ensure!(at("adbc_header_query", "rows") == 30, "{seen}");
    ensure!(
        at("adbc_basic_write", "error")
            .as_str()
            .is_some_and(|e| e.contains("query scope")),
        "{seen}"
    );
    ensure!(
        at("put_none", "error")
            .as_str()
            .is_some_and(unauthenticated),
        "{seen}"
    );
    ensure!(
        at("put_query", "error")
            .as_str()
            .is_some_and(|e| e.contains("write scope")),
        "{seen}"
    );
    ensure!(
        at("put_write", "ack")
            .as_str()
            .is_some_and(|a| a.contains("rows_written")),
        "{seen}"
    );

    // Nothing logs a token.
    let log = server.log();
    for token in [&query, &write, &admin] {
        ensure!(!log.contains(token.as_str()), "a token is in the log");
    }
    ensure!(
        log.contains("lacks the scope"),
        "refusals are logged:\n{log}"
    );

    // Revoked while running: refused within a few seconds, without a restart.
    let out = Command::new(weir_binary())
        .args(["token", "revoke", "grafana", "--data-dir"])
        .arg(&data)
        .output()?;
    ensure!(
        out.status.success(),
        "revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    loop {
        let (status, ..) = sql_as(&server, bearer(&query), None).await?;
        if status == 401 {
            break;
        }
        ensure!(status == 200, "{status}");
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "the revoked token still works"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A peer guessing tokens is stopped (then even a good token is refused
    // from there), while another address is still served.
    // Its own address, so the budget is exactly the default 10 failures.
    let guesser: IpAddr = "127.0.0.3".parse()?;
    let mut failures = 0;
    let retry_after = loop {
        let (status, headers, _) = http(
            &server,
            Method::POST,
            "/api/v1/sql",
            bearer(&wrong),
            sql,
            Some(guesser),
        )
        .await?;
        if status == 429 {
            break headers.get("retry-after").cloned();
        }
        ensure!(status == 401, "{status}");
        failures += 1;
        ensure!(
            failures <= 10,
            "11 wrong tokens in a row were all answered 401"
        );
    };
    ensure!(failures == 10, "refused after {failures} failures, not 10");
    ensure!(retry_after.is_some(), "429 without Retry-After");
    let (status, ..) = sql_as(&server, bearer(&admin), Some(guesser)).await?;
    ensure!(
        status == 429,
        "the guessing peer with a good token: {status}"
    );
    let other: IpAddr = "127.0.0.2".parse()?;
    let (status, ..) = sql_as(&server, bearer(&admin), Some(other)).await?;
    ensure!(status == 200, "another peer: {status}");
    Ok(())
}

/// Starts `weir serve` with the HTTP listener on all interfaces; returns
/// the process and its HTTP URL once it listens, or its log if it exits
/// first.
fn serve_exposed(
    data_dir: &std::path::Path,
    extra: &[&str],
) -> Result<Result<(KillOnDrop, String), String>> {
    let log_path = data_dir.with_extension("log");
    let mut child = Command::new(weir_binary())
        .args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
        ])
        .args(["--http-listen", "0.0.0.0:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("WEIR_CONFIG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let child = KillOnDrop(child);
    // Read on a thread for the server's whole life: a closed pipe would
    // fail its next print.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(port) = line.strip_prefix("weir: HTTP listening on http://0.0.0.0:") {
                    return Ok(Ok((child, format!("http://127.0.0.1:{port}"))));
                }
            }
            // Standard output closed: the server exited.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Err(std::fs::read_to_string(&log_path)?));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                bail!("weir serve neither listened nor exited")
            }
        }
    }
}

/// With no token, `serve` refuses to listen beyond loopback unless told
/// `--insecure-allow-unauthenticated`; with a token it listens and
/// requires it. On loopback with no token it serves openly, and the first
/// token created while it runs locks every door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_beyond_loopback_needs_a_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sql_status = async |url: &str, token: Option<&str>| -> Result<u16> {
        let mut request = reqwest::Client::new()
            .post(format!("{url}/api/v1/sql"))
            .body("SELECT 1");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Ok(request.send().await?.status().as_u16())
    };

    let refused = serve_exposed(&dir.path().join("a"), &[])?
        .err()
        .context("it listened")?;
    ensure!(
        refused.contains("refusing to listen on 0.0.0.0")
            && refused.contains("--insecure-allow-unauthenticated"),
        "{refused}"
    );
    let Ok((_open, url)) =
        serve_exposed(&dir.path().join("a"), &["--insecure-allow-unauthenticated"])?
    else {
        bail!("--insecure-allow-unauthenticated did not start");
    };
    ensure!(sql_status(&url, None).await? == 200);

    let token = create_token(&dir.path().join("b"), "query", "analyst")?;
    let (_locked, url) = serve_exposed(&dir.path().join("b"), &[])?
        .map_err(|e| anyhow::anyhow!("with a token it must start: {e}"))?;
    ensure!(sql_status(&url, None).await? == 401);
    ensure!(sql_status(&url, Some(&token)).await? == 200);

    let server = WeirServer::start(&dir.path().join("c"), &[])?;
    ensure!(sql_status(&server.http_url, None).await? == 200);
    ensure!(
        psql(&server, None, "SELECT 1")?.is_ok(),
        "psql without a token on an open server"
    );
    let token = create_token(&server.data_dir, "query", "first")?;
    eventually(
        Duration::from_secs(10),
        "the first token to lock the doors",
        async || Ok((sql_status(&server.http_url, None).await? == 401).then_some(())),
    )
    .await?;
    ensure!(sql_status(&server.http_url, Some(&token)).await? == 200);
    ensure!(
        psql(&server, None, "SELECT 1")?.is_err(),
        "psql without a token once a token exists"
    );
    ensure!(
        server.log().contains("every listener requires one"),
        "{}",
        server.log()
    );
    Ok(())
}
