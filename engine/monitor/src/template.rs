//! `${…}` placeholders in an alert's summary, description, runbook and
//! labels. Templates are parsed when the rule is loaded, and every
//! placeholder must name something the rule will have: a typo is a config
//! error at load, not an empty string in a page at 3 a.m.
//!
//! | placeholder | is |
//! |---|---|
//! | `${labels.NAME}` | the alert's label `NAME` (a string column of the rule's answer, or a static label) |
//! | `${value}` | the `value` column of the alert's row, or empty |
//! | `${rule.name}` | the rule's name |
//! | `${rule.priority}` | `high` or `low` |
//!
//! Events (see `events`) say the same in their own words:
//! `${alert.monitor}` (the rule's name is the monitor's),
//! `${alert.priority}`, and `${context.NAME}` for `${labels.NAME}`.
//!
//! `$$` writes a literal `$`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::{Result, config_error};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Label(String),
    Value,
    RuleName,
    RulePriority,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template is rendered with.
pub struct Context<'a> {
    pub rule: &'a str,
    pub priority: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub value: Option<f64>,
}

/// The label names a rule's alerts will carry, if they can be known before
/// the rule runs (`None`: the query selects `*`, so any name may exist).
pub type KnownLabels<'a> = Option<&'a BTreeSet<String>>;

impl Template {
    /// Parses `text`; `what` names it in errors (`rules.x.summary`).
    pub fn parse(what: &str, text: &str, labels: KnownLabels<'_>) -> Result<Self> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("$$") {
                literal.push('$');
                rest = after;
                continue;
            }
            let Some(body) = rest.strip_prefix("${") else {
                literal.push('$');
                rest = &rest[1..];
                continue;
            };
            let Some(end) = body.find('}') else {
                return Err(config_error(
                    what,
                    format!("unclosed placeholder in {text:?} (write $$ for a literal $)"),
                ));
            };
            let name = body[..end].trim();
            let part = match name {
                "value" => Part::Value,
                "rule.name" | "alert.monitor" => Part::RuleName,
                "rule.priority" | "alert.priority" => Part::RulePriority,
                _ => match label_placeholder(what, name, labels)? {
                    Some(label) => Part::Label(label),
                    None => {
                        return Err(config_error(
                            what,
                            format!(
                                "unknown placeholder ${{{name}}}; known: ${{labels.NAME}}, ${{value}}, ${{rule.name}}, ${{rule.priority}}"
                            ),
                        ));
                    }
                },
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &body[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    pub fn render(&self, cx: &Context<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Label(name) => {
                    if let Some(v) = cx.labels.get(name) {
                        out.push_str(v);
                    }
                }
                Part::Value => {
                    if let Some(v) = cx.value {
                        let _ = write!(out, "{v}");
                    }
                }
                Part::RuleName => out.push_str(cx.rule),
                Part::RulePriority => out.push_str(cx.priority),
            }
        }
        out
    }
}

/// The label a `labels.NAME` or `context.NAME` placeholder names, checked
/// against the labels the alerts will have when those are known; `None`
/// when `name` is not a label placeholder. Templates and the bound SQL of
/// context collectors resolve labels alike.
pub(crate) fn label_placeholder(
    what: &str,
    name: &str,
    labels: KnownLabels<'_>,
) -> Result<Option<String>> {
    let Some(label) = name
        .strip_prefix("labels.")
        .or_else(|| name.strip_prefix("context."))
        .filter(|label| !label.is_empty())
    else {
        return Ok(None);
    };
    if let Some(known) = labels
        && !known.contains(label)
    {
        return Err(config_error(
            what,
            format!(
                "unknown placeholder ${{{name}}}: the alerts have labels {}",
                list(known)
            ),
        ));
    }
    Ok(Some(label.to_string()))
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_every_placeholder() {
        let known = labels(&["service_name"]);
        let t = Template::parse(
            "t",
            "${rule.name}/${rule.priority}: ${labels.service_name} at ${value} ms, $$5",
            Some(&known),
        )
        .unwrap();
        let values = BTreeMap::from([("service_name".to_string(), "api".to_string())]);
        let cx = Context {
            rule: "down",
            priority: "high",
            labels: &values,
            value: Some(12.5),
        };
        assert_eq!(t.render(&cx), "down/high: api at 12.5 ms, $5");
    }

    #[test]
    fn unknown_placeholders_are_load_errors() {
        let known = labels(&["service_name"]);
        for bad in [
            "${labels.servce_name}",
            "${lables.x}",
            "${valu}",
            "${}",
            "${labels.}",
            "${rule.owner}",
            "unclosed ${value",
        ] {
            let err = Template::parse("rules.x.summary", bad, Some(&known))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("rules.x.summary: "), "{bad}: {err}");
        }
        // With `SELECT *` any label may exist.
        Template::parse("t", "${labels.anything}", None).unwrap();
        // A lone `$` is text.
        let t = Template::parse("t", "costs $5", Some(&known)).unwrap();
        let none = BTreeMap::new();
        let cx = Context {
            rule: "r",
            priority: "low",
            labels: &none,
            value: None,
        };
        assert_eq!(t.render(&cx), "costs $5");
    }
}
