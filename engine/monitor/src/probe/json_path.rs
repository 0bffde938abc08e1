//! The small JSON path a health check needs: `$.status`,
//! `$.checks[0].state`, `$["key with dots"]`.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not a JSON path like $.a.b[0] ({why})");
        let mut rest = text
            .strip_prefix('$')
            .ok_or_else(|| bad("it must start with $"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                if end == 0 {
                    return Err(bad("empty key"));
                }
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix("[\"") {
                let end = after.find("\"]").ok_or_else(|| bad("unclosed [\""))?;
                steps.push(Step::Key(after[..end].to_string()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| bad("unclosed ["))?;
                let index = after[..end]
                    .parse()
                    .map_err(|_| bad("an index is a number"))?;
                steps.push(Step::Index(index));
                rest = &after[end + 1..];
            } else {
                return Err(bad("expected . or ["));
            }
        }
        Ok(Self {
            text: text.to_string(),
            steps,
        })
    }

    pub fn find<'a>(&self, mut doc: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        for step in &self.steps {
            doc = match step {
                Step::Key(key) => doc.as_object()?.get(key)?,
                Step::Index(i) => doc.as_array()?.get(*i)?,
            };
        }
        Some(doc)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let doc = serde_json::json!({"a": {"b": [10, {"c": true}]}, "x.y": "dots"});
        let find = |p: &str| JsonPath::parse(p).unwrap().find(&doc).cloned();
        assert_eq!(find("$"), Some(doc.clone()));
        assert_eq!(find("$.a.b[0]"), Some(serde_json::json!(10)));
        assert_eq!(find("$.a.b[1].c"), Some(serde_json::json!(true)));
        assert_eq!(find("$[\"x.y\"]"), Some(serde_json::json!("dots")));
        assert_eq!(find("$.a.b[5]"), None);
        assert_eq!(find("$.a[0]"), None);
        for bad in ["a", "$.", "$..a", "$[x]", "$[1", "$[\"a", "$a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
