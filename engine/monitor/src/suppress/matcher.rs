//! Label matchers, as Alertmanager writes them (`name="v"`, `name!="v"`,
//! `name=~"re"`, `name!~"re"`), and the judgement of how much a matcher can
//! match — decided on the matcher's language, not by trying values.
//!
//! Alertmanager 0.25 accepts `alertname=~".+"`, `alertname!="zzz"` and
//! `alertname!~"zzz"` as silences, and each of them silences every alert.
//! Here a matcher whose language covers every non-empty label value is
//! *universal*, and a target set needs at least one equality matcher on a
//! non-empty value, so neither can be made by accident.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use regex_syntax::hir::{Class, Hir, HirKind};
use serde::{Deserialize, Serialize};

/// The operator of a matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// Alertmanager's `isEqual` / `isRegex` pair.
    pub fn from_flags(is_equal: bool, is_regex: bool) -> Self {
        match (is_equal, is_regex) {
            (true, false) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (false, true) => MatchOp::NotRegex,
        }
    }

    pub fn is_equal(self) -> bool {
        matches!(self, MatchOp::Equal | MatchOp::Regex)
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

/// The longest label name and value a matcher may name, and the most
/// matchers in one set and sets in one suppression: a suppression is a
/// request body, bounded like any other.
pub const MAX_NAME_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 4096;
pub const MAX_MATCHERS_PER_SET: usize = 32;
pub const MAX_SETS: usize = 64;
/// Compiled regex size limit (bytes of program), so a matcher cannot make
/// matching slow or large.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// `name op value`, parsed and (for regexes) compiled, anchored at both ends
/// as in Prometheus.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "MatcherSpec", into = "MatcherSpec")]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

/// A matcher as stored and sent: the three strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatcherSpec {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl TryFrom<MatcherSpec> for Matcher {
    type Error = String;
    fn try_from(spec: MatcherSpec) -> Result<Self, String> {
        Matcher::new(&spec.name, spec.op, &spec.value)
    }
}

impl From<Matcher> for MatcherSpec {
    fn from(m: Matcher) -> Self {
        MatcherSpec {
            name: m.name,
            op: m.op,
            value: m.value,
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "a matcher's label name must be 1 to {MAX_NAME_BYTES} bytes"
            ));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(format!(
                "label name {name:?}: only letters, digits, '_', '.' and '-'"
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "matcher {name}: the value is over {MAX_VALUE_BYTES} bytes"
            ));
        }
        let regex = if op.is_regex() {
            Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("matcher {name}{}{value:?}: {e}", op.as_str()))?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"` (the
    /// value quoted or bare, as amtool and promql write it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (at, op) = ["!=", "=~", "!~", "="]
            .iter()
            .filter_map(|op| text.find(op).map(|at| (at, *op)))
            .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())))
            .ok_or_else(|| {
                format!("{text:?} is not name=value, name!=value, name=~re or name!~re")
            })?;
        let op = match op {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex,
            _ => MatchOp::NotRegex,
        };
        let name = text[..at].trim();
        let raw = text[at + op.as_str().len()..].trim();
        let value = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            serde_json::from_str::<String>(raw)
                .map_err(|e| format!("{text:?}: the quoted value is not valid ({e})"))?
        } else {
            raw.to_string()
        };
        Matcher::new(name, op, &value)
    }

    /// Whether `labels` satisfy this matcher. A missing label is the empty
    /// string, as in Prometheus.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }

    /// An equality on a non-empty value: what pins a set to something.
    pub fn is_pinning(&self) -> bool {
        self.op == MatchOp::Equal && !self.value.is_empty()
    }

    /// Whether this matcher accepts every non-empty value of its label, judged
    /// on its language: `=~` a regex whose language includes every non-empty
    /// string; `!=` the empty string; `!~` a regex that can match nothing
    /// non-empty. (`!= "zzz"` excludes one value; it is not universal, but it
    /// cannot pin a set either — see [`is_pinning`](Self::is_pinning).)
    pub fn is_universal(&self) -> bool {
        match self.op {
            MatchOp::Equal => false,
            MatchOp::NotEqual => self.value.is_empty(),
            MatchOp::Regex => parse_hir(&self.value).is_some_and(|h| accepts_all_nonempty(&h)),
            MatchOp::NotRegex => parse_hir(&self.value).is_some_and(|h| {
                let p = h.properties();
                p.minimum_len().is_none() || p.maximum_len() == Some(0)
            }),
        }
    }
}

fn parse_hir(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(&format!("(?:{pattern})"))
        .ok()
}

/// Whether `hir`'s language contains every non-empty string (ignoring a
/// missing newline: label values are single lines in practice, and `.`
/// without `s` is how people write "anything").
fn accepts_all_nonempty(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Capture(c) => accepts_all_nonempty(&c.sub),
        // `x*`, `x+`, `x{0,}`, `x{1,}` with x matching any one character.
        HirKind::Repetition(r) => r.max.is_none() && r.min <= 1 && is_any_char(&r.sub),
        // Some branch takes everything.
        HirKind::Alternation(branches) => branches.iter().any(accepts_all_nonempty),
        // `.*.*`, `.+.*`: every part takes everything (or nothing but "").
        HirKind::Concat(parts) => {
            parts.iter().any(accepts_all_nonempty)
                && parts
                    .iter()
                    .all(|p| accepts_all_nonempty(p) || accepts_all_or_empty(p) || is_empty_only(p))
        }
        _ => false,
    }
}

/// `x*` with x any character: every string, "" included.
fn accepts_all_or_empty(hir: &Hir) -> bool {
    match hir.kind() {
        HirKind::Capture(c) => accepts_all_or_empty(&c.sub),
        HirKind::Repetition(r) => r.max.is_none() && r.min == 0 && is_any_char(&r.sub),
        _ => false,
    }
}

fn is_empty_only(hir: &Hir) -> bool {
    hir.properties().maximum_len() == Some(0)
}

/// A class of every character, or every character but `\n`.
fn is_any_char(hir: &Hir) -> bool {
    let newline = u32::from(b'\n');
    let (covered, full, has_newline) = match hir.kind() {
        HirKind::Capture(c) => return is_any_char(&c.sub),
        HirKind::Class(Class::Unicode(class)) => (
            class
                .ranges()
                .iter()
                .map(|r| u64::from(r.end()) - u64::from(r.start()) + 1)
                .sum::<u64>(),
            // Every scalar value. Ranges are canonical, so one that spans
            // the surrogate gap counts it: compare with 0x110000.
            0x11_0000,
            class
                .ranges()
                .iter()
                .any(|r| u32::from(r.start()) <= newline && newline <= u32::from(r.end())),
        ),
        HirKind::Class(Class::Bytes(class)) => (
            class
                .ranges()
                .iter()
                .map(|r| u64::from(r.end()) - u64::from(r.start()) + 1)
                .sum::<u64>(),
            256,
            class
                .ranges()
                .iter()
                .any(|r| u32::from(r.start()) <= newline && newline <= u32::from(r.end())),
        ),
        _ => return false,
    };
    covered == full || (covered == full - 1 && !has_newline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_four_operators_quoted_and_bare() {
        assert_eq!(m(r#"service="api""#).op, MatchOp::Equal);
        assert_eq!(m(r#"service!="api""#).op, MatchOp::NotEqual);
        assert_eq!(m(r#"service=~"api|web""#).op, MatchOp::Regex);
        assert_eq!(m("service!~api.*").op, MatchOp::NotRegex);
        assert_eq!(m(r#"a="x=y""#).value, "x=y");
        assert_eq!(m(r#"a="say \"hi\"""#).value, r#"say "hi""#);
        for bad in [
            "",
            "service",
            "=x",
            "sp ace=x",
            "a=~\"(\"",
            &format!("{}=x", "n".repeat(300)),
        ] {
            assert!(Matcher::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matches_like_prometheus_anchored_and_missing_is_empty() {
        let l = labels(&[("service", "api-eu"), ("region", "eu")]);
        assert!(m(r#"service="api-eu""#).matches(&l));
        assert!(!m(r#"service=~"api""#).matches(&l), "anchored");
        assert!(m(r#"service=~"api-.*""#).matches(&l));
        assert!(m(r#"service!~"web.*""#).matches(&l));
        assert!(m(r#"missing="""#).matches(&l));
        assert!(!m(r#"missing=~".+""#).matches(&l));
        assert!(m(r#"region!="us""#).matches(&l));
    }

    #[test]
    fn universal_matchers_are_judged_by_their_language() {
        for universal in [
            r#"alertname=~".+""#,
            r#"alertname=~".*""#,
            r#"a=~"(?s).+""#,
            r#"a=~"(.*)""#,
            r#"a=~".{1,}""#,
            r#"a=~"foo|.*""#,
            r#"a=~".+.*""#,
            r#"a=~"[\\s\\S]+""#,
            r#"a!="""#,
            r#"a!~"""#,
            r#"a!~"^$""#,
            r#"a!~"[^\\s\\S]""#,
        ] {
            assert!(
                m(universal).is_universal(),
                "{universal} should be universal"
            );
        }
        for narrow in [
            r#"a="x""#,
            r#"a=~"x.*""#,
            r#"a=~".*x""#,
            r#"a=~".""#,
            r#"a=~".{0,5}""#,
            r#"a=~"[^x]*""#,
            r#"alertname!="zzz""#,
            r#"alertname!~"zzz""#,
        ] {
            assert!(
                !m(narrow).is_universal(),
                "{narrow} should not be universal"
            );
        }
    }
}
