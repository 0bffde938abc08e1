//! Host bindings generated from `sdk/wit/plugin.wit` — the same file the
//! guests' `wit-bindgen` reads. One module per world; the enricher and
//! adapter worlds reuse the filter world's `types` and `log` modules, so a
//! batch converted once can go to any kind of plugin.

pub mod filter {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "filter-plugin",
    });
}

pub mod enricher {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "enricher-plugin",
        with: {
            "weir:plugin/types": crate::bindings::filter::weir::plugin::types,
            "weir:plugin/log": crate::bindings::filter::weir::plugin::log,
        },
    });
}

pub mod adapter {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "adapter-plugin",
        with: {
            "weir:plugin/types": crate::bindings::filter::weir::plugin::types,
            "weir:plugin/log": crate::bindings::filter::weir::plugin::log,
        },
    });
}

pub use filter::weir::plugin::log;
pub use filter::weir::plugin::types;
