use std::fmt;

use crate::{Error, Result};

/// Longest accepted table or column name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest accepted tag value, in bytes. Tags are series identity, stored
/// dictionary-encoded; a megabyte "tag" is a field in disguise.
pub const MAX_TAG_VALUE_BYTES: usize = 4096;

/// Tables whose names start with this are Weir's own (`weir_plugins`,
/// `weir_dead_letters`, and those the monitor adds). Clients, importers and
/// plugins may not write them: a query answers a system table from Weir's
/// state, so a client row stored under such a name would be acknowledged and
/// never seen, and a client-made table would fix the column types Weir later
/// needs. The prefix is reserved case-insensitively, since SQL folds
/// unquoted names to lower case.
pub const SYSTEM_TABLE_PREFIX: &str = "weir_";

/// True for names reserved for Weir's system tables (see [`SYSTEM_TABLE_PREFIX`]).
pub fn is_system_table(name: &str) -> bool {
    name.len() >= SYSTEM_TABLE_PREFIX.len()
        && name.as_bytes()[..SYSTEM_TABLE_PREFIX.len()]
            .eq_ignore_ascii_case(SYSTEM_TABLE_PREFIX.as_bytes())
}

/// Refuses a table name reserved for Weir itself, for writes from outside.
pub fn check_not_system_table(name: &str) -> Result<()> {
    if is_system_table(name) {
        return Err(Error::InvalidName {
            kind: NameKind::Table,
            name: truncate_for_message(name),
            reason: "names starting with \"weir_\" are reserved for Weir's system tables",
        });
    }
    Ok(())
}

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
    fn system_table_names_are_reserved_in_any_case() {
        for name in [
            "weir_plugins",
            "weir_dead_letters",
            "WEIR_X",
            "Weir_",
            "weir_é",
        ] {
            assert!(is_system_table(name), "{name}");
            let err = check_not_system_table(name).unwrap_err().to_string();
            assert!(err.contains("reserved"), "{err}");
        }
        for name in ["weir", "weirs_table", "my_weir_plugins", "wei", "", "é"] {
            assert!(!is_system_table(name), "{name}");
            check_not_system_table(name).unwrap();
        }
    }

    #[test]
    fn long_names_are_truncated_in_messages() {
        let long = "é".repeat(200);
        let err = validate_name(NameKind::Table, &long).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
