//! One probe run: an HTTP(S) request or a TCP connect, judged by the probe's
//! conditions, becomes a [`ProbeOutcome`] — always, whatever happened. A
//! connection error is an unhealthy outcome with no response, never a
//! missing one.
//!
//! Every run opens a fresh connection (no pooling): a prober that reuses
//! connections would not notice DNS changes or a listener that no longer
//! accepts, and its response times would not include the connect.

mod cert;
mod json_path;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::Serialize;

use crate::config::ProbeSection;
use crate::{Result, config_error, error_chain, parse_duration};
use json_path::JsonPath;

/// The table probe rows go to unless a probe says otherwise.
pub const DEFAULT_TABLE: &str = "service_metrics";
/// Most of a body read to check body conditions.
const MAX_BODY_BYTES: usize = 1 << 20;
const MAX_REDIRECTS: usize = 5;

/// Columns every probe row has; labels may not take these names.
pub const RESERVED_COLUMNS: [&str; 6] = [
    "service_name",
    "status",
    "response_ms",
    "status_code",
    "error",
    "tls_days_left",
];

/// What a probe checks.
#[derive(Debug, Clone)]
pub enum Target {
    Http(Box<HttpTarget>),
    Tcp { address: String },
}

#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub url: reqwest::Url,
    pub method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    client: reqwest::Client,
}

/// A checked `[probes.NAME]`.
#[derive(Debug, Clone)]
pub struct ProbeDef {
    pub name: String,
    pub service: String,
    pub table: String,
    pub target: Target,
    pub interval: Duration,
    pub timeout: Duration,
    pub labels: BTreeMap<String, String>,
    conditions: Conditions,
    /// As written, for the probes API.
    pub section: ProbeSection,
}

#[derive(Debug, Clone, Default)]
struct Conditions {
    /// Empty: any status below 500.
    status: Vec<(u16, u16)>,
    max_response_time: Option<Duration>,
    body_contains: Option<String>,
    body_regex: Option<Regex>,
    json: Option<(JsonPath, serde_json::Value)>,
    tls_min_days: Option<f64>,
}

impl Conditions {
    fn need_body(&self) -> bool {
        self.body_contains.is_some() || self.body_regex.is_some() || self.json.is_some()
    }
}

/// Why a run is unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    Dns,
    Connect,
    Timeout,
    Tls,
    Http,
    Condition,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::Dns => "dns",
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Tls => "tls",
            Failure::Http => "http",
            Failure::Condition => "condition",
        })
    }
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeOutcome {
    /// When the run started (ns since the epoch): the row's time.
    pub started_ns: i64,
    pub healthy: bool,
    /// `None` when nothing answered.
    pub response_ms: Option<f64>,
    pub status_code: Option<i64>,
    pub tls_days_left: Option<f64>,
    /// `kind: detail`, e.g. `timeout: no response within 5s`.
    pub error: Option<String>,
}

impl ProbeOutcome {
    fn failed(started_ns: i64, kind: Failure, detail: impl fmt::Display) -> Self {
        Self {
            started_ns,
            healthy: false,
            response_ms: None,
            status_code: None,
            tls_days_left: None,
            error: Some(format!("{kind}: {detail}")),
        }
    }
}

impl ProbeDef {
    pub fn from_section(name: &str, section: &ProbeSection) -> Result<Self> {
        let what = format!("probes.{name}");
        let key = |k: &str| format!("{what}.{k}");
        weir_model::validate_name(weir_model::NameKind::Column, name)
            .map_err(|e| config_error(&what, format!("the probe's name: {e}")))?;
        let interval = match &section.interval {
            Some(text) => parse_duration(&key("interval"), text)?,
            None => Duration::from_secs(60),
        };
        if interval < Duration::from_secs(1) {
            return Err(config_error(key("interval"), "must be at least 1s"));
        }
        let timeout = match &section.timeout {
            Some(text) => parse_duration(&key("timeout"), text)?,
            None => Duration::from_secs(5).min(interval),
        };
        if timeout.is_zero() || timeout > interval {
            return Err(config_error(
                key("timeout"),
                format!("must be more than 0 and at most the interval ({interval:?})"),
            ));
        }
        let conditions = conditions(&what, section)?;
        let target = match (&section.url, &section.tcp) {
            (Some(url), None) => http_target(&what, url, section, conditions.tls_min_days)?,
            (None, Some(address)) => {
                let no_http = [
                    ("method", section.method.is_some()),
                    ("body", section.body.is_some()),
                    ("headers", !section.headers.is_empty()),
                    ("tls_min_days", section.tls_min_days.is_some()),
                    ("tls_ca_file", section.tls_ca_file.is_some()),
                    ("expect_status", section.expect_status.is_some()),
                    ("conditions on the body", conditions.need_body()),
                ];
                if let Some((k, _)) = no_http.iter().find(|(_, set)| *set) {
                    return Err(config_error(
                        &what,
                        format!("{k} needs an HTTP `url`, not `tcp`"),
                    ));
                }
                check_host_port(&key("tcp"), address)?;
                Target::Tcp {
                    address: address.clone(),
                }
            }
            _ => {
                return Err(config_error(
                    &what,
                    "give exactly one of `url` (http:// or https://) or `tcp` (host:port)",
                ));
            }
        };
        let (service, table) = row_destination(
            &what,
            name,
            section.service.as_deref(),
            section.table.as_deref(),
            &section.labels,
        )?;
        Ok(Self {
            name: name.to_string(),
            service,
            table,
            target,
            interval,
            timeout,
            labels: section.labels.clone(),
            conditions,
            section: section.clone(),
        })
    }

    /// Runs the probe once; never fails, never takes much longer than the
    /// timeout.
    pub async fn run(&self) -> ProbeOutcome {
        let started_ns = weir_pipeline::now_ns();
        let started = Instant::now();
        let run = async {
            match &self.target {
                Target::Tcp { address } => tcp(address, started_ns, started).await,
                Target::Http(http) => {
                    let mut request = http.client.request(http.method.clone(), http.url.clone());
                    request = request.headers(http.headers.clone());
                    if let Some(body) = &http.body {
                        request = request.body(body.clone());
                    }
                    self.http(request, started_ns, started).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(outcome) => outcome,
            Err(_) => ProbeOutcome::failed(
                started_ns,
                Failure::Timeout,
                format!("no answer within {:?}", self.timeout),
            ),
        }
    }

    async fn http(
        &self,
        request: reqwest::RequestBuilder,
        started_ns: i64,
        started: Instant,
    ) -> ProbeOutcome {
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let (kind, detail) = classify(&e);
                return ProbeOutcome::failed(started_ns, kind, detail);
            }
        };
        let code = response.status().as_u16();
        let tls_days_left = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(cert::not_after_unix)
            .map(|not_after| (not_after as f64 - started_ns as f64 / 1e9) / 86_400.0);
        let mut body = Vec::new();
        let mut body_error = None;
        if self.conditions.need_body() {
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = MAX_BODY_BYTES - body.len();
                        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        if body.len() == MAX_BODY_BYTES {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        body_error = Some(classify(&e));
                        break;
                    }
                }
            }
        }
        let elapsed = started.elapsed();
        let mut outcome = ProbeOutcome {
            started_ns,
            healthy: true,
            response_ms: Some(elapsed.as_secs_f64() * 1e3),
            status_code: Some(code as i64),
            tls_days_left,
            error: None,
        };
        let failed = match body_error {
            Some((kind, detail)) => Some(format!("{kind}: reading the body: {detail}")),
            None => self
                .conditions
                .check(code, elapsed, &body, tls_days_left)
                .map(|why| format!("{}: {why}", Failure::Condition)),
        };
        if let Some(error) = failed {
            outcome.healthy = false;
            outcome.error = Some(error);
        }
        outcome
    }
}

impl Conditions {
    /// Why a response fails, if it does.
    fn check(
        &self,
        code: u16,
        elapsed: Duration,
        body: &[u8],
        tls_days_left: Option<f64>,
    ) -> Option<String> {
        let status_ok = if self.status.is_empty() {
            code < 500
        } else {
            self.status
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&code))
        };
        if !status_ok {
            return Some(if self.status.is_empty() {
                format!("status {code} is 500 or more")
            } else {
                format!("status {code} is not an expected status")
            });
        }
        if let Some(max) = self.max_response_time
            && elapsed > max
        {
            return Some(format!("response took {elapsed:?}, more than {max:?}"));
        }
        if let (Some(min), Some(left)) = (self.tls_min_days, tls_days_left)
            && left < min
        {
            return Some(format!(
                "TLS certificate expires in {left:.1} days, fewer than {min}"
            ));
        }
        let text = String::from_utf8_lossy(body);
        if let Some(needle) = &self.body_contains
            && !text.contains(needle.as_str())
        {
            return Some(format!("body does not contain {needle:?}"));
        }
        if let Some(re) = &self.body_regex
            && !re.is_match(&text)
        {
            return Some(format!("body does not match /{}/", re.as_str()));
        }
        if let Some((path, want)) = &self.json {
            let doc: serde_json::Value = match serde_json::from_slice(body) {
                Ok(doc) => doc,
                Err(e) => return Some(format!("body is not JSON: {e}")),
            };
            match path.find(&doc) {
                Some(got) if got == want => {}
                Some(got) => return Some(format!("{path} is {got}, not {want}")),
                None => return Some(format!("{path} is not in the body")),
            }
        }
        None
    }
}

async fn tcp(address: &str, started_ns: i64, started: Instant) -> ProbeOutcome {
    let addrs = match tokio::net::lookup_host(address).await {
        Ok(addrs) => addrs.collect::<Vec<_>>(),
        Err(e) => return ProbeOutcome::failed(started_ns, Failure::Dns, e),
    };
    if addrs.is_empty() {
        return ProbeOutcome::failed(started_ns, Failure::Dns, "no addresses");
    }
    let mut last_error = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            // A connect is the check; nothing is sent or read.
            Ok(_stream) => {
                let response_ms = started.elapsed().as_secs_f64() * 1e3;
                return ProbeOutcome {
                    started_ns,
                    healthy: true,
                    response_ms: Some(response_ms),
                    status_code: None,
                    tls_days_left: None,
                    error: None,
                };
            }
            Err(e) => last_error = Some(format!("{addr}: {e}")),
        }
    }
    ProbeOutcome::failed(started_ns, Failure::Connect, last_error.unwrap_or_default())
}

/// Sorts a request error into DNS, connect, TLS, timeout or HTTP, from its
/// chain of causes (reqwest and hyper say which step failed only there).
fn classify(e: &reqwest::Error) -> (Failure, String) {
    let text = error_chain(e);
    let lower = text.to_ascii_lowercase();
    let kind = if e.is_timeout() {
        Failure::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        Failure::Dns
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("invalidcontenttype")
    {
        Failure::Tls
    } else if e.is_connect() {
        Failure::Connect
    } else {
        Failure::Http
    };
    (kind, text)
}

fn http_target(
    what: &str,
    url: &str,
    section: &ProbeSection,
    tls_min_days: Option<f64>,
) -> Result<Target> {
    let key = |k: &str| format!("{what}.{k}");
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| config_error(key("url"), format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(config_error(
            key("url"),
            format!("{url:?}: only http:// and https:// URLs with a host can be probed"),
        ));
    }
    let https = parsed.scheme() == "https";
    if !https && (tls_min_days.is_some() || section.tls_ca_file.is_some()) {
        return Err(config_error(
            what,
            "tls_min_days and tls_ca_file need an https:// url",
        ));
    }
    let method = match &section.method {
        Some(m) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| config_error(key("method"), format!("{m:?} is not an HTTP method")))?,
        None => reqwest::Method::GET,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &section.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| config_error(key("headers"), format!("{name:?} is not a header name")))?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            config_error(
                key("headers"),
                format!("{name}: {value:?} is not a header value"),
            )
        })?;
        headers.insert(name, value);
    }
    let client = match &section.tls_ca_file {
        None => shared_client(None),
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| config_error(key("tls_ca_file"), format!("reading {path}: {e}")))?;
            shared_client(Some(&pem))
        }
    }
    .map_err(|e| config_error(what, e))?;
    Ok(Target::Http(Box::new(HttpTarget {
        url: parsed,
        method,
        headers,
        body: section.body.clone(),
        client,
    })))
}

/// The HTTP client probes share: one for the public roots, one per set of
/// extra roots (`tls_ca_file`). A client holds a TLS configuration with
/// every root certificate; one per probe would cost megabytes per thousand
/// probes for nothing.
fn shared_client(extra_roots_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    static CLIENTS: std::sync::OnceLock<std::sync::Mutex<HashMap<Vec<u8>, reqwest::Client>>> =
        std::sync::OnceLock::new();
    let key = extra_roots_pem.unwrap_or_default().to_vec();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("weir-probe/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .tls_info(true);
    if let Some(pem) = extra_roots_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("tls_ca_file: {e}"))?;
        if certs.is_empty() {
            return Err("tls_ca_file: no certificates in the file".into());
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    clients.insert(key, client.clone());
    Ok(client)
}

fn conditions(what: &str, section: &ProbeSection) -> Result<Conditions> {
    let key = |k: &str| format!("{what}.{k}");
    let mut status = Vec::new();
    for spec in section.expect_status.iter().flatten() {
        status.push(status_range(spec).ok_or_else(|| {
            config_error(
                key("expect_status"),
                format!("{spec:?} is not a status like \"200\", \"2xx\" or \"200-299\""),
            )
        })?);
    }
    if section.expect_status.as_ref().is_some_and(Vec::is_empty) {
        return Err(config_error(
            key("expect_status"),
            "is empty: no status could pass",
        ));
    }
    let max_response_time = match &section.max_response_time {
        Some(text) => Some(parse_duration(&key("max_response_time"), text)?),
        None => None,
    };
    let body_regex = match &section.body_regex {
        Some(re) => Some(
            regex::RegexBuilder::new(re)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| config_error(key("body_regex"), e.to_string()))?,
        ),
        None => None,
    };
    let json = match (&section.json_path, &section.json_equals) {
        (Some(path), Some(want)) => Some((
            JsonPath::parse(path).map_err(|e| config_error(key("json_path"), e))?,
            want.clone(),
        )),
        (None, None) => None,
        _ => {
            return Err(config_error(what, "json_path and json_equals go together"));
        }
    };
    if let Some(days) = section.tls_min_days
        && !(days.is_finite() && days >= 0.0)
    {
        return Err(config_error(
            key("tls_min_days"),
            "must be a number of days, 0 or more",
        ));
    }
    Ok(Conditions {
        status,
        max_response_time,
        body_contains: section.body_contains.clone(),
        body_regex,
        json,
        tls_min_days: section.tls_min_days,
    })
}

/// `"200"`, `"2xx"`, `"200-299"`.
fn status_range(spec: &str) -> Option<(u16, u16)> {
    let spec = spec.trim();
    let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    if let Some(class) = spec.strip_suffix("xx").or_else(|| spec.strip_suffix("XX")) {
        let digit = class.parse::<u16>().ok().filter(|d| (1..=5).contains(d))?;
        return Some((digit * 100, digit * 100 + 99));
    }
    if let Some((lo, hi)) = spec.split_once('-') {
        let (lo, hi) = (code(lo.trim())?, code(hi.trim())?);
        return (lo <= hi).then_some((lo, hi));
    }
    code(spec).map(|c| (c, c))
}

fn check_host_port(what: &str, address: &str) -> Result<()> {
    let ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(config_error(what, format!("{address:?} is not host:port")))
    }
}

/// Where the rows of a probe or heartbeat named `name` go: its `service`
/// tag (default: the name) and its `table` (default: `service_metrics`).
/// The table must be one clients may write, and labels become tags that
/// must not collide with the columns every row has.
pub(crate) fn row_destination(
    what: &str,
    name: &str,
    service: Option<&str>,
    table: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Result<(String, String)> {
    let service = service.unwrap_or(name).to_string();
    if service.is_empty() || service.len() > weir_model::MAX_TAG_VALUE_BYTES {
        return Err(config_error(
            format!("{what}.service"),
            "must be 1 to 4096 bytes",
        ));
    }
    let table = table.unwrap_or(DEFAULT_TABLE).to_string();
    weir_model::validate_name(weir_model::NameKind::Table, &table)
        .and_then(|()| weir_model::check_not_system_table(&table))
        .map_err(|e| config_error(format!("{what}.table"), e.to_string()))?;
    for (name, value) in labels {
        weir_model::validate_name(weir_model::NameKind::Column, name)
            .map_err(|e| config_error(format!("{what}.labels"), e.to_string()))?;
        if RESERVED_COLUMNS.contains(&name.as_str()) {
            return Err(config_error(
                format!("{what}.labels"),
                format!("{name:?} is a column every probe row has"),
            ));
        }
        if value.len() > weir_model::MAX_TAG_VALUE_BYTES {
            return Err(config_error(
                format!("{what}.labels"),
                format!("the value of {name:?} is longer than 4096 bytes"),
            ));
        }
    }
    Ok((service, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(toml_text: &str) -> Result<ProbeDef> {
        let section: ProbeSection = toml::from_str(toml_text).unwrap();
        ProbeDef::from_section("api", &section)
    }

    #[test]
    fn status_specs() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("2xx"), Some((200, 299)));
        assert_eq!(status_range("200-204"), Some((200, 204)));
        for bad in [
            "", "20", "6xx", "0xx", "299-200", "abc", "200-", "99", "600",
        ] {
            assert_eq!(status_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_probes_are_clear_load_errors() {
        for (text, expect) in [
            ("", "exactly one of"),
            ("url = 'http://a' \n tcp = 'a:1'", "exactly one of"),
            ("url = 'not a url'", "is not a URL"),
            ("url = 'ftp://host/x'", "only http:// and https://"),
            (
                "url = 'http://a' \n interval = 'soon'",
                "probes.api.interval",
            ),
            ("url = 'http://a' \n interval = '500ms'", "at least 1s"),
            (
                "url = 'http://a' \n interval = '10s' \n timeout = '20s'",
                "at most the interval",
            ),
            ("url = 'http://a' \n method = 'GE T'", "not an HTTP method"),
            (
                "url = 'http://a' \n expect_status = ['7xx']",
                "expect_status",
            ),
            (
                "url = 'http://a' \n expect_status = []",
                "no status could pass",
            ),
            ("url = 'http://a' \n body_regex = '('", "body_regex"),
            ("url = 'http://a' \n json_path = '$.x'", "go together"),
            (
                "url = 'http://a' \n json_path = 'x' \n json_equals = 1",
                "json_path",
            ),
            ("url = 'http://a' \n tls_min_days = 10", "need an https://"),
            ("tcp = 'a:1' \n body_contains = 'x'", "needs an HTTP"),
            ("tcp = 'nohost'", "host:port"),
            ("tcp = 'a:0'", "host:port"),
            (
                "url = 'http://a' \n labels = { status = 'x' }",
                "every probe row has",
            ),
            ("url = 'http://a' \n table = 'weir_alerts'", "reserved"),
            (
                "url = 'http://a' \n headers = { 'a b' = 'x' }",
                "header name",
            ),
        ] {
            let err = probe(text).unwrap_err().to_string();
            assert!(
                err.contains(expect) && err.starts_with("probes.api"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn conditions_judge_responses() {
        let p = probe(
            "url = 'http://a' \n expect_status = ['2xx', '304'] \n body_contains = 'ok' \n max_response_time = '1s' \n json_path = '$.checks[1].state' \n json_equals = 'up'",
        )
        .unwrap();
        let body = br#"{"checks": [{"state": "down"}, {"state": "up"}], "x": "ok"}"#;
        let fast = Duration::from_millis(10);
        assert_eq!(p.conditions.check(200, fast, body, None), None);
        assert_eq!(p.conditions.check(304, fast, body, None), None);
        let why =
            |code, elapsed, body: &[u8]| p.conditions.check(code, elapsed, body, None).unwrap();
        assert!(why(301, fast, body).contains("not an expected status"));
        assert!(why(200, Duration::from_secs(2), body).contains("more than 1s"));
        assert!(why(200, fast, b"{}").contains("does not contain"));
        assert!(why(200, fast, b"ok not json").contains("not JSON"));
        assert!(why(200, fast, br#"{"checks": [], "ok": 1}"#).contains("is not in the body"));
        assert!(
            why(
                200,
                fast,
                br#"{"checks": [{}, {"state": "down"}], "ok": 1}"#
            )
            .contains(r#"is "down", not "up""#)
        );
        // The default: below 500 is healthy (as the reference collector).
        let default = probe("url = 'http://a'").unwrap();
        assert_eq!(default.conditions.check(404, fast, b"", None), None);
        assert!(default.conditions.check(503, fast, b"", None).is_some());
        let tls = probe("url = 'https://a' \n tls_min_days = 14").unwrap();
        assert_eq!(tls.conditions.check(200, fast, b"", Some(20.0)), None);
        assert!(
            tls.conditions
                .check(200, fast, b"", Some(3.5))
                .unwrap()
                .contains("expires in 3.5 days")
        );
    }
}
