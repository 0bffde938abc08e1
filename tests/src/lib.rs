//! Helpers for Weir's end-to-end tests: start the real `weir` binary on
//! ephemeral ports with a temporary data directory, and talk to it as a user
//! would — gRPC writes, HTTP SQL, the CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir_proto::v1::write_service_client::WriteServiceClient;
use weir_proto::v1::{Field, Point, WriteRequest, field};

/// The `weir` binary of this build (`cargo build -p weir` puts it next to
/// the test executables' directory).
pub fn weir_binary() -> PathBuf {
    if let Ok(path) = std::env::var("WEIR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("weir");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p weir` (the README's test command does)",
        bin.display()
    );
    bin
}

/// A guest component built by `guest-examples/build.sh`, e.g.
/// `guest("owner-enricher")` → `target/wasm32-wasip2/release/owner_enricher.wasm`.
pub fn guest(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target directory");
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} not found: build the guests first with `bash guest-examples/build.sh` (the README's test command does)",
        path.display()
    );
    path
}

/// A running `weir serve`.
pub struct WeirServer {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub grpc_url: String,
    pub http_url: String,
    /// The Postgres wire protocol's `host:port`.
    pub pg_addr: String,
    pub log_path: PathBuf,
    args: Vec<String>,
}

impl WeirServer {
    /// Starts a server on `data_dir` with the reference table configured and
    /// `extra` flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        let args = ["--time-column", "service_metrics=recorded_at"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        Self::spawn(data_dir, args)
    }

    /// Starts a server with nothing configured but `extra` flags: no table
    /// has a configured time column.
    pub fn start_unconfigured(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(data_dir, extra.iter().map(|s| s.to_string()).collect())
    }

    fn spawn(data_dir: &Path, args: Vec<String>) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let log_path = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut child = Command::new(weir_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--pg-listen",
                "127.0.0.1:0",
            ])
            .args(&args)
            .env_remove("WEIR_CONFIG")
            .env_remove("WEIR_TIME_COLUMNS")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting weir serve")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut grpc = None;
        let mut http = None;
        let mut pg = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while grpc.is_none() || http.is_none() || pg.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    bail!("weir serve did not report its addresses; log:\n{log}");
                }
            };
            if let Some(addr) = line.strip_prefix("weir: gRPC listening on ") {
                grpc = Some(format!("http://{addr}"));
            } else if let Some(url) = line.strip_prefix("weir: HTTP listening on ") {
                http = Some(url.to_string());
            } else if let Some(addr) = line.strip_prefix("weir: Postgres listening on ") {
                pg = Some(addr.to_string());
            }
        }
        Ok(Self {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            grpc_url: grpc.unwrap_or_default(),
            http_url: http.unwrap_or_default(),
            pg_addr: pg.unwrap_or_default(),
            log_path,
            args,
        })
    }

    /// Stops the server like a crash would: SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("server not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("weir did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a new server on the same data directory and flags.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let next = Self::spawn(&self.data_dir, self.args.clone())?;
        *self = next;
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub async fn client(&self) -> Result<WriteServiceClient<tonic::transport::Channel>> {
        Ok(WriteServiceClient::connect(self.grpc_url.clone())
            .await?
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX))
    }

    /// Runs SQL over HTTP; returns the rows as JSON objects or the error.
    pub async fn sql(
        &self,
        query: &str,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        let (status, body) = self.sql_raw(query, "application/json").await?;
        if status != 200 {
            bail!("HTTP {status}: {body}");
        }
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&body)?;
        Ok(rows)
    }

    pub async fn sql_raw(&self, query: &str, accept: &str) -> Result<(u16, String)> {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/sql", self.http_url))
            .header("accept", accept)
            .body(query.to_string())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// A single integer from a query like `SELECT COUNT(*) AS n ...`.
    pub async fn count(&self, query: &str) -> Result<i64> {
        let rows = self.sql(query).await?;
        let value = rows
            .first()
            .and_then(|r| r.values().next())
            .and_then(|v| v.as_i64())
            .with_context(|| format!("no integer in {rows:?}"))?;
        Ok(value)
    }

    pub async fn persist(&self) -> Result<serde_json::Value> {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/persist", self.http_url))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("persist: HTTP {}", response.status());
        }
        Ok(response.json().await?)
    }

    /// POSTs `body` to `path`; returns the status and the answer.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, String)> {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.http_url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let response = reqwest::get(format!("{}{path}", self.http_url)).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// Runs the `weir` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(weir_binary())
            .args(args)
            .env("WEIR_HTTP_URL", &self.http_url)
            .env("WEIR_GRPC_URL", &self.grpc_url)
            .output()?)
    }
}

impl Drop for WeirServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One `service_metrics` row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub service_name: String,
    pub status: &'static str,
    pub response_ms: Option<f64>,
    pub status_code: Option<i64>,
    pub recorded_at_ns: i64,
}

/// Builds a write request with a symbol table, as an efficient client would.
#[derive(Default)]
pub struct RequestBuilder {
    symbols: weir_proto::SymbolTable,
    points: Vec<Point>,
}

impl RequestBuilder {
    pub fn symbol(&mut self, s: &str) -> u32 {
        self.symbols.intern(s)
    }

    pub fn point(
        &mut self,
        table: &str,
        timestamp_ns: i64,
        tags: &[(&str, &str)],
        fields: Vec<(&str, field::Value)>,
    ) {
        let table = self.symbol(table);
        let tags = tags
            .iter()
            .flat_map(|(k, v)| [self.symbol(k), self.symbol(v)])
            .collect();
        let fields = fields
            .into_iter()
            .map(|(k, value)| Field {
                key: self.symbol(k),
                value: Some(value),
            })
            .collect();
        self.points.push(Point {
            table,
            timestamp_ns,
            tags,
            fields,
        });
    }

    pub fn metric(&mut self, row: &MetricRow) {
        let status = field::Value::String(self.symbol(row.status));
        let mut fields = vec![("status", status)];
        if let Some(ms) = row.response_ms {
            fields.push(("response_ms", field::Value::F64(ms)));
        }
        if let Some(code) = row.status_code {
            fields.push(("status_code", field::Value::I64(code)));
        }
        self.point(
            "service_metrics",
            row.recorded_at_ns,
            &[("service_name", &row.service_name)],
            fields,
        );
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn build(mut self, sequence: u64) -> WriteRequest {
        WriteRequest {
            sequence,
            symbols: self.symbols.take(),
            points: self.points,
            time_columns: Vec::new(),
        }
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Path of the `tests/` directory.
///
/// Read when the test runs (`cargo test` sets it) rather than baked in at
/// compile time: cargo reuses this library's build from a clone at another
/// path when the sources match, and a baked-in path would point there.
pub fn tests_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A certificate authority for tests that need TLS, made with the
/// `openssl` command (tests/run.sh installs it): `ca.key` and `ca.pem` in
/// its directory.
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> Result<Self> {
        let ca = Self {
            dir: dir.to_path_buf(),
        };
        ca.openssl(
            &[
                &["req", "-x509"][..],
                &EC_KEY,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat()
            .iter()
            .copied()
            .chain(["-days", "30", "-subj", "/CN=weir-test-ca"])
            .collect::<Vec<_>>(),
        )?;
        Ok(ca)
    }

    /// The CA's certificate, for clients to trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `localhost` and 127.0.0.1 with subject
    /// `CN=<name>`, valid for `days`: `<name>.pem` and `<name>.key`.
    pub fn issue(&self, name: &str, days: u32) -> Result<(PathBuf, PathBuf)> {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subject = format!("/CN={name}");
        self.openssl(
            &[
                &["req"][..],
                &EC_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        )?;
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let days = days.to_string();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            &days,
            "-extfile",
            &ext,
        ])?;
        Ok((self.dir.join(pem), self.dir.join(key)))
    }

    fn openssl(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .context("openssl (tests/run.sh installs it)")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// A new P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A loopback port free right now, for a peer that must be told its port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A peer process (Prometheus, Alertmanager) killed when the test ends,
/// however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus (Debian `prometheus`; tests/run.sh installs it) on
/// loopback `port`, with its config, TSDB and log in `dir`; killed when
/// dropped.
pub struct Prometheus {
    _child: KillOnDrop,
    log_path: PathBuf,
}

impl Prometheus {
    /// Writes `config` (prometheus.yml) into `dir` and starts Prometheus on it.
    pub fn start(dir: &Path, port: u16, config: &str) -> Result<Self> {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .context("starting prometheus: install Debian's prometheus (tests/run.sh does)")?;
        Ok(Self {
            _child: KillOnDrop(child),
            log_path,
        })
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_763_632_800_000_000_001),
            "2025-11-20T10:00:00.000000001Z"
        );
    }
}
