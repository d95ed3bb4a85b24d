//! OpenVINO, linked at run time.
//!
//! `openvino` is built with `runtime-linking`: no OpenVINO is linked into
//! `nboost`; `libopenvino_c.so` is opened when the first graph loads, from the
//! directory `--openvino-library` (or `OPENVINO_LIB_DIR`) names, else where
//! `openvino-finder` looks (`OPENVINO_INSTALL_DIR`, `INTEL_OPENVINO_DIR`,
//! `LD_LIBRARY_PATH`, the usual install paths). The PyPI `openvino` wheel
//! ships only versioned names (`libopenvino_c.so.2641`), so that directory
//! needs an unversioned `libopenvino_c.so` link; when it is missing the error
//! says which link to create. The wheel's libraries carry an `$ORIGIN` rpath,
//! so no `LD_LIBRARY_PATH` is needed.
//!
//! The bindings panic in a few places (an unexpected version string, a
//! library without the expected symbols), so every call into them runs under
//! `catch_unwind`: a failure is an error that names its cause, never a crash.
//!
//! ONNX bytes are read directly (`read_model_from_buffer`, no weights
//! tensor) and compiled once per graph; the compiled model is shared. Each
//! request takes an inference request from a small per-graph pool (created on
//! demand up to a cap), so concurrent requests do not wait on one lock.
//! On the CPU the compiled model gets `--threads` threads, the `LATENCY`
//! hint (one stream using every thread) and `f32` precision (OpenVINO
//! would otherwise pick `bf16` on CPUs that have it: about twice as fast,
//! but scores drift by up to ~1e-3 from the other back-ends). The
//! `THROUGHPUT` hint splits the threads into streams (2 threads = 2 streams
//! of 1 thread) that only pay when as many requests run at once: a
//! component scores its batches one after another, so one rerank ran on
//! one thread, at half the speed (MiniLM, 16 x 100 tokens, 2 threads: 45
//! passages/s against 86 for `LATENCY`; with two callers at once both
//! hints gave 83-85, measured with OpenVINO's Python API on the bench
//! machine). On a GPU the hint is `LATENCY` and the precision OpenVINO's
//! default.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openvino::{
    CompiledModel, Core, DeviceType, ElementType, InferRequest, Node, RwPropertyKey, Shape,
    Tensor as OvTensor,
};
use wasmtime_wasi_nn::backend::{BackendError, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{Graph, Tensor as NnTensor};

use super::backend::{library_file, runner_graph, Pool, Runner};

use super::{
    backend_failure, bytes_to_f32, bytes_to_i64, invalid, GraphLoader, GraphSignature, NnOptions,
    Target, TensorSpec,
};
use crate::RerankError;

/// Most inference requests one graph keeps. They share the compiled model
/// (and its weights); each holds its own intermediate buffers.
const MAX_REQUESTS_PER_GRAPH: usize = 4;

/// The unversioned name `openvino-sys` opens.
const LIBRARY_FILE: &str = "libopenvino_c.so";

/// Loads ONNX graphs into OpenVINO compiled models.
pub struct OpenvinoLoader {
    /// `Core` is `Send` but not `Sync`, and reading and compiling take
    /// `&mut`: graph loads (rare, once per graph) take turns.
    core: Mutex<Core>,
    device: &'static str,
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Run `f`, turning a panic in the bindings into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(format!(
            "{what}: the OpenVINO bindings panicked: {}",
            panic_message(&*p)
        ))
    })
}

/// The `libopenvino_c.so` to open: in the flag's (or `OPENVINO_LIB_DIR`'s)
/// directory, else wherever `openvino-finder` finds one.
fn library_path(options: &NnOptions) -> Result<PathBuf, RerankError> {
    let dir = library_file(options.openvino_library.as_ref(), "OPENVINO_LIB_DIR")?;
    let Some(dir) = dir else {
        let found = catch_unwind(openvino_sys::library::find).ok().flatten();
        return found.ok_or_else(|| {
            RerankError::Backend(
                "the OpenVINO back-end needs libopenvino_c.so: pass --openvino-library DIR or set \
                 OPENVINO_LIB_DIR (the PyPI `openvino` wheel ships it under \
                 site-packages/openvino/libs/, as libopenvino_c.so.<version>: create the \
                 unversioned link there first)"
                    .into(),
            )
        });
    };
    if dir.is_file() {
        // A path to the library file itself: open it as named.
        return Ok(dir);
    }
    if !dir.is_dir() {
        return Err(RerankError::Backend(format!(
            "OpenVINO library directory {} does not exist",
            dir.display()
        )));
    }
    let path = dir.join(LIBRARY_FILE);
    if path.exists() {
        return Ok(path);
    }
    match versioned_library(&dir) {
        Some(versioned) => Err(RerankError::Backend(format!(
            "{} has {versioned} but no {LIBRARY_FILE}, which the OpenVINO bindings open (the PyPI \
             wheel ships only versioned names); create the link with: ln -s {versioned} {}",
            dir.display(),
            path.display()
        ))),
        None => Err(RerankError::Backend(format!(
            "{} holds no {LIBRARY_FILE}; point --openvino-library at the directory of OpenVINO's C \
             library (for the PyPI wheel: site-packages/openvino/libs)",
            dir.display()
        ))),
    }
}

/// A `libopenvino_c.so.<version>` in `dir`, if any (the newest by name).
fn versioned_library(dir: &Path) -> Option<String> {
    let prefix = format!("{LIBRARY_FILE}.");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .max()
}

impl OpenvinoLoader {
    /// Open the OpenVINO library and set up a core for `options.target`.
    pub fn new(options: &NnOptions) -> Result<Self, RerankError> {
        let path = library_path(options)?;
        let shown = path.display().to_string();
        guarded("loading the library", || {
            openvino_sys::library::load_from(&path)
        })
        .map_err(|e| {
            RerankError::Backend(format!("{shown} is not a usable OpenVINO C library: {e}"))
        })?;
        let threads = options.threads.max(1);
        let target = options.target;
        let (core, device) = guarded("setting up OpenVINO", || {
            let mut core = Core::new().map_err(|e| format!("cannot create an OpenVINO core: {e}"))?;
            let device = match target {
                Target::Cpu => {
                    let cpu = DeviceType::CPU;
                    let threads = threads.to_string();
                    let settings = [
                        (RwPropertyKey::InferenceNumThreads, threads.as_str()),
                        (RwPropertyKey::HintPerformanceMode, "LATENCY"),
                        (RwPropertyKey::HintInferencePrecision, "f32"),
                    ];
                    for (key, value) in settings {
                        core.set_property(&cpu, &key, value).map_err(|e| {
                            format!("cannot set the CPU property {} to {value}: {e}", key.as_ref())
                        })?;
                    }
                    "CPU"
                }
                Target::Gpu => {
                    let devices = core
                        .available_devices()
                        .map_err(|e| format!("cannot list the OpenVINO devices: {e}"))?;
                    if !devices.iter().any(|d| d.as_ref().starts_with("GPU")) {
                        let names: Vec<&str> = devices.iter().map(|d| d.as_ref()).collect();
                        return Err(format!(
                            "GPU target requested, but OpenVINO sees no GPU device (available: {}); \
                             OpenVINO's GPU plugin needs an Intel GPU and its OpenCL driver",
                            if names.is_empty() { "none".into() } else { names.join(", ") }
                        ));
                    }
                    core.set_property(
                        &DeviceType::GPU,
                        &RwPropertyKey::HintPerformanceMode,
                        "LATENCY",
                    )
                    .map_err(|e| format!("cannot set the GPU performance hint: {e}"))?;
                    "GPU"
                }
            };
            Ok((core, device))
        })
        .map_err(|e| RerankError::Backend(format!("OpenVINO ({shown}): {e}")))?;
        Ok(Self {
            core: Mutex::new(core),
            device,
        })
    }
}

fn tensor_type(t: ElementType) -> Option<TensorType> {
    match t {
        ElementType::F32 => Some(TensorType::Fp32),
        ElementType::I64 => Some(TensorType::I64),
        ElementType::I32 => Some(TensorType::I32),
        _ => None,
    }
}

fn element_type(t: TensorType) -> ElementType {
    match t {
        TensorType::I64 => ElementType::I64,
        TensorType::I32 => ElementType::I32,
        _ => ElementType::F32,
    }
}

/// A port's name, element type and partial shape.
fn port_spec(node: &Node, kind: &str, index: usize) -> Result<TensorSpec, String> {
    let name = match node.get_name() {
        Ok(n) => n,
        // Outputs are read back by index; a nameless one gets a made-up name.
        Err(_) if kind == "output" => format!("output{index}"),
        Err(e) => return Err(format!("{kind} {index} has no name: {e}")),
    };
    let et = node
        .get_element_type()
        .map_err(|e| format!("{kind} `{name}`: cannot read its element type: {e}"))?;
    let ty = tensor_type(et).ok_or_else(|| format!("{kind} `{name}` has unsupported type {et}"))?;
    let shape = node
        .get_partial_shape()
        .map_err(|e| format!("{kind} `{name}`: cannot read its shape: {e}"))?;
    let rank = shape.get_rank();
    if rank.get_min() != rank.get_max() || rank.get_min() < 0 {
        return Err(format!(
            "{kind} `{name}` has a dynamic rank, which is not supported"
        ));
    }
    let dims = shape
        .get_dimensions()
        .iter()
        .map(|d| (d.get_min() == d.get_max() && d.get_min() >= 0).then_some(d.get_min() as u64))
        .collect();
    Ok(TensorSpec { name, ty, dims })
}

impl OpenvinoLoader {
    /// Read, inspect and compile one ONNX graph.
    fn compile(&self, bytes: &[u8]) -> Result<(CompiledModel, GraphSignature), String> {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
        let model = core
            .read_model_from_buffer(bytes, None)
            .map_err(|e| format!("OpenVINO cannot read the ONNX graph: {e}"))?;
        let n_in = model
            .get_inputs_len()
            .map_err(|e| format!("cannot count the graph's inputs: {e}"))?;
        let n_out = model
            .get_outputs_len()
            .map_err(|e| format!("cannot count the graph's outputs: {e}"))?;
        let inputs = (0..n_in)
            .map(|i| {
                let node = model
                    .get_input_by_index(i)
                    .map_err(|e| format!("cannot read input {i}: {e}"))?;
                port_spec(&node, "input", i)
            })
            .collect::<Result<_, _>>()?;
        let outputs = (0..n_out)
            .map(|i| {
                let node = model
                    .get_output_by_index(i)
                    .map_err(|e| format!("cannot read output {i}: {e}"))?;
                port_spec(&node, "output", i)
            })
            .collect::<Result<_, _>>()?;
        let read = started.elapsed();
        let compiled = core
            .compile_model(&model, DeviceType::from(self.device))
            .map_err(|e| format!("OpenVINO cannot compile the graph for {}: {e}", self.device))?;
        let property = |key: RwPropertyKey| {
            compiled
                .get_property(&key.into())
                .map_or_else(|e| format!("? ({e})"), |v| v.into_owned())
        };
        tracing::debug!(
            target: "nboost::nn",
            device = self.device,
            streams = property(RwPropertyKey::NumStreams),
            threads = property(RwPropertyKey::InferenceNumThreads),
            hint = property(RwPropertyKey::HintPerformanceMode),
            precision = property(RwPropertyKey::HintInferencePrecision),
            read_ms = read.as_millis() as u64,
            compile_ms = (started.elapsed() - read).as_millis() as u64,
            "OpenVINO graph compiled"
        );
        Ok((compiled, GraphSignature { inputs, outputs }))
    }
}

impl GraphLoader for OpenvinoLoader {
    fn load(&self, _name: &str, bytes: &[u8]) -> Result<(Graph, GraphSignature), String> {
        guarded("loading the graph", || {
            let (mut compiled, signature) = self.compile(bytes)?;
            let first = compiled
                .create_infer_request()
                .map_err(|e| format!("cannot create an OpenVINO inference request: {e}"))?;
            // `&mut` only to create requests; inference never locks it.
            let compiled = Arc::new(Mutex::new(compiled));
            let runner = Arc::new(OpenvinoRunner {
                signature: signature.clone(),
                requests: Pool::new(first, MAX_REQUESTS_PER_GRAPH, move || {
                    guarded("creating an inference request", || {
                        compiled
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .create_infer_request()
                            .map_err(|e| e.to_string())
                    })
                }),
            });
            Ok((runner_graph(runner, signature.clone()), signature))
        })
    }
}

/// A graph's inference requests (sharing the compiled model).
struct OpenvinoRunner {
    signature: GraphSignature,
    requests: Pool<InferRequest>,
}

fn to_ov(t: &NnTensor, spec: &TensorSpec) -> Result<OvTensor, BackendError> {
    let ov = |e: openvino::InferenceError| backend_failure("cannot build an OpenVINO tensor", e);
    let dims: Vec<i64> = t.dimensions.iter().map(|d| i64::from(*d)).collect();
    let shape = Shape::new(&dims).map_err(ov)?;
    let mut tensor = OvTensor::new(element_type(spec.ty), &shape).map_err(ov)?;
    if tensor.get_byte_size().map_err(ov)? == 0 {
        return Ok(tensor);
    }
    let dst = tensor.get_raw_data_mut().map_err(ov)?;
    match spec.ty {
        TensorType::I64 => fill(
            dst,
            bytes_to_i64(t).iter().map(|v| v.to_ne_bytes()),
            t,
            spec,
        )?,
        TensorType::I32 => fill(
            dst,
            bytes_to_i64(t).iter().map(|v| (*v as i32).to_ne_bytes()),
            t,
            spec,
        )?,
        _ => fill(
            dst,
            bytes_to_f32(t).iter().map(|v| v.to_ne_bytes()),
            t,
            spec,
        )?,
    }
    Ok(tensor)
}

/// Copy `values` into `dst`, which must hold exactly that many elements.
fn fill<const N: usize>(
    dst: &mut [u8],
    values: impl ExactSizeIterator<Item = [u8; N]>,
    t: &NnTensor,
    spec: &TensorSpec,
) -> Result<(), BackendError> {
    if dst.len() != values.len() * N {
        return Err(invalid(format!(
            "input `{}`: dimensions {:?} need {} bytes, {} elements were given",
            spec.name,
            t.dimensions,
            dst.len(),
            values.len()
        )));
    }
    for (d, v) in dst.chunks_exact_mut(N).zip(values) {
        d.copy_from_slice(&v);
    }
    Ok(())
}

/// Native-endian element bytes to the little-endian bytes wasi-nn carries.
fn to_le(data: &[u8], width: usize) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        return data.to_vec();
    }
    data.chunks_exact(width)
        .flat_map(|c| c.iter().rev().copied())
        .collect()
}

/// One inference on `request`: set the inputs, run, copy the outputs out.
fn infer(
    request: &mut InferRequest,
    inputs: &[OvTensor],
    sig: &GraphSignature,
) -> Result<Vec<NamedTensor>, String> {
    for (i, t) in inputs.iter().enumerate() {
        request
            .set_input_tensor_by_index(i, t)
            .map_err(|e| format!("cannot set input `{}`: {e}", sig.inputs[i].name))?;
    }
    request.infer().map_err(|e| e.to_string())?;
    let mut named = Vec::with_capacity(sig.outputs.len());
    for (i, spec) in sig.outputs.iter().enumerate() {
        let out = request
            .get_output_tensor_by_index(i)
            .map_err(|e| format!("cannot read output `{}`: {e}", spec.name))?;
        let et = out
            .get_element_type()
            .map_err(|e| format!("output `{}`: {e}", spec.name))?;
        if tensor_type(et) != Some(spec.ty) {
            return Err(format!(
                "output `{}` is {et}, the graph declared {:?}",
                spec.name, spec.ty
            ));
        }
        let shape = out
            .get_shape()
            .map_err(|e| format!("output `{}`: {e}", spec.name))?;
        let dims = shape
            .get_dimensions()
            .iter()
            .map(|d| u32::try_from(*d))
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|_| {
                format!(
                    "output `{}` has dimensions {:?}",
                    spec.name,
                    shape.get_dimensions()
                )
            })?;
        let size = out
            .get_byte_size()
            .map_err(|e| format!("output `{}`: {e}", spec.name))?;
        let width = if spec.ty == TensorType::I64 { 8 } else { 4 };
        let data = if size == 0 {
            Vec::new()
        } else {
            let raw = out
                .get_raw_data()
                .map_err(|e| format!("output `{}`: {e}", spec.name))?;
            to_le(raw, width)
        };
        named.push(NamedTensor {
            name: spec.name.clone(),
            tensor: NnTensor::new(dims, spec.ty, data),
        });
    }
    Ok(named)
}

impl Runner for OpenvinoRunner {
    fn run(&self, ordered: &[NnTensor]) -> Result<Vec<NamedTensor>, BackendError> {
        let sig = &self.signature;
        let tensors = catch_unwind(AssertUnwindSafe(|| {
            ordered
                .iter()
                .zip(&sig.inputs)
                .map(|(t, spec)| to_ov(t, spec))
                .collect::<Result<Vec<_>, _>>()
        }))
        .unwrap_or_else(|p| {
            Err(backend_failure(
                "cannot build an OpenVINO tensor",
                panic_message(&*p),
            ))
        })?;
        let mut request = self
            .requests
            .take()
            .map_err(|e| backend_failure("cannot create an OpenVINO inference request", e))?;
        match catch_unwind(AssertUnwindSafe(|| infer(request.get(), &tensors, sig))) {
            Ok(result) => result.map_err(|e| backend_failure("OpenVINO inference failed", e)),
            Err(p) => {
                request.discard();
                Err(backend_failure(
                    "OpenVINO inference failed",
                    format!("the bindings panicked: {}", panic_message(&*p)),
                ))
            }
        }
    }
}

#[cfg(test)]
#[path = "openvino_tests.rs"]
mod tests;
