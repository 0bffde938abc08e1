//! weir-query against a real store: one test binary, one module per topic.

mod limits;
mod pruning;
