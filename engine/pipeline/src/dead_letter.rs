//! Batches a stage failed on, kept where SQL can reach them.

use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};

/// The table dead letters are written to.
pub const DEAD_LETTER_TABLE: &str = "weir_dead_letters";

/// The most input kept per dead letter; the rest is cut with a note.
const MAX_INPUT_BYTES: usize = 1 << 20;

/// One failed stage call: who failed, why, and the input it failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub time_ns: i64,
    /// `table:<name>` or `source:<name>`.
    pub pipeline: String,
    pub plugin: String,
    pub reason: &'static str,
    pub error: String,
    /// Events in the failed batch (0 for a raw body).
    pub input_rows: u64,
    /// The batch as JSON lines, or a raw body as (lossy) UTF-8.
    pub input: String,
}

impl DeadLetter {
    /// Rows for [`DEAD_LETTER_TABLE`]: tags `pipeline`, `plugin`, `reason`;
    /// fields `error`, `input_rows`, `input`.
    pub fn to_batches(
        letters: &[DeadLetter],
        time_column: &str,
    ) -> weir_model::Result<Vec<TableBatch>> {
        let mut builder = WriteBatchBuilder::for_system_tables(0);
        let t = builder.table(DEAD_LETTER_TABLE, time_column)?;
        let pipeline = builder.column(t, "pipeline", ColumnType::Tag, 0)?;
        let plugin = builder.column(t, "plugin", ColumnType::Tag, 0)?;
        let reason = builder.column(t, "reason", ColumnType::Tag, 0)?;
        let error = builder.column(t, "error", ColumnType::String, 0)?;
        let input_rows = builder.column(t, "input_rows", ColumnType::U64, 0)?;
        let input = builder.column(t, "input", ColumnType::String, 0)?;
        for (row, letter) in letters.iter().enumerate() {
            builder.begin_point(t, row, letter.time_ns)?;
            builder.set(t, pipeline, row, Value::Tag(&letter.pipeline))?;
            builder.set(t, plugin, row, Value::Tag(&letter.plugin))?;
            builder.set(t, reason, row, Value::Tag(letter.reason))?;
            builder.set(t, error, row, Value::String(&letter.error))?;
            builder.set(t, input_rows, row, Value::U64(letter.input_rows))?;
            builder.set(t, input, row, Value::String(&cap(&letter.input)))?;
        }
        builder.finish()
    }

    /// A dead letter for a raw body an adapter failed on.
    pub fn raw(
        time_ns: i64,
        pipeline: String,
        plugin: String,
        e: &weir_plugins::Error,
        body: &[u8],
    ) -> Self {
        Self {
            time_ns,
            pipeline,
            plugin,
            reason: e.reason(),
            error: e.to_string(),
            input_rows: 0,
            input: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

fn cap(input: &str) -> std::borrow::Cow<'_, str> {
    if input.len() <= MAX_INPUT_BYTES {
        return input.into();
    }
    let mut end = MAX_INPUT_BYTES;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} more bytes cut]", &input[..end], input.len() - end).into()
}
