//! Unit-testing plugin logic natively, with plain `cargo test`.
//!
//! These run a plugin the way the host does (the same batch checks and the
//! same output assembly), minus the WebAssembly. Build input batches with
//! [`EventsBuilder`](crate::EventsBuilder) and read results with
//! [`Events`](crate::Events); see the examples on [`Filter`](crate::Filter),
//! [`Enricher`](crate::Enricher) and [`Adapter`](crate::Adapter).

use crate::build::ColumnsBuilder;
use crate::plugin::{run_adapter, run_enricher, run_filter};
use crate::types::Batch;
use crate::view::{Event, Events};
use crate::{Adapter, Enricher, Filter};

/// The rows of `batch` that `plugin` keeps.
pub fn filter<F: Filter>(plugin: &mut F, batch: &Batch) -> Result<Vec<usize>, String> {
    Ok(run_filter(plugin, batch)?
        .into_iter()
        .map(|row| row as usize)
        .collect())
}

/// `batch` with `plugin`'s changes applied, as the host applies them: a set
/// value replaces the event's value, an unset one leaves it alone.
pub fn enrich<E: Enricher>(plugin: &mut E, batch: &Batch) -> Result<Batch, String> {
    let changes = Batch {
        table: batch.table.clone(),
        time: batch.time.clone(),
        columns: run_enricher(plugin, batch)?,
    };
    let before = Events::new(batch)?;
    let after = Events::new(&changes)?;
    let mut merged = ColumnsBuilder::default();
    for row in 0..before.len() {
        let values = before.event(row).values().chain(after.event(row).values());
        for (name, value) in values {
            merged.set(row, name, value)?;
        }
    }
    Ok(Batch {
        table: batch.table.clone(),
        time: batch.time.clone(),
        columns: merged.finish(before.len()),
    })
}

/// The batches `plugin` makes of one body.
pub fn adapt<A: Adapter>(
    plugin: &mut A,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<Batch>, String> {
    run_adapter(plugin, content_type, body)
}

/// Every event of `batches`, for assertions.
pub fn events(batches: &[Batch]) -> Result<Vec<Event<'_>>, String> {
    let mut all = Vec::new();
    for batch in batches {
        all.extend(Events::new(batch)?.iter());
    }
    Ok(all)
}
