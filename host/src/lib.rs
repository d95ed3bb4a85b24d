//! nboost: a WebAssembly component sandbox for neural reranking plugins.
//!
//! A search engine returns a BM25 top-k; a reranker reorders it. In nboost a
//! reranker is a WebAssembly component implementing the `nboost:reranker`
//! WIT interface (see `wit/`). The component carries its own pre-processing
//! (tokenizer) and logic and nothing else: tensor maths is delegated to the
//! host through `wasi-nn`, whose back-ends (tract, ONNX Runtime, OpenVINO) live
//! in [`nn`].
//!
//! The layers, from the top (every import points down):
//!
//! * `cli` (the binary), [`api`] (HTTP) and [`proxy`] (the
//!   Elasticsearch/OpenSearch reranking proxy): front ends; parse, call the
//!   service, render.
//! * [`contract`]: the component contract suite (`nboost components
//!   test`, and `tests/` on every component), over the service.
//! * [`service`]: the one serving core — admission, catalog, warm pool,
//!   ranking, uploads — for tenants and for the operator (the CLI's
//!   [`Reranker`]).
//! * [`bundle`]: signed bundles (component, settings, files, graphs in
//!   one verified file) that become a manifest for edge nodes.
//! * [`oci`]: components, bundles and the WIT package to and from OCI
//!   registries (pull, check digests and kind; the caller verifies).
//! * [`registry`]: the manifest and the load path of a component: read,
//!   validate, compile (through the artifact cache, untrusted files in a
//!   limited subprocess), link. Loads only what is asked for.
//! * [`store`]: the durable data directory (tenants, hashed keys, blobs,
//!   SQLite metadata behind an exact read cache).
//! * [`sandbox`]: the wasmtime engine, per-call limits, the capability-free
//!   WASI context, the validator, bounded async calls into a plugin.
//! * [`nn`]: named graphs, the one wasi-nn adapter and the back-ends.
//! * leaves: [`fsutil`], [`meter`], [`names`], [`error`], [`fusion`],
//!   [`relevance`] (NDCG, MRR), and the
//!   `nboost-validate` crate (validation, digests).
//! * `eval` (cargo feature `eval`): retrieval-quality evaluation (BM25
//!   first stage + reranker).

pub mod alloc;
pub mod api;
pub mod bundle;
pub mod contract;
pub mod error;
#[cfg(feature = "eval")]
pub mod eval;
pub mod fsutil;
pub mod fusion;
pub mod meter;
pub mod names;
pub mod nn;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod relevance;
pub mod sandbox;
pub mod service;
pub mod store;

pub use error::RerankError;
pub use service::{RankedPassage, Reranker};
