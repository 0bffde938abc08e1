//! Weir's write pipeline: the ordered stages a write passes between decoding
//! and the WAL.
//!
//! What flows in: the decoded, validated [`TableBatch`]es of one write
//! request. What flows out: the batches to store (possibly fewer rows, more
//! columns), or an [`Error`] naming the stage that refused them, which fails
//! the write before anything is acknowledged.
//!
//! A [`Stage`] sees a whole request at once — one call per batch, never per
//! event — which is the contract the WebAssembly plugin host (adapters,
//! filters, enrichers) plugs into. Stages run inside the acknowledgement: a
//! client's ack means its rows went through every stage and are durable.

use std::sync::Arc;

use weir_model::TableBatch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pipeline stage {stage:?} rejected the batch: {message}")]
    Rejected { stage: String, message: String },

    #[error("pipeline stage {stage:?} failed: {message}")]
    Failed { stage: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One step of the pipeline.
pub trait Stage: Send + Sync {
    fn name(&self) -> &str;
    /// Transforms one request's batches.
    fn process(&self, batches: Vec<TableBatch>) -> Result<Vec<TableBatch>>;
}

/// An ordered chain of stages. The empty pipeline passes batches through.
#[derive(Clone, Default)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
}

impl Pipeline {
    pub fn new(stages: Vec<Arc<dyn Stage>>) -> Self {
        Self { stages }
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    pub fn run(&self, mut batches: Vec<TableBatch>) -> Result<Vec<TableBatch>> {
        for stage in &self.stages {
            batches = stage.process(batches)?;
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use weir_model::{ColumnType, Value, WriteBatchBuilder};

    use super::*;

    /// Keeps only the rows of one table, as a filter plugin would drop events.
    struct OnlyTable(&'static str);

    impl Stage for OnlyTable {
        fn name(&self) -> &str {
            "only-table"
        }
        fn process(&self, batches: Vec<TableBatch>) -> Result<Vec<TableBatch>> {
            Ok(batches.into_iter().filter(|b| b.table == self.0).collect())
        }
    }

    struct Refuse;

    impl Stage for Refuse {
        fn name(&self) -> &str {
            "refuse"
        }
        fn process(&self, _: Vec<TableBatch>) -> Result<Vec<TableBatch>> {
            Err(Error::Rejected {
                stage: self.name().into(),
                message: "no".into(),
            })
        }
    }

    fn two_tables() -> Vec<TableBatch> {
        let mut b = WriteBatchBuilder::new(1);
        for (row, name) in ["a", "b"].into_iter().enumerate() {
            let t = b.table(name, "time").unwrap();
            let c = b.column(t, "v", ColumnType::I64, row).unwrap();
            b.begin_point(t, row, 1).unwrap();
            b.set(t, c, row, Value::I64(1)).unwrap();
        }
        b.finish().unwrap()
    }

    #[test]
    fn stages_run_in_order_and_errors_name_the_stage() {
        let keep_b = Pipeline::new(vec![Arc::new(OnlyTable("b"))]);
        let out = keep_b.run(two_tables()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].table, "b");

        let refusing = Pipeline::new(vec![Arc::new(OnlyTable("b")), Arc::new(Refuse)]);
        let err = refusing.run(two_tables()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pipeline stage \"refuse\" rejected the batch: no"
        );
        assert_eq!(Pipeline::default().run(two_tables()).unwrap().len(), 2);
    }
}
