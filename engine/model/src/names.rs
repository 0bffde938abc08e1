use std::fmt;

use crate::{Error, Result};

/// Longest accepted table or column name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest accepted tag value, in bytes. Tags are series identity, stored
/// dictionary-encoded; a megabyte "tag" is a field in disguise.
pub const MAX_TAG_VALUE_BYTES: usize = 4096;

/// What a name names, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Table,
    Column,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Table => "table",
            NameKind::Column => "column",
        })
    }
}

/// Checks a table or column name against Weir's naming policy: 1..=256 bytes,
/// no control characters, not blank.
pub fn validate_name(kind: NameKind, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.trim().is_empty() {
        Some("must not be blank")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            kind,
            name: truncate_for_message(name),
            reason,
        }),
    }
}

/// Keeps error messages bounded when the offending input is huge.
fn truncate_for_message(s: &str) -> String {
    const LIMIT: usize = 80;
    if s.len() <= LIMIT {
        return s.to_string();
    }
    let mut end = LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["service_metrics", "cpu.load", "Ünïcode", "a b"] {
            validate_name(NameKind::Table, name).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names_with_reason() {
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        for (name, reason) in [
            ("", "must not be empty"),
            ("  ", "must not be blank"),
            ("a\nb", "contains a control character"),
            ("nul\0", "contains a control character"),
            (long.as_str(), "longer than 256 bytes"),
        ] {
            match validate_name(NameKind::Column, name) {
                Err(Error::InvalidName { reason: got, .. }) => assert_eq!(got, reason, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn long_names_are_truncated_in_messages() {
        let long = "é".repeat(200);
        let err = validate_name(NameKind::Table, &long).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
