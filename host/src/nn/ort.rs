//! The fast path: ONNX Runtime, loaded at run time.
//!
//! `ort` is built with `load-dynamic`: no ONNX Runtime is linked into
//! `nboost`; `libonnxruntime.so` is opened when the first graph loads, from
//! `--ort-library` or `ORT_DYLIB_PATH` (the PyPI `onnxruntime` wheel ships
//! one). `ort` panics on a missing or incompatible library, so the file is
//! checked first and the initialisation runs under `catch_unwind`: the user
//! gets an error that names the path, never a crash.
//!
//! wasmtime-wasi-nn's own ORT back-end accepts only `f32` inputs (BERT needs
//! `int64`) and serialises every request on one `Mutex<Session>`. Here, a
//! graph owns a small pool of sessions: a request takes a free one or, while
//! under the cap, builds another, so concurrent requests run concurrently.
//! When one call's threads fill the cores (the default), concurrent calls
//! instead run on single-threaded sessions side by side ([`Lanes`]): a lone
//! request still gets every core, a busy graph no barrier waits.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::execution_providers::{CUDAExecutionProvider, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::tensor::TensorElementType;
use ort::value::{DynValue, Tensor, ValueType};
use wasmtime_wasi_nn::backend::{BackendError, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{Graph, Tensor as NnTensor};

use super::backend::{library_file, runner_graph, Lane, Lanes, Pool, Runner};

use super::{
    backend_failure, bytes_to_f32, bytes_to_i64, f32_tensor, i64_tensor, invalid, GraphLoader,
    GraphSignature, NnOptions, Target, TensorSpec,
};
use crate::RerankError;

/// Most sessions one graph keeps; each holds a copy of the weights.
const MAX_SESSIONS_PER_GRAPH: usize = 4;

/// Graph rewrites left out on the CPU. ONNX Runtime's CPU kernel for the
/// fused `SkipLayerNormalization` (residual add + layer norm) is slower than
/// the `Add` and `LayerNormalization` it replaces: on the int8 MiniLM graph
/// (16 x 100 tokens, 2 threads, ORT 1.32) the six layers' twelve fused nodes
/// took ~18 ms of a ~94 ms call, the unfused pair ~4.5 ms, and the call
/// went from ~170 to ~205 passages/s. The fp32 graphs we ship are not
/// fused this way (their residual adds stay `Add`), so this changes nothing
/// for them. CUDA's fused kernel is fast, so the GPU keeps it.
const CPU_DISABLED_OPTIMIZERS: &str = "SkipLayerNormFusion";

/// Loads graphs into ONNX Runtime sessions.
#[derive(Clone)]
pub struct OrtLoader {
    threads: usize,
    /// Narrow lanes per graph ([`Lanes`]), fixed by the options: on the
    /// CPU, when one call's threads fill the cores, one single-threaded
    /// session per core (at most [`MAX_SESSIONS_PER_GRAPH`]); otherwise
    /// none, and concurrent calls each take a session of `threads` threads.
    narrow_lanes: Option<usize>,
    target: Target,
    /// The prepared form's name ([`super::forms`]): ONNX Runtime's own
    /// optimised model (level 3: fused attention, GELU, layer norm), for
    /// this library file, on the CPU. It may hold operators fused for this
    /// machine, so it is only cached on the node that made it, never
    /// shipped in a bundle. Its weights are a file of their own beside
    /// the model, which ONNX Runtime maps rather than reads: a session
    /// starts in about a third of the time (MiniLM: ~50 ms instead of
    /// ~150 ms, no 90 MB read and copy before the weights are packed).
    form: String,
}

/// Where a session's model comes from.
enum Source {
    /// ONNX bytes, optimised when the session starts.
    Bytes(Vec<u8>),
    /// A prepared form on disk (already optimised; its weights file beside
    /// it is mapped by ONNX Runtime, so the model is opened by path).
    Prepared(PathBuf),
}

/// The library path `ort` should open: the flag, else `ORT_DYLIB_PATH`.
fn library_path(options: &NnOptions) -> Result<PathBuf, RerankError> {
    let path = library_file(options.ort_library.as_ref(), "ORT_DYLIB_PATH")?.ok_or_else(|| {
        RerankError::Backend(
            "the ONNX Runtime back-end needs libonnxruntime.so: pass --ort-library PATH or set \
             ORT_DYLIB_PATH (the PyPI `onnxruntime` wheel ships it under onnxruntime/capi/)"
                .into(),
        )
    })?;
    if !path.is_file() {
        return Err(RerankError::Backend(format!(
            "ONNX Runtime library {} does not exist",
            path.display()
        )));
    }
    Ok(path)
}

impl OrtLoader {
    /// Open the ONNX Runtime library and set up its environment.
    pub fn new(options: &NnOptions) -> Result<Self, RerankError> {
        let path = library_path(options)?;
        let shown = path.display().to_string();
        let init = std::panic::catch_unwind(AssertUnwindSafe(|| {
            ort::init_from(path.to_string_lossy().into_owned())
                .with_name("nboost")
                .commit()
        }));
        match init {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(RerankError::Backend(format!(
                    "ONNX Runtime at {shown} failed to initialise: {e}"
                )));
            }
            Err(_) => {
                return Err(RerankError::Backend(format!(
                    "{shown} is not a usable ONNX Runtime library (ort needs 1.22 or newer)"
                )));
            }
        }
        if options.target == Target::Gpu {
            let cuda = CUDAExecutionProvider::default();
            if !cuda.is_available().unwrap_or(false) {
                return Err(RerankError::Backend(format!(
                    "GPU target requested, but the ONNX Runtime at {shown} has no CUDA execution \
                     provider (install onnxruntime-gpu and point --ort-library at its library)"
                )));
            }
        }
        let library = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let threads = options.threads.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            threads,
            narrow_lanes: (options.target == Target::Cpu && threads > 1 && threads >= cores)
                .then(|| cores.min(MAX_SESSIONS_PER_GRAPH)),
            target: options.target,
            form: format!("ort-{library}-cpu-level3-noskipln-mapped"),
        })
    }

    /// A session of `source` (ONNX bytes are optimised at level 3; a
    /// prepared form already is).
    fn session(&self, source: &Source, threads: usize) -> Result<Session, String> {
        match source {
            Source::Bytes(bytes) => self.builder(true, threads)?.commit_from_memory(bytes),
            Source::Prepared(path) => self.builder(false, threads)?.commit_from_file(path),
        }
        .map_err(|e| e.to_string())
    }

    fn builder(
        &self,
        optimise: bool,
        threads: usize,
    ) -> Result<ort::session::builder::SessionBuilder, String> {
        let level = if optimise {
            GraphOptimizationLevel::Level3
        } else {
            GraphOptimizationLevel::Disable
        };
        let mut builder = Session::builder()
            .and_then(|b| b.with_optimization_level(level))
            .and_then(|b| b.with_intra_threads(threads))
            .and_then(|b| b.with_inter_threads(1))
            .map_err(|e| e.to_string())?;
        if self.target == Target::Cpu {
            builder = builder
                .with_disabled_optimizers(CPU_DISABLED_OPTIMIZERS)
                .map_err(|e| e.to_string())?;
        }
        if self.target == Target::Gpu {
            builder = builder
                .with_execution_providers([CUDAExecutionProvider::default()
                    .build()
                    .error_on_failure()])
                .map_err(|e| format!("cannot enable CUDA: {e}"))?;
        }
        Ok(builder)
    }

    /// The graph of `source`, with its first session.
    fn graph(&self, source: Source) -> Result<(Graph, GraphSignature), String> {
        let first = self.session(&source, self.threads)?;
        let signature = GraphSignature {
            inputs: first
                .inputs
                .iter()
                .map(|i| spec(&i.name, &i.input_type))
                .collect::<Result<_, _>>()?,
            outputs: first
                .outputs
                .iter()
                .map(|o| spec(&o.name, &o.output_type))
                .collect::<Result<_, _>>()?,
        };
        let source = Arc::new(source);
        let make = |threads: usize| {
            let (loader, source) = (self.clone(), source.clone());
            move || loader.session(&source, threads)
        };
        let sessions = match self.narrow_lanes {
            Some(narrow) => Sessions::Lanes {
                lanes: Lanes::new(narrow),
                wide: Pool::new(first, 1, make(self.threads)),
                narrow: Pool::empty(narrow, make(1)),
            },
            None => Sessions::Shared(Pool::new(first, MAX_SESSIONS_PER_GRAPH, make(self.threads))),
        };
        let runner = Arc::new(OrtRunner {
            signature: signature.clone(),
            sessions,
        });
        let graph = runner_graph(runner, signature.clone());
        Ok((graph, signature))
    }
}

fn tensor_type(t: TensorElementType) -> Option<TensorType> {
    match t {
        TensorElementType::Float32 => Some(TensorType::Fp32),
        TensorElementType::Int64 => Some(TensorType::I64),
        TensorElementType::Int32 => Some(TensorType::I32),
        _ => None,
    }
}

fn spec(name: &str, vt: &ValueType) -> Result<TensorSpec, String> {
    match vt {
        ValueType::Tensor { ty, shape, .. } => Ok(TensorSpec {
            name: name.to_string(),
            ty: tensor_type(*ty)
                .ok_or_else(|| format!("tensor `{name}` has unsupported type {ty:?}"))?,
            dims: shape
                .iter()
                .map(|d| (*d >= 0).then_some(*d as u64))
                .collect(),
        }),
        other => Err(format!("`{name}` is not a tensor ({other:?})")),
    }
}

impl GraphLoader for OrtLoader {
    fn concurrent_calls(&self, cores: usize, threads: usize) -> usize {
        self.narrow_lanes.unwrap_or_else(|| cores / threads.max(1))
    }

    fn load(&self, _name: &str, bytes: &[u8]) -> Result<(Graph, GraphSignature), String> {
        self.graph(Source::Bytes(bytes.to_vec()))
    }

    fn prepared_form(&self) -> Option<String> {
        // A model optimised with the CUDA provider holds its kernels'
        // layout choices; only CPU forms are kept.
        (self.target == Target::Cpu).then(|| self.form.clone())
    }

    fn write_prepared(&self, bytes: &[u8], out: &Path) -> Result<(), String> {
        super::ort_form::write(self.builder(true, self.threads)?, bytes, out)
    }

    fn load_prepared(&self, _name: &str, path: &Path) -> Result<(Graph, GraphSignature), String> {
        self.graph(Source::Prepared(path.to_path_buf()))
    }
}

/// A graph's sessions (each holds a copy of the weights).
struct OrtRunner {
    signature: GraphSignature,
    sessions: Sessions,
}

/// How a graph's calls get sessions.
enum Sessions {
    /// Every call takes a session of the graph's threads.
    Shared(Pool<Session>),
    /// A call that finds the graph idle takes the one session of the
    /// graph's threads; calls that meet others take single-threaded ones.
    Lanes {
        lanes: Lanes,
        wide: Pool<Session>,
        narrow: Pool<Session>,
    },
}

fn to_ort(t: &NnTensor, spec: &TensorSpec) -> ort::Result<DynValue> {
    let shape: Vec<i64> = t.dimensions.iter().map(|d| i64::from(*d)).collect();
    Ok(match spec.ty {
        TensorType::I64 => Tensor::from_array((shape, bytes_to_i64(t)))?.into_dyn(),
        TensorType::I32 => {
            let v: Vec<i32> = bytes_to_i64(t).into_iter().map(|x| x as i32).collect();
            Tensor::from_array((shape, v))?.into_dyn()
        }
        _ => Tensor::from_array((shape, bytes_to_f32(t)))?.into_dyn(),
    })
}

impl OrtRunner {
    fn run_session(
        &self,
        session: &mut Session,
        values: Vec<(String, DynValue)>,
    ) -> Result<Vec<NamedTensor>, String> {
        let inputs: Vec<(String, SessionInputValue<'_>)> =
            values.into_iter().map(|(n, v)| (n, v.into())).collect();
        let outputs = session.run(inputs).map_err(|e| e.to_string())?;
        let mut named = Vec::with_capacity(self.signature.outputs.len());
        for spec in &self.signature.outputs {
            let value = &outputs[spec.name.as_str()];
            let tensor = match spec.ty {
                TensorType::I64 => {
                    let (shape, data) = value
                        .try_extract_tensor::<i64>()
                        .map_err(|e| e.to_string())?;
                    let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
                    i64_tensor(&dims, data)
                }
                _ => {
                    let (shape, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(|e| e.to_string())?;
                    let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
                    f32_tensor(&dims, data)
                }
            };
            named.push(NamedTensor {
                name: spec.name.clone(),
                tensor,
            });
        }
        Ok(named)
    }
}

impl Runner for OrtRunner {
    fn run(&self, ordered: &[NnTensor]) -> Result<Vec<NamedTensor>, BackendError> {
        let values = ordered
            .iter()
            .zip(&self.signature.inputs)
            .map(|(t, spec)| to_ort(t, spec).map(|v| (spec.name.clone(), v)))
            .collect::<ort::Result<Vec<_>>>()
            .map_err(|e| invalid(e.to_string()))?;
        let (_lane, pool) = match &self.sessions {
            Sessions::Shared(pool) => (None, pool),
            Sessions::Lanes {
                lanes,
                wide,
                narrow,
            } => {
                let lane = lanes.enter();
                let pool = if lane.lane() == Lane::Wide {
                    wide
                } else {
                    narrow
                };
                (Some(lane), pool)
            }
        };
        let mut session = pool
            .take()
            .map_err(|e| backend_failure("cannot create an ONNX Runtime session", e))?;
        self.run_session(session.get(), values)
            .map_err(|e| backend_failure("ONNX Runtime inference failed", e))
    }
}
