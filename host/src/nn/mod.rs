//! Named graphs and the wasi-nn back-ends that run them.
//!
//! A plugin does no tensor maths: it calls `wasi:nn` and the host runs the
//! graph natively. That host code runs *outside* the sandbox, so every value
//! that crosses from the guest is treated as hostile:
//!
//! * a plugin can only `load-by-name`, and only the graphs its manifest entry
//!   lists (each store gets its own [`AllowedGraphs`] registry); loading raw
//!   graph bytes from the guest is not offered (no back-end is registered for
//!   `load`, so it answers `invalid-encoding`);
//! * every tensor's `dimensions x element size` must equal its data length,
//!   and the bytes of one `compute` (inputs, then outputs) are capped, before
//!   anything reaches a back-end ([`check_tensors`], [`LimitedGraph`]);
//! * names, element types and ranks are checked against the graph's own
//!   signature ([`GraphSignature`]) by each back-end;
//! * back-end failures become wasi-nn errors, never panics; the cause is
//!   logged here because wasi-nn's error resource drops it.
//!
//! Graphs load lazily, once per process, on first use, and are shared by all
//! instances ([`NnHost`]). `WasiNnCtx` keys back-ends by encoding, so one host
//! uses one ONNX back-end ([`BackendKind`]) for all its graphs.

pub mod adapter;
pub mod backend;
pub mod compute;
pub mod forms;
pub mod merge;
pub mod tract;
mod tract_binary;
mod tract_form;

#[cfg(feature = "ort")]
pub mod ort;
#[cfg(feature = "ort")]
mod ort_form;

#[cfg(feature = "openvino")]
pub mod openvino;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use once_cell::sync::OnceCell;
use wasmtime_wasi_nn::backend::{BackendError, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{Graph, Tensor};

pub use adapter::{DeadlineExceeded, NnLimits, NnState, NnView, OverBudget};
pub use compute::GraphMeta;

use crate::RerankError;

/// Which engine runs ONNX graphs in this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// tract: pure Rust, always compiled in, no shared library needed.
    Tract,
    /// ONNX Runtime, loaded at run time from `libonnxruntime.so`.
    Ort,
    /// OpenVINO, loaded at run time from `libopenvino_c.so`.
    Openvino,
}

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Host CPU.
    Cpu,
    /// A GPU (CUDA for ONNX Runtime, `GPU` device for OpenVINO).
    Gpu,
}

/// Host-wide back-end settings.
#[derive(Debug, Clone)]
pub struct NnOptions {
    /// The engine that runs every ONNX graph.
    pub backend: BackendKind,
    /// CPU or GPU.
    pub target: Target,
    /// Threads one inference may use.
    pub threads: usize,
    /// Path of `libonnxruntime.so` (else `ORT_DYLIB_PATH`).
    pub ort_library: Option<PathBuf>,
    /// Directory holding `libopenvino_c.so` (else `OPENVINO_LIB_DIR` or
    /// `LD_LIBRARY_PATH`).
    pub openvino_library: Option<PathBuf>,
    /// Where prepared graph forms are cached ([`forms`]); none: not cached.
    pub graph_cache: Option<PathBuf>,
    /// Merge concurrent small computes of the same graph into one back-end
    /// call ([`merge`]); `None`: the back-end's default
    /// ([`GraphLoader::merges_by_default`]).
    pub merge_computes: Option<bool>,
}

impl Default for NnOptions {
    fn default() -> Self {
        Self {
            backend: BackendKind::Tract,
            target: Target::Cpu,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ort_library: None,
            openvino_library: None,
            graph_cache: None,
            merge_computes: None,
        }
    }
}

/// A named graph as the manifest declares it.
#[derive(Debug, Clone)]
pub struct GraphSpec {
    /// Name a plugin passes to `load-by-name`.
    pub name: String,
    /// The ONNX file.
    pub path: PathBuf,
    /// Expected `sha256:<hex>` of the file, if pinned.
    pub sha256: Option<String>,
    /// A prepared form of the graph ([`forms`]) shipped with it (a signed
    /// bundle's part): the form's name and its file.
    pub prepared: Option<(String, PathBuf)>,
}

/// The name, element type and shape (`None` = dynamic) of one graph input or
/// output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type.
    pub ty: TensorType,
    /// Dimensions; `None` where the graph leaves a dimension free.
    pub dims: Vec<Option<u64>>,
}

/// A graph's inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct GraphSignature {
    /// Inputs, in graph order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in graph order.
    pub outputs: Vec<TensorSpec>,
}

impl GraphSignature {
    /// Match guest tensors to the graph's inputs: every input given exactly
    /// once, by name, with the right element type, rank and static dims.
    /// Returns the tensors in graph input order.
    pub fn order_inputs(&self, mut given: Vec<NamedTensor>) -> Result<Vec<Tensor>, BackendError> {
        if given.len() != self.inputs.len() {
            return Err(invalid(format!(
                "the graph takes {} inputs ({}), {} were given",
                self.inputs.len(),
                self.inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                given.len()
            )));
        }
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let pos = given
                .iter()
                .position(|t| t.name == spec.name)
                .ok_or_else(|| invalid(format!("missing input tensor `{}`", spec.name)))?;
            let t = given.swap_remove(pos).tensor;
            let compatible = matches!(
                (spec.ty, t.ty),
                (a, b) if a == b
            ) || (spec.ty == TensorType::I64 && t.ty == TensorType::I32);
            if !compatible {
                return Err(invalid(format!(
                    "input `{}` must be {:?}, got {:?}",
                    spec.name, spec.ty, t.ty
                )));
            }
            if t.dimensions.len() != spec.dims.len() {
                return Err(invalid(format!(
                    "input `{}` must have rank {}, got dimensions {:?}",
                    spec.name,
                    spec.dims.len(),
                    t.dimensions
                )));
            }
            for (want, got) in spec.dims.iter().zip(&t.dimensions) {
                if let Some(w) = want {
                    if *w != u64::from(*got) {
                        return Err(invalid(format!(
                            "input `{}` has dimensions {:?}, the graph needs {:?}",
                            spec.name, t.dimensions, spec.dims
                        )));
                    }
                }
            }
            ordered.push(t);
        }
        Ok(ordered)
    }
}

/// Bytes per element, for the element types our back-ends accept.
pub fn element_size(ty: TensorType) -> Option<usize> {
    match ty {
        TensorType::Fp32 | TensorType::I32 => Some(4),
        TensorType::I64 | TensorType::Fp64 => Some(8),
        TensorType::Fp16 | TensorType::Bf16 => Some(2),
        TensorType::U8 => Some(1),
    }
}

/// Check that each tensor's dimensions and element size account for exactly
/// its data, and that all of them together stay within `max_bytes`.
pub fn check_tensors<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    max_bytes: usize,
) -> Result<(), BackendError> {
    let mut total = 0usize;
    for (name, t) in tensors {
        let elem = element_size(t.ty)
            .ok_or_else(|| invalid(format!("tensor `{name}`: unsupported type {:?}", t.ty)))?;
        let expected = t
            .dimensions
            .iter()
            .try_fold(elem, |acc, d| acc.checked_mul(*d as usize))
            .ok_or_else(|| BackendError::NotEnoughMemory(usize::MAX))?;
        if expected != t.data.len() {
            return Err(invalid(format!(
                "tensor `{name}`: dimensions {:?} x {elem} bytes = {expected} bytes, but {} bytes of data were given",
                t.dimensions,
                t.data.len()
            )));
        }
        total = total.saturating_add(expected);
        if total > max_bytes {
            return Err(BackendError::NotEnoughMemory(total));
        }
    }
    Ok(())
}

/// A guest-caused tensor error. wasi-nn's `BackendError` has no "invalid
/// argument" case that keeps its message, so this uses the one that does.
pub fn invalid(msg: String) -> BackendError {
    BackendError::UnsupportedTensorType(msg)
}

/// A back-end failure, with its cause in the message (the adapter logs it,
/// within the instance's log share, and hands it to the guest).
pub fn backend_failure(context: &str, err: impl std::fmt::Display) -> BackendError {
    BackendError::BackendAccess(wasmtime::format_err!("{context}: {err}"))
}

/// Little-endian bytes to `i64`s (accepting `i32` data widened).
pub fn bytes_to_i64(t: &Tensor) -> Vec<i64> {
    match t.ty {
        TensorType::I32 => t
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        _ => t
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
            .collect(),
    }
}

/// Little-endian bytes to `f32`s.
pub fn bytes_to_f32(t: &Tensor) -> Vec<f32> {
    t.data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `f32`s to a wasi-nn tensor.
pub fn f32_tensor(dims: &[usize], data: &[f32]) -> Tensor {
    let mut bytes = Vec::with_capacity(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    Tensor::new(
        dims.iter().map(|d| *d as u32).collect(),
        TensorType::Fp32,
        bytes,
    )
}

/// `i64`s to a wasi-nn tensor.
pub fn i64_tensor(dims: &[usize], data: &[i64]) -> Tensor {
    let mut bytes = Vec::with_capacity(data.len() * 8);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    Tensor::new(
        dims.iter().map(|d| *d as u32).collect(),
        TensorType::I64,
        bytes,
    )
}

/// Turns model bytes into a runnable graph; one per back-end kind.
pub trait GraphLoader: Send + Sync {
    /// Load and prepare (optimise, compile) one graph; also its signature.
    fn load(&self, name: &str, bytes: &[u8]) -> Result<(Graph, GraphSignature), String>;

    /// The name of this back-end's prepared form of a graph
    /// ([`forms`]), if it has one.
    fn prepared_form(&self) -> Option<String> {
        None
    }

    /// Write the prepared form of the ONNX graph `bytes` to the file `out`.
    fn write_prepared(&self, _bytes: &[u8], _out: &Path) -> Result<(), String> {
        Err("this back-end has no prepared graph form".into())
    }

    /// Load one graph from its prepared form at `path`.
    fn load_prepared(&self, _name: &str, _path: &Path) -> Result<(Graph, GraphSignature), String> {
        Err("this back-end has no prepared graph form".into())
    }

    /// Whether merging concurrent computes ([`merge`]) is on unless the
    /// options say otherwise: where it measured a gain.
    fn merges_by_default(&self) -> bool {
        true
    }

    /// Merged calls of one graph that may run at once on `cores` cores: a
    /// back-end that runs every call on `threads` threads fits `cores /
    /// threads`.
    fn concurrent_calls(&self, cores: usize, threads: usize) -> usize {
        cores / threads.max(1)
    }
}

/// The process-wide store of named graphs: declared up front, loaded on
/// first use, once, and shared by every instance.
pub struct NnHost {
    options: NnOptions,
    specs: HashMap<String, GraphSpec>,
    loader: OnceCell<Arc<dyn GraphLoader>>,
    graphs: Mutex<HashMap<String, Arc<OnceCell<LoadedGraph>>>>,
    merge_stats: Arc<merge::MergeStats>,
}

impl NnHost {
    /// A host serving `specs` with the back-end that `options` names. The
    /// back-end library is not touched until the first graph loads.
    pub fn new(options: NnOptions, specs: impl IntoIterator<Item = GraphSpec>) -> Self {
        Self {
            options,
            specs: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
            loader: OnceCell::new(),
            graphs: Mutex::new(HashMap::new()),
            merge_stats: Arc::default(),
        }
    }

    /// How many computes were merged, by every graph of this host.
    pub fn merge_stats(&self) -> &merge::MergeStats {
        &self.merge_stats
    }

    /// What the adapter keeps about a graph with `signature` loaded by this
    /// host: with a [`merge::Merger`] when merging is on and the graph
    /// allows it (as many merged calls at once as inferences fit the cores).
    fn graph_meta(&self, signature: GraphSignature) -> GraphMeta {
        let merger = self.loader().ok().and_then(|loader| {
            let on = self
                .options
                .merge_computes
                .unwrap_or_else(|| loader.merges_by_default());
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let runners = loader.concurrent_calls(cores, self.options.threads);
            on.then(|| merge::Merger::for_graph(&signature, runners, self.merge_stats.clone()))
                .flatten()
        });
        GraphMeta::new(signature).with_merger(merger)
    }

    /// The options this host was built with.
    pub fn options(&self) -> &NnOptions {
        &self.options
    }

    /// Names of the declared graphs.
    pub fn graph_names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(|s| s.as_str())
    }

    fn loader(&self) -> Result<&Arc<dyn GraphLoader>, RerankError> {
        self.loader.get_or_try_init(|| make_loader(&self.options))
    }

    /// The graph called `name`, loading it on first use. Concurrent callers
    /// for the same graph wait for one load; other graphs load in parallel.
    pub fn graph(&self, name: &str) -> Result<LoadedGraph, RerankError> {
        let spec = self
            .specs
            .get(name)
            .ok_or_else(|| RerankError::Backend(format!("no graph named `{name}` is declared")))?;
        let cell = {
            let mut graphs = self.graphs.lock().unwrap_or_else(|e| e.into_inner());
            graphs.entry(name.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| forms::with_lean_heap(|| self.load_spec(spec)))
            .cloned()
    }

    /// The wasi-nn state of one store: only the `allowed` manifest graphs
    /// resolve (loaded on first use), under `limits`.
    pub fn context(self: &Arc<Self>, allowed: &[String], limits: NnLimits) -> NnState {
        NnState::new(self.clone(), allowed, &[], limits)
    }
}

/// A graph loaded outside the manifest (an upload), or a manifest graph
/// taken by value: an opaque, cheap-to-clone handle. Holding one keeps the
/// graph in memory, so an instance configured with it keeps working after
/// the graph's name is given to a newer version.
#[derive(Clone)]
pub struct LoadedGraph {
    graph: Graph,
    meta: Arc<GraphMeta>,
}

impl std::fmt::Debug for LoadedGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadedGraph")
    }
}

impl NnHost {
    /// Load graph bytes with this host's back-end: a manifest graph's file
    /// (through [`NnHost::graph`], which caches it) or an upload. Nothing is
    /// cached here: the caller keeps the handle for as long as the graph
    /// should stay loaded. `name` is only used in messages.
    pub fn load_graph_bytes(&self, name: &str, bytes: &[u8]) -> Result<LoadedGraph, RerankError> {
        let loader = self.loader()?;
        let started = std::time::Instant::now();
        let (graph, signature) = loader
            .load(name, bytes)
            .map_err(|e| RerankError::Backend(format!("graph `{name}`: {e}")))?;
        tracing::info!(
            target: "nboost::nn",
            graph = name,
            backend = ?self.options.backend,
            ms = started.elapsed().as_millis() as u64,
            "graph loaded"
        );
        Ok(LoadedGraph {
            graph,
            meta: Arc::new(self.graph_meta(signature)),
        })
    }

    /// A wasi-nn context whose allow-list is exactly `graphs`, already
    /// loaded, under the names the guest passes to `load-by-name` (which need
    /// not be the names the graphs were loaded under: an upload's graph `g`
    /// of tenant `t` is seen by `t`'s components as `g`), under `limits`.
    pub fn context_preloaded(
        self: &Arc<Self>,
        graphs: &[(String, LoadedGraph)],
        limits: NnLimits,
    ) -> NnState {
        NnState::new(self.clone(), &[], graphs, limits)
    }
}

fn make_loader(options: &NnOptions) -> Result<Arc<dyn GraphLoader>, RerankError> {
    match options.backend {
        BackendKind::Tract => Ok(Arc::new(tract::TractLoader::new(options)?)),
        #[cfg(feature = "ort")]
        BackendKind::Ort => Ok(Arc::new(ort::OrtLoader::new(options)?)),
        #[cfg(feature = "openvino")]
        BackendKind::Openvino => Ok(Arc::new(openvino::OpenvinoLoader::new(options)?)),
        #[allow(
            unreachable_patterns,
            reason = "reachable when a back-end feature is off"
        )]
        other => Err(RerankError::Backend(format!(
            "this nboost binary was built without the {other:?} back-end"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: Vec<u32>, ty: TensorType, len: usize) -> Tensor {
        Tensor::new(dims, ty, vec![0; len])
    }

    #[test]
    fn tensor_bytes_must_match_dimensions() {
        let ok = t(vec![2, 3], TensorType::I64, 48);
        assert!(check_tensors([("a", &ok)], 1 << 20).is_ok());
        let short = t(vec![2, 3], TensorType::I64, 47);
        assert!(check_tensors([("a", &short)], 1 << 20).is_err());
        let overflow = t(vec![u32::MAX, u32::MAX, u32::MAX], TensorType::Fp32, 4);
        assert!(matches!(
            check_tensors([("a", &overflow)], 1 << 20),
            Err(BackendError::NotEnoughMemory(_))
        ));
        let big = t(vec![1024], TensorType::Fp32, 4096);
        assert!(matches!(
            check_tensors([("a", &big), ("b", &big)], 6000),
            Err(BackendError::NotEnoughMemory(_))
        ));
    }

    #[test]
    fn inputs_are_matched_by_name_type_and_rank() {
        let sig = GraphSignature {
            inputs: vec![
                TensorSpec {
                    name: "a".into(),
                    ty: TensorType::I64,
                    dims: vec![None, None],
                },
                TensorSpec {
                    name: "b".into(),
                    ty: TensorType::Fp32,
                    dims: vec![None, Some(4)],
                },
            ],
            outputs: vec![],
        };
        let nt = |name: &str, tensor| NamedTensor {
            name: name.into(),
            tensor,
        };
        let ok = sig.order_inputs(vec![
            nt("b", t(vec![1, 4], TensorType::Fp32, 16)),
            nt("a", t(vec![1, 2], TensorType::I64, 16)),
        ]);
        assert_eq!(ok.unwrap()[0].ty, TensorType::I64);
        assert!(sig
            .order_inputs(vec![nt("a", t(vec![1, 2], TensorType::I64, 16))])
            .is_err());
        assert!(sig
            .order_inputs(vec![
                nt("a", t(vec![1, 2], TensorType::I64, 16)),
                nt("b", t(vec![1, 5], TensorType::Fp32, 20)),
            ])
            .is_err());
        assert!(sig
            .order_inputs(vec![
                nt("a", t(vec![2], TensorType::I64, 16)),
                nt("b", t(vec![1, 4], TensorType::Fp32, 16)),
            ])
            .is_err());
    }
}
