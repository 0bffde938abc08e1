//! Prometheus exposition text (the `/metrics` format, version 0.0.4) →
//! metric points.
//!
//! Each sample `name{label="value",...} value [timestamp_ms]` becomes one
//! event: by default in a table named after the metric, with its labels as
//! tags and the sample in field `value`. With config `table = T`, every
//! sample goes to table `T` instead, with the metric name in tag `metric`.
//! Histogram and summary series (`_bucket`, `_sum`, `_count`) are metrics of
//! their own, as Prometheus stores them. Samples without a timestamp get the
//! server's time. `NaN` and `±Inf` samples (legal in Prometheus, refused by
//! Weir) are skipped and counted in one log line per body.

use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct PrometheusText {
    table: Option<String>,
}

struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| format!("value {text:?} is not a number")),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_line(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("expected a metric name at {line:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("unterminated label set")?;
            let label = rest[..eq].trim();
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {label:?}"));
            }
            let quoted = rest[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| format!("label {label:?}: value must be quoted"))?;
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("label {label:?}: unterminated value")),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {label:?}: unterminated value")),
                }
            };
            labels.push((label, value));
            rest = &quoted[end + 1..];
        }
    }
    let mut parts = rest.split_whitespace();
    let value = parse_value(parts.next().ok_or("missing sample value")?)?;
    let timestamp_ms = parts
        .next()
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| format!("timestamp {t:?} is not an integer"))
        })
        .transpose()?;
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

impl Adapter for PrometheusText {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            table: config.get("table").map(str::to_string),
        })
    }

    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
        let mut skipped = 0;
        for (n, line) in input.text()?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_line(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            if !sample.value.is_finite() {
                skipped += 1;
                continue;
            }
            let time_ns = match sample.timestamp_ms {
                Some(ms) => ms
                    .checked_mul(1_000_000)
                    .ok_or_else(|| format!("line {}: timestamp {ms} out of range", n + 1))?,
                None => 0,
            };
            let mut event = match &self.table {
                Some(table) => {
                    let mut e = out.event(table, time_ns);
                    e.tag("metric", sample.name);
                    e
                }
                None => out.event(sample.name, time_ns),
            };
            for (label, value) in &sample.labels {
                event.tag(label, value);
            }
            event.field_f64("value", sample.value);
        }
        if skipped > 0 {
            weir_sdk::log::debug(&format!("skipped {skipped} NaN/Inf samples"));
        }
        Ok(())
    }
}

weir_sdk::export_adapter!(PrometheusText);

#[cfg(test)]
mod tests {
    use weir_sdk::{Events, testing};

    use super::*;

    const TEXT: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
rpc_duration_seconds{quantile="0.5"} NaN
up 1
"#;

    #[test]
    fn per_metric_tables() {
        let mut a = PrometheusText::init(&Config::default()).unwrap();
        let out = testing::adapt(&mut a, "text/plain; version=0.0.4", TEXT.as_bytes()).unwrap();
        let tables: Vec<&str> = out.iter().map(|b| b.table.as_str()).collect();
        assert_eq!(
            tables,
            [
                "http_requests_total",
                "msdos_file_access_time_seconds",
                "up"
            ]
        );
        let requests = Events::new(&out[0]).unwrap();
        assert_eq!(requests.event(1).tag("code"), Some("400"));
        assert_eq!(requests.event(1).field_f64("value"), Some(3.0));
        assert_eq!(requests.event(1).time_ns(), 1_395_066_363_000_000_000);
        let msdos = Events::new(&out[1]).unwrap();
        assert_eq!(msdos.event(0).tag("path"), Some(r"C:\DIR\FILE.TXT"));
        assert_eq!(
            msdos.event(0).tag("error"),
            Some("Cannot find file:\n\"FILE.TXT\"")
        );
        assert_eq!(Events::new(&out[2]).unwrap().event(0).time_ns(), 0);
    }

    #[test]
    fn one_table_and_errors() {
        let mut a = PrometheusText::init(&Config::from_pairs([("table", "metrics")])).unwrap();
        let out = testing::adapt(&mut a, "", TEXT.as_bytes()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(Events::new(&out[0]).unwrap().len(), 4);
        let err = testing::adapt(&mut a, "", b"ok 1\nbad{x=1} 2").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
        assert!(testing::adapt(&mut a, "", b"x 1 2 3").is_err());
        assert!(testing::adapt(&mut a, "", b"x one").is_err());
    }
}
