//! Shared plumbing for nboost plugins that run a transformer through wasi-nn.
//!
//! The `minilm` (bi-encoder) and `cross-encoder` plugins differ only in how
//! they pair texts and what they do with the model's output. Everything else
//! lives here, as plain Rust over plain types so that it is unit-tested
//! natively:
//!
//! * [`text`]: parse a Hugging Face `tokenizer.json` once, override its
//!   baked-in truncation and padding, and encode texts or text pairs;
//! * [`tensors`]: plan length-sorted batches, pad them, build the
//!   `input_ids` / `attention_mask` / `token_type_ids` tensors as
//!   little-endian bytes, and check and decode `f32` outputs;
//! * [`pooling`]: masked mean pooling, L2 normalisation, dot products;
//! * [`settings`]: strict parsing of `configure` settings;
//! * [`nn`]: a thin, typed wrapper over the wasi-nn imports (load a named
//!   graph, keep one execution context, run `compute` with named tensors),
//!   turning wasi-nn errors into messages with their code and data.
//!
//! The wasi-nn bindings themselves ([`bindings`]) are generated once, here,
//! from `wit/deps/nn`. A plugin's own `wit_bindgen::generate!` points at them
//! with `with: { "wasi:nn/tensor@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::tensor, ... }`
//! so that the resource types are shared instead of generated twice. Natively
//! the wasi-nn imports are stubs that panic; only [`nn`] calls them, and the
//! native tests do not.

pub mod nn;
pub mod pooling;

/// The bindings of a model plugin: the `nn-reranker-plugin` world of
/// `wit/`, with the wasi-nn interfaces taken from [`bindings`] (generated
/// once, here) instead of generated again. Expands to `mod bindings`; use
/// it from a crate in `components/`:
///
/// ```ignore
/// nboost_nn_common::plugin_bindings!();
/// use bindings::exports::nboost::reranker::reranker::{Error, Guest, ModelInfo};
/// ```
#[macro_export]
macro_rules! plugin_bindings {
    () => {
        /// Rust bindings for the `nn-reranker-plugin` world (wasi-nn shared
        /// with `nboost_nn_common`).
        #[allow(missing_docs, reason = "generated code")]
        mod bindings {
            wit_bindgen::generate!({
                world: "nn-reranker-plugin",
                path: "../../wit",
                with: {
                    "wasi:nn/tensor@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::tensor,
                    "wasi:nn/graph@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::graph,
                    "wasi:nn/inference@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::inference,
                    "wasi:nn/errors@0.2.0-rc-2024-10-28": nboost_nn_common::bindings::wasi::nn::errors,
                },
            });
        }
    };
}
/// Settings parsing (the `nboost-settings` crate).
pub use nboost_settings as settings;
pub mod tensors;
pub mod text;

/// wasi-nn `0.2.0-rc-2024-10-28` guest bindings, generated from
/// `wit/deps/nn/wasi-nn.wit` (world `wasi:nn/ml`: imports only).
#[allow(missing_docs, reason = "generated code")]
pub mod bindings {
    wit_bindgen::generate!({
        world: "ml",
        path: "../../wit/deps/nn",
    });
}
