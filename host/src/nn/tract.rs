//! The embedded default back-end: tract, a pure-Rust ONNX engine.
//!
//! Always compiled in, needs no shared library, so an edge node runs models
//! with nothing but the `nboost` binary. Graphs are optimised once at load
//! (tract's typed, decluttered, optimised plan with symbolic batch and
//! sequence dimensions) and the plan is shared: `run` takes `&self`, so
//! concurrent requests never wait on each other.
//!
//! tract runs most operators on one thread. To use the host's cores for one
//! request, a batch is split along its first (batch) axis into one slice per
//! thread, when every input and output has a free batch axis; the slices run
//! in parallel and the outputs are concatenated.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;
use wasmtime_wasi_nn::backend::{BackendError, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{Graph, Tensor as NnTensor};

use super::backend::{runner_graph, Runner};
use super::tract_form as form;
use super::{
    backend_failure, bytes_to_f32, bytes_to_i64, f32_tensor, i64_tensor, invalid, GraphLoader,
    GraphSignature, NnOptions, TensorSpec,
};
use crate::RerankError;

type Plan = Arc<TypedRunnableModel>;

/// Loads ONNX graphs into optimised tract plans.
pub struct TractLoader {
    threads: usize,
}

impl TractLoader {
    /// A loader; `options.target` must be CPU.
    pub fn new(options: &NnOptions) -> Result<Self, RerankError> {
        if options.target != super::Target::Cpu {
            return Err(RerankError::Backend(
                "the tract back-end runs on the CPU only; use --backend ort or openvino for a GPU"
                    .into(),
            ));
        }
        Ok(Self {
            threads: options.threads.max(1),
        })
    }
}

/// The typed model of an ONNX graph.
fn read_onnx(bytes: &[u8]) -> Result<TypedModel, String> {
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .map_err(|e| format!("tract cannot read the ONNX graph: {e:#}"))?
        .into_typed()
        .map_err(|e| format!("tract cannot type the graph: {e:#}"))
}

impl TractLoader {
    /// The plan of a typed model, and its signature.
    fn finish(
        &self,
        name: &str,
        mut typed: TypedModel,
        started: std::time::Instant,
        declutter: bool,
    ) -> Result<(Graph, GraphSignature), String> {
        let typed_at = started.elapsed();
        let signature = signature(&typed).map_err(|e| format!("{e:#}"))?;
        let splittable = batch_splittable(&typed);
        let plan = if declutter { typed.declutter() } else { Ok(()) }
            .and_then(|()| typed.optimize())
            .and_then(|()| super::tract_binary::replace_generic(&mut typed))
            .and_then(|_| typed.into_runnable())
            .map_err(|e| format!("tract cannot optimise the graph: {e:#}"))?;
        // Each phase's cost is logged (debug): graph load is most of a
        // model plugin's cold start.
        tracing::debug!(
            target: "nboost::nn",
            graph = name,
            read_ms = typed_at.as_secs_f64() * 1e3,
            optimise_ms = (started.elapsed() - typed_at).as_secs_f64() * 1e3,
            "tract plan built"
        );
        let runner = Arc::new(Inner {
            plan,
            signature: signature.clone(),
            threads: if splittable { self.threads } else { 1 },
        });
        Ok((runner_graph(runner, signature.clone()), signature))
    }
}

impl GraphLoader for TractLoader {
    /// Off: merging measured 0.64-0.99x on tract (its cost per row does not
    /// fall with the batch; README "Merging concurrent requests").
    fn merges_by_default(&self) -> bool {
        false
    }

    /// tract splits a call's rows over its threads, so a one-row call uses
    /// one core: a merged call per core keeps the cores busy.
    fn concurrent_calls(&self, cores: usize, _threads: usize) -> usize {
        cores
    }

    fn load(&self, name: &str, bytes: &[u8]) -> Result<(Graph, GraphSignature), String> {
        let started = std::time::Instant::now();
        let typed = read_onnx(bytes)?;
        self.finish(name, typed, started, true)
    }

    fn prepared_form(&self) -> Option<String> {
        Some(form::FORM.to_string())
    }

    fn write_prepared(&self, bytes: &[u8], out: &Path) -> Result<(), String> {
        let decluttered = read_onnx(bytes)?
            .into_decluttered()
            .map_err(|e| format!("tract cannot declutter the graph: {e:#}"))?;
        form::write(&decluttered, out)
    }

    fn load_prepared(&self, name: &str, path: &Path) -> Result<(Graph, GraphSignature), String> {
        let started = std::time::Instant::now();
        let typed = form::read(path, self.threads)?;
        // The form was decluttered before it was written: only the
        // optimiser's code generation is left to run.
        self.finish(name, typed, started, false)
    }
}

fn tensor_type(dt: DatumType) -> Option<TensorType> {
    match dt {
        DatumType::F32 => Some(TensorType::Fp32),
        DatumType::I64 => Some(TensorType::I64),
        DatumType::I32 => Some(TensorType::I32),
        _ => None,
    }
}

fn spec(model: &TypedModel, outlet: OutletId, name: String) -> TractResult<TensorSpec> {
    let fact = model.outlet_fact(outlet)?;
    let ty = tensor_type(fact.datum_type).ok_or_else(|| {
        anyhow::anyhow!("tensor `{name}` has unsupported type {:?}", fact.datum_type)
    })?;
    let dims = fact
        .shape
        .dims()
        .iter()
        .map(|d| d.to_i64().ok().map(|v| v as u64))
        .collect();
    Ok(TensorSpec { name, ty, dims })
}

fn signature(model: &TypedModel) -> TractResult<GraphSignature> {
    let inputs = model
        .input_outlets()?
        .iter()
        .map(|o| spec(model, *o, model.node(o.node).name.clone()))
        .collect::<TractResult<_>>()?;
    let outputs = model
        .output_outlets()?
        .iter()
        .map(|o| {
            let name = model
                .outlet_label(*o)
                .map(String::from)
                .unwrap_or_else(|| model.node(o.node).name.clone());
            spec(model, *o, name)
        })
        .collect::<TractResult<_>>()?;
    Ok(GraphSignature { inputs, outputs })
}

/// True when all inputs and outputs share one symbolic first dimension.
fn batch_splittable(model: &TypedModel) -> bool {
    let first = |o: &OutletId| -> Option<TDim> {
        let fact = model.outlet_fact(*o).ok()?;
        let d = fact.shape.dims().first()?.clone();
        d.to_i64().is_err().then_some(d)
    };
    let (Ok(ins), Ok(outs)) = (model.input_outlets(), model.output_outlets()) else {
        return false;
    };
    let dims: Option<Vec<TDim>> = ins.iter().chain(outs).map(first).collect();
    match dims {
        Some(d) if !d.is_empty() => d.iter().all(|x| *x == d[0]),
        _ => false,
    }
}

struct Inner {
    plan: Plan,
    signature: GraphSignature,
    threads: usize,
}

fn to_tract(t: &NnTensor, spec: &TensorSpec) -> TractResult<Tensor> {
    let shape: Vec<usize> = t.dimensions.iter().map(|d| *d as usize).collect();
    match spec.ty {
        TensorType::I64 => Tensor::from_shape(&shape, &bytes_to_i64(t)),
        TensorType::I32 => Tensor::from_shape(&shape, &bytes_to_i64(t))?
            .cast_to::<i32>()
            .map(|c| c.into_owned()),
        _ => Tensor::from_shape(&shape, &bytes_to_f32(t)),
    }
}

fn from_tract(v: &Tensor) -> TractResult<NnTensor> {
    match v.datum_type() {
        DatumType::I64 => Ok(i64_tensor(
            v.shape(),
            v.try_as_plain_ram()?.as_slice::<i64>()?,
        )),
        DatumType::F32 => Ok(f32_tensor(
            v.shape(),
            v.try_as_plain_ram()?.as_slice::<f32>()?,
        )),
        _ => {
            let f = v.cast_to::<f32>()?;
            Ok(f32_tensor(
                v.shape(),
                f.try_as_plain_ram()?.as_slice::<f32>()?,
            ))
        }
    }
}

impl Inner {
    fn run_values(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let batch = inputs
            .first()
            .map_or(0, |t| t.shape().first().copied().unwrap_or(0));
        let parts = self.threads.min(batch);
        if parts < 2 {
            return self.plan.run(inputs);
        }
        // Split every input into `parts` slices along axis 0 and run them in
        // parallel; then concatenate each output along axis 0.
        let bounds: Vec<(usize, usize)> = (0..parts)
            .map(|i| (batch * i / parts, batch * (i + 1) / parts))
            .collect();
        let slices: Vec<TVec<TValue>> = bounds
            .iter()
            .map(|(a, b)| {
                inputs
                    .iter()
                    .map(|t| t.slice(0, *a, *b).map(|s| s.into_tvalue()))
                    .collect::<TractResult<TVec<_>>>()
            })
            .collect::<TractResult<_>>()?;
        let results: Vec<TractResult<TVec<TValue>>> = std::thread::scope(|s| {
            let handles: Vec<_> = slices
                .into_iter()
                .map(|slice| s.spawn(move || self.plan.run(slice)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("tract worker panicked")))
                })
                .collect()
        });
        let results: Vec<TVec<TValue>> = results.into_iter().collect::<TractResult<_>>()?;
        (0..results[0].len())
            .map(|o| {
                let pieces: Vec<Tensor> =
                    results.iter().map(|r| r[o].clone().into_tensor()).collect();
                Tensor::stack_tensors(0, &pieces).map(|t| t.into_tvalue())
            })
            .collect()
    }
}

impl Runner for Inner {
    fn run(&self, ordered: &[NnTensor]) -> Result<Vec<NamedTensor>, BackendError> {
        let sig = &self.signature;
        let values = ordered
            .iter()
            .zip(&sig.inputs)
            .map(|(t, spec)| to_tract(t, spec).map(|t| t.into_tvalue()))
            .collect::<TractResult<TVec<_>>>()
            .map_err(|e| invalid(format!("{e:#}")))?;
        let outputs = self
            .run_values(values)
            .map_err(|e| backend_failure("tract inference failed", format!("{e:#}")))?;
        outputs
            .iter()
            .zip(&sig.outputs)
            .map(|(v, spec)| {
                from_tract(v).map(|tensor| NamedTensor {
                    name: spec.name.clone(),
                    tensor,
                })
            })
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| backend_failure("tract output conversion failed", format!("{e:#}")))
    }
}
