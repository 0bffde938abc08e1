//! The code `wit-bindgen` generates from `wit/`. Authors never touch it; the
//! rest of the crate wraps it.
//!
//! The shared types and the `log` import come from the `imports` world. Each
//! plugin world is generated in its own module, reusing those types, and only
//! when its feature is on: a world's component type is embedded into the
//! guest, and a component must implement every export of every world it
//! carries. Native builds (tests, docs) get all three.

wit_bindgen::generate!({
    path: "wit",
    world: "imports",
    runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
});

#[cfg(any(feature = "adapter", not(target_arch = "wasm32")))]
pub mod adapter_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "adapter-plugin",
        with: {
            "weir:plugin/types@0.1.0": crate::bindings::weir::plugin::types,
            "weir:plugin/log@0.1.0": crate::bindings::weir::plugin::log,
        },
        runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_adapter_world",
        default_bindings_module: "::weir_sdk::__private::adapter_world",
    });
}

#[cfg(any(feature = "filter", not(target_arch = "wasm32")))]
pub mod filter_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "filter-plugin",
        with: {
            "weir:plugin/types@0.1.0": crate::bindings::weir::plugin::types,
            "weir:plugin/log@0.1.0": crate::bindings::weir::plugin::log,
        },
        runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_filter_world",
        default_bindings_module: "::weir_sdk::__private::filter_world",
    });
}

#[cfg(any(feature = "enricher", not(target_arch = "wasm32")))]
pub mod enricher_world {
    wit_bindgen::generate!({
        path: "wit",
        world: "enricher-plugin",
        with: {
            "weir:plugin/types@0.1.0": crate::bindings::weir::plugin::types,
            "weir:plugin/log@0.1.0": crate::bindings::weir::plugin::log,
        },
        runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "__export_enricher_world",
        default_bindings_module: "::weir_sdk::__private::enricher_world",
    });
}
