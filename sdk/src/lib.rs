//! Write Weir plugins in Rust.
//!
//! A Weir plugin is a WebAssembly component that runs inside the Weir server,
//! in the write path, before the client's write is acknowledged. There are
//! three kinds, one WIT world each (`wit/plugin.wit`, package
//! `weir:plugin@0.1.0`):
//!
//! - an [`Adapter`] turns raw input (a webhook body, Prometheus text, a
//!   Nagios check's output) into events;
//! - a [`Filter`] decides which events of a batch to keep;
//! - an [`Enricher`] adds or changes tags and fields.
//!
//! You implement one trait over a per-event view ([`Event`]) and export it
//! with one macro. Events cross into your plugin a batch at a time, in
//! columns; this crate hides that and gives you `event.tag("service")` and
//! `event.field_f64("response_ms")`.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! weir-sdk = { version = "0.1", features = ["filter"] }
//! ```
//!
//! ```
//! use weir_sdk::{Config, Event, Filter};
//!
//! struct OnlyUnhealthy;
//!
//! impl Filter for OnlyUnhealthy {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(OnlyUnhealthy)
//!     }
//!     fn keep(&mut self, event: &Event<'_>) -> bool {
//!         event.tag("status") == Some("unhealthy")
//!     }
//! }
//!
//! weir_sdk::export_filter!(OnlyUnhealthy);
//! # fn main() {}
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and point a
//! pipeline stage at `target/wasm32-wasip2/release/<name>.wasm`. Test the
//! logic natively with [`testing`] and plain `cargo test`; try the built
//! component with `weir plugin test`.
//!
//! Enable exactly one of the features `adapter`, `filter`, `enricher`: the
//! one your plugin is.
//!
//! What a plugin may do: compute, keep state in its instance between batches,
//! and [`log`]. It has no files, network, environment or clock; the host
//! grants none, and refuses to load a component that imports more. Each call
//! has a deadline and the instance a memory cap; a plugin that traps or runs
//! over is restarted and its batch goes to Weir's dead-letter table.

extern crate self as weir_sdk;

mod bindings;
mod build;
mod config;
pub mod log;
mod plugin;
pub mod testing;
mod view;

pub use build::{EventBuilder, EventsBuilder};
pub use config::Config;
pub use plugin::{Adapter, Changes, Enricher, Filter, Input};
pub use view::{Event, Events, Value};

/// The columnar batch types of the WIT interface, as `wit-bindgen` generates
/// them. Most plugins never need them beyond passing them along.
pub mod types {
    pub use crate::bindings::weir::plugin::types::*;
}

/// Used by the `export_*!` macros; not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(any(feature = "adapter", not(target_arch = "wasm32")))]
    pub use crate::bindings::adapter_world;
    #[cfg(any(feature = "enricher", not(target_arch = "wasm32")))]
    pub use crate::bindings::enricher_world;
    #[cfg(any(feature = "filter", not(target_arch = "wasm32")))]
    pub use crate::bindings::filter_world;
    pub use wit_bindgen;

    use crate::types::{Batch, Column};
    use crate::{Adapter, Config, Enricher, Filter, plugin};

    pub fn filter_init<F: Filter>(config: Vec<(String, String)>) -> Result<(), String> {
        plugin::init_instance(|| F::init(&Config::new(config)))
    }

    pub fn filter_call<F: Filter>(batch: Batch) -> Result<Vec<u32>, String> {
        plugin::with_instance(|p: &mut F| plugin::run_filter(p, &batch))
    }

    pub fn enricher_init<E: Enricher>(config: Vec<(String, String)>) -> Result<(), String> {
        plugin::init_instance(|| E::init(&Config::new(config)))
    }

    pub fn enricher_call<E: Enricher>(batch: Batch) -> Result<Vec<Column>, String> {
        plugin::with_instance(|p: &mut E| plugin::run_enricher(p, &batch))
    }

    pub fn adapter_init<A: Adapter>(config: Vec<(String, String)>) -> Result<(), String> {
        plugin::init_instance(|| A::init(&Config::new(config)))
    }

    pub fn adapter_call<A: Adapter>(
        content_type: String,
        body: Vec<u8>,
    ) -> Result<Vec<Batch>, String> {
        plugin::with_instance(|p: &mut A| plugin::run_adapter(p, &content_type, &body))
    }
}

/// Exports a [`Filter`] as the plugin's `weir:plugin/filter` implementation.
/// Needs the `filter` feature when building for WebAssembly.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        const _: () = {
            struct WeirFilterExport;
            impl $crate::__private::filter_world::exports::weir::plugin::filter::Guest
                for WeirFilterExport
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::filter_init::<$plugin>(config)
                }
                fn filter(
                    batch: $crate::types::Batch,
                ) -> ::core::result::Result<::std::vec::Vec<u32>, ::std::string::String> {
                    $crate::__private::filter_call::<$plugin>(batch)
                }
            }
            // Native builds (unit tests) keep the trait impl but export nothing:
            // the component export names are not valid native symbols.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::filter_world::__export_filter_world!(WeirFilterExport with_types_in $crate::__private::filter_world);
        };
    };
}

/// Exports an [`Enricher`] as the plugin's `weir:plugin/enricher`
/// implementation. Needs the `enricher` feature when building for WebAssembly.
#[macro_export]
macro_rules! export_enricher {
    ($plugin:ty) => {
        const _: () = {
            struct WeirEnricherExport;
            impl $crate::__private::enricher_world::exports::weir::plugin::enricher::Guest
                for WeirEnricherExport
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::enricher_init::<$plugin>(config)
                }
                fn enrich(
                    batch: $crate::types::Batch,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::types::Column>,
                    ::std::string::String,
                > {
                    $crate::__private::enricher_call::<$plugin>(batch)
                }
            }
            // Native builds (unit tests) keep the trait impl but export nothing:
            // the component export names are not valid native symbols.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::enricher_world::__export_enricher_world!(WeirEnricherExport with_types_in $crate::__private::enricher_world);
        };
    };
}

/// Exports an [`Adapter`] as the plugin's `weir:plugin/adapter`
/// implementation. Needs the `adapter` feature when building for WebAssembly.
#[macro_export]
macro_rules! export_adapter {
    ($plugin:ty) => {
        const _: () = {
            struct WeirAdapterExport;
            impl $crate::__private::adapter_world::exports::weir::plugin::adapter::Guest
                for WeirAdapterExport
            {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::adapter_init::<$plugin>(config)
                }
                fn adapt(
                    content_type: ::std::string::String,
                    body: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::types::Batch>,
                    ::std::string::String,
                > {
                    $crate::__private::adapter_call::<$plugin>(content_type, body)
                }
            }
            // Native builds (unit tests) keep the trait impl but export nothing:
            // the component export names are not valid native symbols.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::adapter_world::__export_adapter_world!(WeirAdapterExport with_types_in $crate::__private::adapter_world);
        };
    };
}
