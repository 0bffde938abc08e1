//! The write buffer: what is durable in the WAL but not yet in Parquet, kept
//! as Arrow batches per table, queryable the moment a write is acknowledged.
//!
//! The buffer is a queue of generations. New batches go to the last (active)
//! generation. Persistence freezes the active generation (on the WAL thread,
//! see `wal.rs`), writes it to Parquet and removes it — in the same critical
//! section that adds its files to the catalog, so a query sees every row
//! exactly once: in the buffer or in a file.

use std::collections::{HashMap, VecDeque};

use crate::wal::WalTable;

#[derive(Debug, Default)]
pub(crate) struct Generation {
    pub id: u64,
    /// Set when frozen: the last WAL segment whose records are in here.
    pub through_segment: Option<u64>,
    /// Per table, its batches with their time spans.
    pub tables: HashMap<String, Vec<WalTable>>,
    pub bytes: usize,
    pub rows: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Buffer {
    active: Generation,
    /// Oldest first.
    frozen: VecDeque<Generation>,
}

impl Buffer {
    pub fn append(&mut self, rows: WalTable) {
        let active = &mut self.active;
        active.bytes += rows.batch.get_array_memory_size();
        active.rows += rows.batch.num_rows();
        match active.tables.get_mut(&rows.table) {
            Some(batches) => batches.push(rows),
            None => {
                active.tables.insert(rows.table.clone(), vec![rows]);
            }
        }
    }

    /// Freezes the active generation; false if it holds nothing.
    pub fn freeze(&mut self, through_segment: u64) -> bool {
        if self.active.rows == 0 {
            return false;
        }
        let next = Generation {
            id: self.active.id + 1,
            ..Generation::default()
        };
        let mut frozen = std::mem::replace(&mut self.active, next);
        frozen.through_segment = Some(through_segment);
        self.frozen.push_back(frozen);
        true
    }

    /// The oldest frozen generation, the next to persist.
    pub fn oldest_frozen(&self) -> Option<&Generation> {
        self.frozen.front()
    }

    pub fn remove_frozen(&mut self, id: u64) {
        self.frozen.retain(|g| g.id != id);
    }

    fn generations(&self) -> impl Iterator<Item = &Generation> {
        self.frozen.iter().chain(std::iter::once(&self.active))
    }

    /// Every buffered batch of `table`, oldest first.
    pub fn batches(&self, table: &str) -> Vec<WalTable> {
        self.generations()
            .filter_map(|g| g.tables.get(table))
            .flatten()
            .cloned()
            .collect()
    }

    /// Bytes of the generation now filling.
    pub fn active_bytes(&self) -> usize {
        self.active.bytes
    }

    pub fn bytes(&self) -> usize {
        self.generations().map(|g| g.bytes).sum()
    }

    pub fn rows(&self) -> usize {
        self.generations().map(|g| g.rows).sum()
    }
}
