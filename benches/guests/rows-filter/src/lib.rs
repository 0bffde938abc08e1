//! The threshold filter of `threshold-filter`, over one record per event.

wit_bindgen::generate!({ path: "../../wit/rows.wit", world: "rows-filter" });

use exports::weir_bench::rows::filter::{Event, FieldValue, Guest};

struct Rows;

impl Guest for Rows {
    fn filter(events: Vec<Event>) -> Vec<u32> {
        let mut kept = Vec::new();
        for (row, event) in events.iter().enumerate() {
            let mut status = None;
            let mut ms = None;
            for (key, value) in &event.fields {
                match (key.as_str(), value) {
                    ("status", FieldValue::String(s)) => status = Some(s.as_str()),
                    ("response_ms", FieldValue::F64(v)) => ms = Some(*v),
                    _ => {}
                }
            }
            if status != Some("healthy") || ms.is_some_and(|ms| ms > 400.0) {
                kept.push(row as u32);
            }
        }
        kept
    }
}

export!(Rows);
