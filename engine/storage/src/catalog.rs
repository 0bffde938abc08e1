//! The catalog: tables, their schemas, their Parquet files, and how far the
//! WAL is persisted. One JSON file, replaced atomically (write, fsync,
//! rename, fsync directory), so a crash leaves the old catalog or the new one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use weir_model::TableSchema;

use crate::fsutil::write_atomic;
use crate::{Error, Result};

const FORMAT_VERSION: u32 = 1;

/// One Parquet file of a table: a slice of one time partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: u64,
    /// Relative to the data directory.
    pub path: String,
    /// Partition index: days since the Unix epoch (UTC).
    pub partition: i64,
    /// Smallest and largest timestamp in the file, ns.
    pub min_time: i64,
    pub max_time: i64,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Names the table's directory; table names may hold any character.
    pub id: u64,
    pub schema: TableSchema,
    pub files: Vec<FileMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub format_version: u32,
    /// Every WAL segment up to and including this one is in Parquet.
    /// Segment ids start at 1, so 0 means "none".
    pub wal_persisted_through: u64,
    pub next_table_id: u64,
    pub next_file_id: u64,
    pub tables: BTreeMap<String, TableEntry>,
    /// Each rollup's table and the definition it was built under
    /// ([`RollupDef::fingerprint`](crate::RollupDef::fingerprint)).
    #[serde(default)]
    pub rollups: BTreeMap<String, String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            wal_persisted_through: 0,
            next_table_id: 1,
            next_file_id: 1,
            tables: BTreeMap::new(),
            rollups: BTreeMap::new(),
        }
    }
}

impl Catalog {
    /// Loads the catalog at `path`; a missing file is an empty catalog.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let catalog: Catalog = serde_json::from_slice(&bytes).map_err(|e| Error::Catalog {
            path: path.to_path_buf(),
            reason: format!("not a valid catalog: {e}"),
        })?;
        if catalog.format_version != FORMAT_VERSION {
            return Err(Error::Catalog {
                path: path.to_path_buf(),
                reason: format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION})",
                    catalog.format_version
                ),
            });
        }
        Ok(catalog)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Catalog {
            path: path.to_path_buf(),
            reason: format!("serializing: {e}"),
        })?;
        write_atomic(path, &json)
    }

    /// The entry of `table`, created with `time_column` if new.
    pub fn table_mut(&mut self, table: &str, time_column: &str) -> &mut TableEntry {
        let next_id = &mut self.next_table_id;
        self.tables.entry(table.to_string()).or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            TableEntry {
                id,
                schema: TableSchema::new(table, time_column),
                files: Vec::new(),
            }
        })
    }

    pub fn files(&self) -> impl Iterator<Item = &FileMeta> {
        self.tables.values().flat_map(|t| t.files.iter())
    }
}

#[cfg(test)]
mod tests {
    use weir_model::{ColumnDef, ColumnType};

    use super::*;

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        assert_eq!(Catalog::load(&path).unwrap(), Catalog::default());
        let mut catalog = Catalog::default();
        let entry = catalog.table_mut("service_metrics", "recorded_at");
        entry.schema.add_columns([ColumnDef {
            name: "service_name".into(),
            column_type: ColumnType::Tag,
        }]);
        entry.files.push(FileMeta {
            id: 3,
            path: "tables/1/2026-11-20/000000000003.parquet".into(),
            partition: 20_412,
            min_time: 1,
            max_time: 2,
            rows: 2,
            bytes: 100,
        });
        catalog.wal_persisted_through = 4;
        catalog.save(&path).unwrap();
        assert_eq!(Catalog::load(&path).unwrap(), catalog);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Catalog::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a valid catalog"), "{err}");
    }
}
