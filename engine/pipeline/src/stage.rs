//! Stages and the per-table chain that runs them.

use std::sync::Arc;

use weir_model::TableBatch;
use weir_plugins::{Plugin, PluginKind, convert};

use crate::{DeadLetter, Error, Result};

/// What a pipeline does when a stage fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Fail the write with the stage's error; nothing is stored.
    #[default]
    Reject,
    /// Skip the failed stage: the batch goes on as the stage received it.
    PassThrough,
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reject" => Ok(Self::Reject),
            "pass-through" => Ok(Self::PassThrough),
            other => Err(format!(
                "unknown failure policy {other:?} (reject or pass-through)"
            )),
        }
    }
}

/// Why a stage did not produce a batch.
#[derive(Debug, Clone)]
pub struct StageError {
    /// Short cause for counters and the dead-letter table (`rejected`,
    /// `trap`, `timeout`, `memory_limit`, ...).
    pub reason: &'static str,
    pub message: String,
    /// The plugin said no (vs. a fault of the plugin itself).
    pub rejected: bool,
}

/// One step of a table's pipeline; called once per batch.
pub trait Stage: Send + Sync {
    fn name(&self) -> &str;
    fn process(&self, batch: &TableBatch, now_ns: i64) -> Result<TableBatch, StageError>;
}

/// A filter or enricher plugin as a stage.
pub struct WasmStage {
    plugin: Arc<Plugin>,
}

impl WasmStage {
    /// Fails unless the plugin is a filter or an enricher.
    pub fn new(plugin: Arc<Plugin>) -> Result<Self> {
        if plugin.kind() == PluginKind::Adapter {
            return Err(Error::Config(format!(
                "plugin {:?} is an adapter; a table pipeline takes filters and enrichers (adapters belong to sources)",
                plugin.name()
            )));
        }
        Ok(Self { plugin })
    }

    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }
}

pub(crate) fn stage_error(e: weir_plugins::Error) -> StageError {
    StageError {
        reason: e.reason(),
        rejected: matches!(e, weir_plugins::Error::Rejected { .. }),
        message: e.to_string(),
    }
}

impl Stage for WasmStage {
    fn name(&self) -> &str {
        self.plugin.name()
    }

    fn process(&self, batch: &TableBatch, now_ns: i64) -> Result<TableBatch, StageError> {
        match self.plugin.kind() {
            PluginKind::Filter => self.plugin.filter(batch),
            _ => self.plugin.enrich(batch, now_ns),
        }
        .map_err(stage_error)
    }
}

/// The ordered stages of one table, and what to do when one fails.
#[derive(Clone, Default)]
pub struct Pipeline {
    pub(crate) name: String,
    pub(crate) stages: Vec<Arc<dyn Stage>>,
    pub(crate) on_failure: FailurePolicy,
}

impl Pipeline {
    pub fn new(
        name: impl Into<String>,
        stages: Vec<Arc<dyn Stage>>,
        on_failure: FailurePolicy,
    ) -> Self {
        Self {
            name: name.into(),
            stages,
            on_failure,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs `batch` through every stage. Failed stages add a dead letter to
    /// `dead_letters`; under `reject` the first failure is the error.
    /// `Ok(None)` means the filters left no rows.
    pub fn run(
        &self,
        mut batch: TableBatch,
        now_ns: i64,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<Option<TableBatch>> {
        for stage in &self.stages {
            match stage.process(&batch, now_ns) {
                Ok(out) => batch = out,
                Err(e) => {
                    dead_letters.push(DeadLetter {
                        time_ns: now_ns,
                        pipeline: self.name.clone(),
                        plugin: stage.name().to_string(),
                        reason: e.reason,
                        error: e.message.clone(),
                        input_rows: batch.batch.num_rows() as u64,
                        input: convert::batch_as_json(&batch.batch),
                    });
                    match (self.on_failure, e.rejected) {
                        (FailurePolicy::PassThrough, _) => {
                            tracing::warn!(pipeline = %self.name, stage = stage.name(), error = %e.message, "stage failed; passing the batch through");
                        }
                        (FailurePolicy::Reject, true) => {
                            return Err(Error::Rejected {
                                pipeline: self.name.clone(),
                                stage: stage.name().to_string(),
                                message: e.message,
                            });
                        }
                        (FailurePolicy::Reject, false) => {
                            return Err(Error::Failed {
                                pipeline: self.name.clone(),
                                stage: stage.name().to_string(),
                                reason: e.reason,
                                message: e.message,
                            });
                        }
                    }
                }
            }
            if batch.batch.num_rows() == 0 {
                return Ok(None);
            }
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use weir_model::{ColumnType, Value, WriteBatchBuilder};

    use super::*;

    struct Fails(bool);

    impl Stage for Fails {
        fn name(&self) -> &str {
            "fails"
        }
        fn process(&self, _: &TableBatch, _: i64) -> Result<TableBatch, StageError> {
            Err(StageError {
                reason: if self.0 { "rejected" } else { "trap" },
                message: "boom".into(),
                rejected: self.0,
            })
        }
    }

    /// Keeps the first row only.
    struct First;

    impl Stage for First {
        fn name(&self) -> &str {
            "first"
        }
        fn process(&self, batch: &TableBatch, _: i64) -> Result<TableBatch, StageError> {
            Ok(TableBatch {
                batch: batch.batch.slice(0, 1),
                ..batch.clone()
            })
        }
    }

    fn batch() -> TableBatch {
        let mut b = WriteBatchBuilder::new(1);
        let t = b.table("t", "time").unwrap();
        let c = b.column(t, "v", ColumnType::I64, 0).unwrap();
        for row in 0..3 {
            b.begin_point(t, row, 5).unwrap();
            b.set(t, c, row, Value::I64(row as i64)).unwrap();
        }
        b.finish().unwrap().pop().unwrap()
    }

    #[test]
    fn failure_policies_and_dead_letters() {
        let mut dead = Vec::new();
        let reject = Pipeline::new(
            "table:t",
            vec![Arc::new(First), Arc::new(Fails(false))],
            FailurePolicy::Reject,
        );
        let err = reject.run(batch(), 7, &mut dead).unwrap_err();
        assert!(matches!(err, Error::Failed { reason: "trap", .. }), "{err}");
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].plugin.as_str(), dead[0].input_rows, dead[0].time_ns),
            ("fails", 1, 7)
        );
        assert!(dead[0].input.contains("\"v\":0"), "{}", dead[0].input);

        let err = Pipeline::new(
            "table:t",
            vec![Arc::new(Fails(true))],
            FailurePolicy::Reject,
        )
        .run(batch(), 7, &mut dead)
        .unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "{err}");

        let pass = Pipeline::new(
            "table:t",
            vec![Arc::new(Fails(false)), Arc::new(First)],
            FailurePolicy::PassThrough,
        );
        let out = pass.run(batch(), 7, &mut dead).unwrap().unwrap();
        assert_eq!(
            out.batch.num_rows(),
            1,
            "the failed stage was skipped, the next one ran"
        );
        assert_eq!(dead.len(), 3);

        let rows = DeadLetter::to_batches(&dead, "time").unwrap();
        assert_eq!(rows[0].table, crate::DEAD_LETTER_TABLE);
        assert_eq!(rows[0].batch.num_rows(), 3);
    }
}
