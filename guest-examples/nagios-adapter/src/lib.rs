//! Nagios plugin output → check events.
//!
//! Two input shapes:
//! - the output of one check plugin, `STATUS - text | perfdata` (long output
//!   lines may follow, and may carry more perfdata after a `|`); the service
//!   and host come from config (`service`, `host`);
//! - `send_nsca` lines, `host<TAB>service<TAB>return-code<TAB>output`, one
//!   check per line.
//!
//! Each check becomes one event in table `table` (default `checks`): tags
//! `host`, `service_name`, `status` (`healthy` for OK, `unhealthy` for
//! WARNING, CRITICAL and UNKNOWN — Weir's health is binary), fields
//! `exit_code` (0–3) and `message`, and one `f64` field per perfdata label,
//! plus `<label>_warn`, `_crit`, `_min`, `_max` where given. Labels are
//! lower-cased with anything outside `[a-z0-9]` turned into `_` (`/` is `root`).

use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct Nagios {
    table: String,
    host: Option<String>,
    service: Option<String>,
}

/// A check's state from its first word(s): `OK`, `DISK WARNING`, ...
fn exit_code_of(text: &str) -> Option<i64> {
    let head = text.split(" - ").next().unwrap_or(text);
    let head = head.split(':').next().unwrap_or(head);
    head.split_whitespace().rev().find_map(|word| match word {
        "OK" => Some(0),
        "WARNING" => Some(1),
        "CRITICAL" => Some(2),
        "UNKNOWN" => Some(3),
        _ => None,
    })
}

fn field_name(label: &str) -> String {
    let label = label.trim_matches('\'');
    if label == "/" {
        // Disk checks label the root filesystem `/`.
        return "root".into();
    }
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_matches('_');
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("perf_{name}")
    } else {
        name.to_string()
    }
}

/// One perfdata item: its label and `value;warn;crit;min;max` (all but the
/// value optional).
type PerfItem = (String, Vec<Option<f64>>);

/// Splits perfdata into `label=value;warn;crit;min;max` items; labels may be
/// single-quoted and contain spaces.
fn perf_items(perf: &str) -> Result<Vec<PerfItem>, String> {
    let mut items = Vec::new();
    let mut rest = perf.trim();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted
                .find("'=")
                .ok_or_else(|| format!("perfdata {rest:?}: unterminated quoted label"))?;
            (&quoted[..end], &quoted[end + 2..])
        } else {
            let eq = rest
                .find('=')
                .ok_or_else(|| format!("perfdata {rest:?}: expected label=value"))?;
            (&rest[..eq], &rest[eq + 1..])
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let spec = &after[..end];
        rest = after[end..].trim_start();
        let mut parts = spec.split(';');
        let value = parts.next().unwrap_or("");
        let number_end = value
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(value.len());
        let mut numbers =
            vec![Some(value[..number_end].parse::<f64>().map_err(|_| {
                format!("perfdata {label:?}: value {value:?} is not a number")
            })?)];
        numbers.extend(parts.map(|p| p.parse::<f64>().ok()));
        items.push((label.to_string(), numbers));
    }
    Ok(items)
}

impl Nagios {
    fn check(
        &self,
        out: &mut EventsBuilder,
        host: Option<&str>,
        service: &str,
        code: Option<i64>,
        output: &str,
    ) -> Result<(), String> {
        let mut lines = output.lines();
        let first = lines.next().unwrap_or("").trim();
        let (text, mut perf) = match first.split_once('|') {
            Some((text, perf)) => (text.trim(), perf.trim().to_string()),
            None => (first, String::new()),
        };
        for line in lines {
            if let Some((_, more)) = line.split_once('|') {
                perf.push(' ');
                perf.push_str(more.trim());
            }
        }
        let code = code.or_else(|| exit_code_of(text)).ok_or_else(|| {
            format!("cannot tell the state of {text:?}: expected OK, WARNING, CRITICAL or UNKNOWN")
        })?;
        if !(0..=3).contains(&code) {
            return Err(format!("return code {code} is not a Nagios state (0-3)"));
        }
        let items = perf_items(&perf)?;
        let mut event = out.event(&self.table, 0);
        if let Some(host) = host {
            event.tag("host", host);
        }
        event
            .tag("service_name", service)
            .tag("status", if code == 0 { "healthy" } else { "unhealthy" })
            .field_i64("exit_code", code)
            .field_str("message", text);
        for (label, numbers) in items {
            let name = field_name(&label);
            for (suffix, number) in ["", "_warn", "_crit", "_min", "_max"].iter().zip(numbers) {
                if let Some(number) = number.filter(|n| n.is_finite()) {
                    event.field_f64(&format!("{name}{suffix}"), number);
                }
            }
        }
        Ok(())
    }
}

impl Adapter for Nagios {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            table: config.get_or("table", "checks").to_string(),
            host: config.get("host").map(str::to_string),
            service: config.get("service").map(str::to_string),
        })
    }

    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
        let text = input.text()?;
        if text.trim().is_empty() {
            return Err("empty body: expected Nagios plugin output".into());
        }
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.split('\t').count() == 4)
        {
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let fields: Vec<&str> = line.split('\t').collect();
                let code = fields[2].trim().parse::<i64>().map_err(|_| {
                    format!(
                        "line {}: return code {:?} is not a number",
                        n + 1,
                        fields[2]
                    )
                })?;
                self.check(out, Some(fields[0]), fields[1], Some(code), fields[3])
                    .map_err(|e| format!("line {}: {e}", n + 1))?;
            }
            return Ok(());
        }
        let service = self
            .service
            .clone()
            .ok_or("plain plugin output needs the `service` config key (or send_nsca lines)")?;
        let host = self.host.clone();
        self.check(out, host.as_deref(), &service, None, text)
    }
}

weir_sdk::export_adapter!(Nagios);

#[cfg(test)]
mod tests {
    use weir_sdk::testing;

    use super::*;

    fn adapter(pairs: &[(&str, &str)]) -> Nagios {
        Nagios::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    #[test]
    fn plugin_output_with_perfdata() {
        let mut a = adapter(&[("service", "disk"), ("host", "web-1")]);
        let out = testing::adapt(
            &mut a,
            "text/plain",
            b"DISK WARNING - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968 'inode use'=12%;80;90\nmore detail\n| /boot=68MB;88;93;0;98",
        )
        .unwrap();
        let events = testing::events(&out).unwrap();
        let e = &events[0];
        assert_eq!(e.tag("status"), Some("unhealthy"));
        assert_eq!(e.tag("host"), Some("web-1"));
        assert_eq!(e.field_i64("exit_code"), Some(1));
        assert_eq!(e.field_f64("root"), Some(2643.0));
        assert_eq!(e.field_f64("root_max"), Some(5968.0));
        assert_eq!(e.field_f64("inode_use_crit"), Some(90.0));
        assert_eq!(e.field_f64("boot"), Some(68.0));
        assert_eq!(
            e.field_str("message"),
            Some("DISK WARNING - free space: / 3326 MB (56%)")
        );
    }

    #[test]
    fn nsca_lines_and_errors() {
        let mut a = adapter(&[]);
        let out = testing::adapt(&mut a, "", b"web-1\thttp\t0\tHTTP OK - 200 in 0.1s | time=0.1s;1;2\nweb-2\thttp\t2\tCRITICAL - down\n").unwrap();
        let events = testing::events(&out).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].tag("status"), Some("healthy"));
        assert_eq!(events[0].field_f64("time"), Some(0.1));
        assert_eq!(events[1].tag("host"), Some("web-2"));

        assert!(
            testing::adapt(&mut a, "", b"OK - fine")
                .unwrap_err()
                .contains("service")
        );
        let mut a = adapter(&[("service", "x")]);
        assert!(
            testing::adapt(&mut a, "", b"all good")
                .unwrap_err()
                .contains("cannot tell")
        );
        assert!(
            testing::adapt(&mut a, "", b"OK - x | a=zz")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            testing::adapt(&mut a, "", b"h\ts\tnine\tOK")
                .unwrap_err()
                .contains("line 1")
        );
    }
}
