//! weir-query against a real store: one test binary, one module per topic.

#[path = "query/limits.rs"]
mod limits;
#[path = "query/pruning.rs"]
mod pruning;
#[path = "query/rollup.rs"]
mod rollup;
