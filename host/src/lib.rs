//! nboost: a WebAssembly component sandbox for neural reranking plugins.
//!
//! A search engine returns a BM25 top-k; a reranker reorders it. In nboost a
//! reranker is a WebAssembly component implementing the `nboost:reranker`
//! WIT interface (see `wit/`). The component carries its own pre-processing
//! (tokenizer) and logic and nothing else: tensor maths is delegated to the
//! host through `wasi-nn`, whose back-ends (tract, ONNX Runtime, OpenVINO) live
//! in [`nn`].
//!
//! The layers, from the top:
//!
//! * [`service::Reranker`]: the one entry point for the CLI (and servers). It
//!   takes a component name, a query and passages, and returns ranked results.
//! * [`registry`]: the manifest (`nboost.toml`), which maps names to component
//!   files the way NBoost's `CLASS_MAP` mapped names to model classes. A
//!   request for component X reads, validates, compiles and instantiates X and
//!   nothing else; compiled artifacts are cached in memory and on disk.
//! * [`sandbox`]: the wasmtime engine, per-call limits (deadline, memory,
//!   stack), the no-ambient-capabilities WASI context, the import allow-list
//!   and the typed calls into a plugin.
//! * [`nn`]: named graphs and the wasi-nn back-ends.
//!
//! `nboost serve` adds a multi-tenant front end on top of the same layers:
//!
//! * [`server`]: the HTTP API (axum): rerank in the Cohere/Jina and TEI
//!   shapes, component and graph uploads, metrics. The only module that
//!   knows HTTP.
//! * [`tenancy`]: the service behind it: tenants' namespaces over the
//!   public manifest, admission and quotas, per-tenant warm pools, atomic
//!   version switches.
//! * [`store`]: the durable data directory: tenants and hashed keys,
//!   content-addressed blobs, SQLite metadata.

pub mod digest;
pub mod error;
pub mod eval;
pub mod meter;
pub mod nn;
pub mod registry;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod store;
pub mod tenancy;

pub use error::RerankError;
pub use service::{RankedPassage, Reranker};
