//! TLS on every listener, with clients that verify a CA made for the test
//! (by `openssl`): curl over HTTP, psql and psycopg over the Postgres
//! protocol, ADBC and pyarrow over gRPC (Flight SQL, Flight `DoPut`); the
//! certificate reloaded on SIGHUP while serving, and a broken one refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use weir_e2e::{TestCa, WeirServer};

use super::auth::create_token;
use super::python_client;

/// The subject of the certificate served at `addr`, verified against the CA.
fn served_subject(addr: &str, ca: &Path) -> Result<String> {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .with_context(|| {
            format!(
                "no certificate from {addr}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(subject.to_string())
}

fn sighup(server: &WeirServer) -> Result<()> {
    let pid = server.pid().context("pid")?.to_string();
    ensure!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()?
            .success()
    );
    Ok(())
}

fn curl(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .context("curl")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// With a certificate and key configured, every listener speaks TLS only,
/// verified by each client against the test CA, tokens included; SIGHUP
/// swaps the certificate without a restart; a broken one is not taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_and_reloads_its_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki)?;
    let test_ca = TestCa::new(&pki)?;
    let one = test_ca.issue("weir-one", 2)?;
    let two = test_ca.issue("weir-two", 2)?;
    let (cert, key, ca) = (pki.join("cert.pem"), pki.join("key.pem"), test_ca.ca_pem());
    std::fs::copy(&one.0, &cert)?;
    std::fs::copy(&one.1, &key)?;
    // The files keep one old modification time while SIGHUP is tested, so
    // the watcher (which looks for changed times) cannot be what reloads.
    let backdate = |files: &[&Path]| -> Result<()> {
        let status = Command::new("touch")
            .args(["-d", "2020-01-01 00:00:00"])
            .args(files)
            .status()?;
        ensure!(status.success(), "touch");
        Ok(())
    };
    backdate(&[&cert, &key])?;
    let data = dir.path().join("data");
    let query = create_token(&data, "query", "analyst")?;
    let write = create_token(&data, "write", "collector")?;
    let server = WeirServer::start(
        &data,
        &[
            "--tls-cert-file",
            cert.to_str().context("utf-8")?,
            "--tls-key-file",
            key.to_str().context("utf-8")?,
        ],
    )?;
    ensure!(
        server.http_url.starts_with("https://"),
        "{}",
        server.http_url
    );
    let grpc_port = server.grpc_url.rsplit(':').next().context("port")?;
    let (_, pg_port) = server.pg_addr.rsplit_once(':').context("host:port")?;
    let ca_path = ca.to_str().context("utf-8")?;

    // HTTP: curl verifies the CA; plain HTTP and an unknown CA get nothing.
    let sql_url = format!("{}/api/v1/sql", server.http_url);
    let auth = format!("Authorization: Bearer {query}");
    let (ok, text) = curl(&[
        "--cacert",
        ca_path,
        "-H",
        &auth,
        "--data",
        "SELECT 41 + 1 AS answer",
        &sql_url,
    ])?;
    ensure!(ok && text.contains("\"answer\":42"), "{text}");
    let (ok, text) = curl(&["-H", &auth, "--data", "SELECT 1", &sql_url])?;
    ensure!(!ok, "curl trusted a certificate it has no CA for: {text}");
    let plain = sql_url.replacen("https://", "http://", 1);
    let (ok, text) = curl(&["-H", &auth, "--data", "SELECT 1", &plain])?;
    ensure!(
        !ok || !text.contains("\"Int64(1)\""),
        "plain HTTP answered: {text}"
    );
    let (ok, text) = curl(&["--cacert", ca_path, "--data", "SELECT 1", &sql_url])?;
    ensure!(
        ok && text.contains("authentication required"),
        "no token over TLS: {text}"
    );

    // The CLI, with WEIR_CA_FILE.
    let out = Command::new(weir_e2e::weir_binary())
        .args(["sql", "SELECT 6 * 7 AS answer"])
        .env("WEIR_HTTP_URL", &server.http_url)
        .env("WEIR_TOKEN", &query)
        .env("WEIR_CA_FILE", &ca)
        .output()?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("42"),
        "weir sql over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Postgres: psql with verify-full; a session without TLS is refused.
    let psql = |sslmode: &str| {
        Command::new("psql")
            .args(["-X", "-w", "-At", "-c", "SELECT 7 * 6"])
            .arg(format!(
                "host=localhost port={pg_port} user=analyst dbname=weir sslmode={sslmode} sslrootcert={ca_path}"
            ))
            .env("PGPASSWORD", &query)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
    };
    let out = psql("verify-full")?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "42",
        "psql over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql("disable")?;
    ensure!(!out.status.success(), "psql without TLS was served");
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("TLS connections only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // psycopg, ADBC Flight SQL and pyarrow Flight DoPut (gRPC) over TLS.
    let seen = python_client(
        &server,
        "tls.py",
        &[pg_port, grpc_port, ca_path, &query, &write].map(std::ffi::OsStr::new),
        "psycopg, adbc-driver-flightsql, pyarrow",
    )?;
    ensure!(
        seen["pg_verify_full"]["n"] == 42 && seen["pg_verify_full"]["ssl"] == true,
        "{seen}"
    );
    ensure!(
        seen["pg_disable"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("TLS connections only")),
        "{seen}"
    );
    // Plaintext behind an SSLRequest: the TLS session is closed unanswered.
    ensure!(seen["pg_stuffed"]["answer"] == "", "{seen}");
    ensure!(seen["adbc"]["n"] == 42, "{seen}");
    ensure!(
        seen["put"]["ack"]
            .as_str()
            .is_some_and(|a| a.contains("rows_written")),
        "{seen}"
    );

    // SIGHUP: the new certificate from the next handshake on, on every port.
    let http_addr = server.http_url.trim_start_matches("https://").to_string();
    let grpc_addr = format!("127.0.0.1:{grpc_port}");
    ensure!(served_subject(&http_addr, &ca)?.contains("weir-one"));
    std::fs::copy(&two.1, &key)?;
    std::fs::copy(&two.0, &cert)?;
    backdate(&[&cert, &key])?;
    // Proving a reload did not happen needs a wait past one watch period.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        served_subject(&http_addr, &ca)?.contains("weir-one"),
        "reloaded without SIGHUP"
    );
    sighup(&server)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_subject(&http_addr, &ca)?.contains("weir-two") {
        ensure!(
            Instant::now() < deadline,
            "the certificate was not reloaded:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        served_subject(&grpc_addr, &ca)?.contains("weir-two"),
        "gRPC kept the old certificate"
    );

    // A broken certificate is refused; the server keeps serving the last good one.
    let refusals = || server.log().matches("TLS certificate not reloaded").count();
    let before = refusals();
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )?;
    sighup(&server)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refusals() == before {
        ensure!(
            Instant::now() < deadline,
            "no word about the broken certificate:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(served_subject(&http_addr, &ca)?.contains("weir-two"));
    let (ok, text) = curl(&[
        "--cacert",
        ca_path,
        "-H",
        &auth,
        "--data",
        "SELECT 1 AS one",
        &sql_url,
    ])?;
    ensure!(ok && text.contains("\"one\":1"), "{text}");
    Ok(())
}
