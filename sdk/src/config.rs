//! A plugin's configuration.

use std::str::FromStr;

/// The key/value pairs a pipeline stage gives its plugin at `init`.
///
/// ```
/// use weir_sdk::Config;
///
/// let config = Config::from_pairs([("min-age", "30s"), ("key.0", "service")]);
/// assert_eq!(config.get("min-age"), Some("30s"));
/// assert_eq!(config.parse::<u32>("missing").unwrap(), None);
/// assert!(config.require("table").unwrap_err().contains("table"));
/// assert_eq!(config.with_prefix("key.").collect::<Vec<_>>(), [("0", "service")]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The value of `key`; the last one wins if it is given twice.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing required config key {key:?}"))
    }

    /// Parses the value of `key`; `Ok(None)` if it is absent.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|e| format!("config key {key:?} = {v:?}: {e}"))
            })
            .transpose()
    }

    /// A comma-separated list (`key = "service_name, region"`), trimmed,
    /// empty items dropped; `default` when the key is absent.
    ///
    /// ```
    /// use weir_sdk::Config;
    ///
    /// let config = Config::from_pairs([("key", "service_name, region,")]);
    /// assert_eq!(config.list("key", "host"), ["service_name", "region"]);
    /// assert_eq!(config.list("other", "host"), ["host"]);
    /// ```
    pub fn list(&self, key: &str, default: &str) -> Vec<String> {
        self.get_or(key, default)
            .split(',')
            .map(|item| item.trim().to_string())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// The pairs whose key starts with `prefix`, with the prefix removed.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.pairs
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.as_str())))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
