//! Other systems' protocols through the real binary, with their real
//! clients: InfluxDB line protocol from the official Python
//! `influxdb-client` (`influx.rs`), Prometheus remote write from a real
//! Prometheus server scraping Weir and itself (`prometheus.rs`), OTLP from
//! the OpenTelemetry Python SDK's gRPC and HTTP exporters (`otlp.rs`),
//! Arrow Flight `DoPut` and Flight SQL from `pyarrow.flight` and ADBC
//! (`flight.rs`), the Postgres wire protocol from `psql` and `psycopg`
//! (`postgres.rs`), tokens and scopes on every door (`auth.rs`), TLS on
//! every listener (`tls.rs`), and hostile bodies for each, built by hand
//! past any client. After every hostile request the server still serves, and what it acknowledged survives a
//! `kill -9`. Also the built-in host source (`host.rs`).

mod auth;
mod flight;
mod host;
mod influx;
mod otlp;
mod postgres;
mod prometheus;
mod tls;

use std::ffi::OsStr;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use weir_e2e::{MetricRow, RequestBuilder, WeirServer, now_ns, tests_dir};

/// Runs the real client `tests/clients/<script>` with `args` and returns the
/// JSON it prints of what it saw. `needs` names the Python packages it
/// needs (tests/run.sh installs them); a failure shows the server's log.
fn python_client(server: &WeirServer, script: &str, args: &[&OsStr], needs: &str) -> Result<Value> {
    let out = std::process::Command::new("python3")
        .arg(tests_dir().join("clients").join(script))
        .args(args)
        .output()
        .with_context(|| format!("python3 with {needs} (tests/run.sh installs it)"))?;
    if !out.status.success() {
        bail!(
            "{script} failed:\n{}\nweir log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// 20 services checked every 5 minutes over the last 3 hours (720 rows);
/// some checks fail, some have no response time: what the query front
/// ends' tests ask the reference query about.
async fn seed_uptime(server: &WeirServer) -> Result<()> {
    const FIVE_MINUTES_NS: i64 = 300_000_000_000;
    let now = now_ns();
    let mut request = RequestBuilder::default();
    for s in 0..20i64 {
        for i in 0..36i64 {
            let healthy = (s * 7 + i) % 11 != 0;
            request.metric(&MetricRow {
                service_name: format!("svc-{s:02}"),
                status: if healthy { "healthy" } else { "unhealthy" },
                response_ms: (i % 5 != 0).then_some(10.0 + (s * i % 17) as f64),
                status_code: Some(if healthy { 200 } else { 503 }),
                recorded_at_ns: now - (i + 1) * FIVE_MINUTES_NS,
            });
        }
    }
    server.client().await?.write(request.build(0)).await?;
    Ok(())
}

/// One SQL answer as rows of JSON objects.
async fn rows(server: &WeirServer, sql: &str) -> Result<Vec<serde_json::Map<String, Value>>> {
    server.sql(sql).await
}

/// POSTs `body` with extra headers; returns the status and the answer.
async fn post(
    server: &WeirServer,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Result<(u16, String)> {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.http_url))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// A hostile request and the answer it must get: the status, and words the
/// body must contain.
struct Refused {
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Vec<u8>,
    status: u16,
    says: &'static str,
}

impl Refused {
    async fn check(self, server: &WeirServer) -> Result<()> {
        let (status, text) = post(server, self.path, self.headers, self.body).await?;
        anyhow::ensure!(
            status == self.status && text.contains(self.says),
            "{} {:?}: want {} with {:?}, got {status}: {text}",
            self.path,
            self.headers,
            self.status,
            self.says
        );
        Ok(())
    }
}
