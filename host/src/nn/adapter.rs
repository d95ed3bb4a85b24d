//! The one wasi-nn adapter: the WIT `wasi:nn` host functions every plugin
//! calls, in front of whichever back-end runs the graph.
//!
//! wasmtime-wasi-nn's own WIT host copies tensors into host memory without
//! accounting, runs `compute` without a deadline, and logs every failure at
//! ERROR. Everything here runs outside the sandbox on the guest's behalf, so
//! this adapter (bindings generated with `bindgen!` from `wit/deps/nn`)
//! bounds each of those:
//!
//! * **memory:** every tensor, execution context, graph handle and error a
//!   guest keeps alive is charged to the instance's [`MemoryBudget`] (the
//!   same budget its linear memory draws from) and refunded on drop; a
//!   tensor past the budget ends the call as *out of memory* ([`OverBudget`]);
//! * **work per `compute`:** the largest input may have at most
//!   [`NnLimits::max_compute_elements`] elements (batch x tokens for a BERT
//!   graph: wasi-nn `too-large` beyond), and the output size is estimated
//!   from the graph's signature *before* the back-end runs;
//! * **time:** a `compute` runs synchronously on the caller's thread, where
//!   no epoch or timer can stop it, so it is kept under the call's deadline
//!   by construction: a batch over [`NnLimits::chunk_elements`] is split
//!   along its batch axis (when the graph has one) and the deadline is
//!   checked between chunks; each graph's measured cost per element refuses
//!   a `compute` that would not finish in the time left. Either way the
//!   call ends as a *timeout* ([`DeadlineExceeded`]);
//! * **logs:** a guest can fail thousands of calls a second; each instance
//!   logs its first few wasi-nn failures per call and counts the rest
//!   ([`LogLimiter`]), reported in one summary line by the sandbox.
//!
//! Only `load-by-name` of the component's allowed graphs is offered; raw
//! `load` answers `invalid-encoding`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use once_cell::sync::OnceCell;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_nn::backend::NamedTensor as BackendTensor;
use wasmtime_wasi_nn::wit::TensorType as BackendType;
use wasmtime_wasi_nn::{ExecutionContext, Tensor};

use super::compute::{run, Failure};
use super::{LoadedGraph, NnHost};
use crate::meter::MemoryBudget;

mod generated {
    wasmtime::component::bindgen!({
        world: "ml",
        path: "../wit/deps/nn/wasi-nn.wit",
        with: {
            "wasi:nn/graph.graph": super::GraphHandle,
            "wasi:nn/tensor.tensor": super::HeldTensor,
            "wasi:nn/inference.graph-execution-context": super::ContextHandle,
            "wasi:nn/errors.error": super::NnError,
        },
        imports: { default: trappable },
        trappable_error_type: {
            "wasi:nn/errors.error" => super::NnError,
        },
    });
}
use generated::wasi::nn as wit;
pub(super) use wit::errors::ErrorCode;
use wit::tensor::TensorType;

/// Host bytes charged for one graph handle, error or context on top of its
/// data: bounds handle-table exhaustion by the same budget as tensors.
const HANDLE_COST: u64 = 256;
/// Host bytes charged for one execution context.
const CONTEXT_COST: u64 = 4 << 10;
/// wasi-nn failures logged per instance and call; the rest are counted.
const LOGGED_FAILURES_PER_CALL: u32 = 4;

/// Per-call bounds on wasi-nn work (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NnLimits {
    /// Most bytes of tensor data one `compute` may pass in, and (estimated
    /// before, checked after) get out.
    pub max_tensor_bytes: usize,
    /// Most elements in the largest input of one `compute`. For a BERT
    /// graph that is batch x tokens. Default 32 768 (64 x 512, the largest
    /// batch a MiniLM plugin ever needs); one such compute takes a few
    /// seconds on 2 cores.
    pub max_compute_elements: u64,
    /// A batch with more elements than this in its largest input is run in
    /// chunks along the batch axis, with a deadline check between chunks.
    /// Default 4 096 (16 x 256: MiniLM's own batch, about 0.3 s on 2 cores),
    /// so a compute overruns its deadline by at most one chunk.
    pub chunk_elements: u64,
}

impl Default for NnLimits {
    fn default() -> Self {
        Self {
            max_tensor_bytes: 128 << 20,
            max_compute_elements: 32 << 10,
            chunk_elements: 4 << 10,
        }
    }
}

/// The call ran out of time inside wasi-nn: the trap that ends the call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeadlineExceeded(pub String);

/// A host object would take the instance past its memory budget: the trap
/// that ends the call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OverBudget(pub String);

/// Counts host log lines one instance causes, so a failing guest cannot
/// flood the host's log.
#[derive(Debug, Default)]
pub struct LogLimiter {
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Log through `f` unless this call's share is used up.
    pub fn event(&mut self, f: impl FnOnce()) {
        if self.logged < LOGGED_FAILURES_PER_CALL {
            self.logged += 1;
            f();
        } else {
            self.suppressed += 1;
        }
    }

    /// Start a new call; returns how many lines the last one suppressed.
    pub fn reset(&mut self) -> u64 {
        self.logged = 0;
        std::mem::take(&mut self.suppressed)
    }
}

/// One instance's wasi-nn state: its allow-list of graphs, limits,
/// deadline and log share.
pub struct NnState {
    host: Arc<NnHost>,
    graphs: HashMap<String, OnceCell<LoadedGraph>>,
    limits: NnLimits,
    /// When the current call must end (set by the sandbox per call).
    pub deadline: Option<Instant>,
    /// Log lines of this instance.
    pub log: LogLimiter,
}

impl NnState {
    /// A state whose graphs resolve lazily through `host` (manifest graphs)
    /// or are given loaded (`preloaded`, e.g. a tenant's uploads).
    pub fn new(
        host: Arc<NnHost>,
        lazy: &[String],
        preloaded: &[(String, LoadedGraph)],
        limits: NnLimits,
    ) -> Self {
        let mut graphs: HashMap<String, OnceCell<LoadedGraph>> =
            lazy.iter().map(|n| (n.clone(), OnceCell::new())).collect();
        for (name, g) in preloaded {
            graphs.insert(name.clone(), OnceCell::with_value(g.clone()));
        }
        Self {
            host,
            graphs,
            limits,
            deadline: None,
            log: LogLimiter::default(),
        }
    }

    fn graph(&mut self, name: &str) -> Result<LoadedGraph, String> {
        let Some(cell) = self.graphs.get(name) else {
            return Err(format!("no graph `{name}` is allowed for this component"));
        };
        let host = &self.host;
        cell.get_or_try_init(|| host.graph(name))
            .cloned()
            .map_err(|e| e.to_string())
    }
}

/// A graph handle held by a guest.
pub struct GraphHandle(LoadedGraph);

/// A tensor held by a guest (charged to its budget).
pub struct HeldTensor(Tensor);

impl HeldTensor {
    fn cost(&self) -> u64 {
        tensor_cost(&self.0)
    }
}

fn tensor_cost(t: &Tensor) -> u64 {
    t.data.len() as u64 + 4 * t.dimensions.len() as u64 + HANDLE_COST
}

/// An execution context held by a guest.
pub struct ContextHandle {
    ctx: ExecutionContext,
    graph: LoadedGraph,
}

/// A wasi-nn error as the guest sees it.
#[derive(Debug)]
pub struct NnError {
    code: ErrorCode,
    message: String,
}

/// What the wasi-nn host functions see of a store.
pub struct NnView<'a> {
    table: &'a mut ResourceTable,
    state: &'a mut NnState,
    budget: &'a mut MemoryBudget,
}

impl<'a> NnView<'a> {
    /// A view over the parts of a store's data the adapter uses.
    pub fn new(
        table: &'a mut ResourceTable,
        state: &'a mut NnState,
        budget: &'a mut MemoryBudget,
    ) -> Self {
        Self {
            table,
            state,
            budget,
        }
    }

    fn charge(&mut self, bytes: u64, what: &str) -> wasmtime::Result<()> {
        self.budget
            .charge(bytes, what)
            .map_err(|m| wasmtime::Error::new(OverBudget(format!("wasi-nn: {m}"))))
    }

    /// A wasi-nn error for the guest, logged within the instance's share.
    fn fail<T>(
        &mut self,
        code: ErrorCode,
        message: String,
    ) -> wasmtime::Result<Result<T, Resource<NnError>>> {
        self.state.log.event(|| {
            tracing::warn!(target: "nboost::nn", code = ?code, "wasi-nn call failed: {message}");
        });
        let cost = HANDLE_COST + message.len() as u64;
        self.charge(cost, "a wasi-nn error")?;
        let e = self.table.push(NnError { code, message })?;
        Ok(Err(e))
    }
}

struct HasNnView;

impl HasData for HasNnView {
    type Data<'a> = NnView<'a>;
}

/// Link the wasi-nn interfaces, served by this adapter.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    wit::graph::add_to_linker::<_, HasNnView>(linker, view)?;
    wit::tensor::add_to_linker::<_, HasNnView>(linker, view)?;
    wit::inference::add_to_linker::<_, HasNnView>(linker, view)?;
    wit::errors::add_to_linker::<_, HasNnView>(linker, view)?;
    Ok(())
}

fn to_backend(ty: TensorType) -> BackendType {
    match ty {
        TensorType::Fp16 => BackendType::Fp16,
        TensorType::Fp32 => BackendType::Fp32,
        TensorType::Fp64 => BackendType::Fp64,
        TensorType::Bf16 => BackendType::Bf16,
        TensorType::U8 => BackendType::U8,
        TensorType::I32 => BackendType::I32,
        TensorType::I64 => BackendType::I64,
    }
}

fn from_backend(ty: BackendType) -> TensorType {
    match ty {
        BackendType::Fp16 => TensorType::Fp16,
        BackendType::Fp32 => TensorType::Fp32,
        BackendType::Fp64 => TensorType::Fp64,
        BackendType::Bf16 => TensorType::Bf16,
        BackendType::U8 => TensorType::U8,
        BackendType::I32 => TensorType::I32,
        BackendType::I64 => TensorType::I64,
    }
}

impl wit::graph::Host for NnView<'_> {
    fn load(
        &mut self,
        _builders: Vec<wit::graph::GraphBuilder>,
        _encoding: wit::graph::GraphEncoding,
        _target: wit::graph::ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<GraphHandle>, Resource<NnError>>> {
        self.fail(
            ErrorCode::InvalidEncoding,
            "loading graph bytes from a plugin is not offered; use load-by-name with a graph \
             the component is allowed"
                .into(),
        )
    }

    fn load_by_name(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<GraphHandle>, Resource<NnError>>> {
        match self.state.graph(&name) {
            Ok(g) => {
                self.charge(HANDLE_COST, "a graph handle")?;
                Ok(Ok(self.table.push(GraphHandle(g))?))
            }
            Err(m) => self.fail(ErrorCode::NotFound, m),
        }
    }
}

impl wit::graph::HostGraph for NnView<'_> {
    fn init_execution_context(
        &mut self,
        graph: Resource<GraphHandle>,
    ) -> wasmtime::Result<Result<Resource<ContextHandle>, Resource<NnError>>> {
        let graph = self.table.get(&graph)?.0.clone();
        match graph.graph.init_execution_context() {
            Ok(ctx) => {
                self.charge(CONTEXT_COST, "an execution context")?;
                Ok(Ok(self.table.push(ContextHandle { ctx, graph })?))
            }
            Err(e) => self.fail(ErrorCode::RuntimeError, e.to_string()),
        }
    }

    fn drop(&mut self, graph: Resource<GraphHandle>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        self.budget.refund(HANDLE_COST);
        Ok(())
    }
}

impl wit::tensor::Host for NnView<'_> {}

impl wit::tensor::HostTensor for NnView<'_> {
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<HeldTensor>> {
        let t = HeldTensor(Tensor::new(dimensions, to_backend(ty), data));
        // The bytes are already copied (wasmtime bounds that copy by the
        // hostcall budget); keeping them is what is charged.
        self.charge(t.cost(), "a wasi-nn tensor")?;
        Ok(self.table.push(t)?)
    }

    fn dimensions(&mut self, tensor: Resource<HeldTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.0.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<HeldTensor>) -> wasmtime::Result<TensorType> {
        Ok(from_backend(self.table.get(&tensor)?.0.ty))
    }

    fn data(&mut self, tensor: Resource<HeldTensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.0.data.clone())
    }

    fn drop(&mut self, tensor: Resource<HeldTensor>) -> wasmtime::Result<()> {
        let t = self.table.delete(tensor)?;
        self.budget.refund(t.cost());
        Ok(())
    }
}

impl wit::inference::Host for NnView<'_> {}

impl wit::inference::HostGraphExecutionContext for NnView<'_> {
    fn compute(
        &mut self,
        ctx: Resource<ContextHandle>,
        inputs: Vec<(String, Resource<HeldTensor>)>,
    ) -> wasmtime::Result<Result<Vec<(String, Resource<HeldTensor>)>, Resource<NnError>>> {
        // The inputs move out of the guest's table into the compute; they
        // stay charged until it ends.
        let mut named = Vec::with_capacity(inputs.len());
        let mut held = 0u64;
        for (name, r) in inputs {
            let t = self.table.delete(r)?;
            held += t.cost();
            named.push(BackendTensor { name, tensor: t.0 });
        }
        let limits = self.state.limits;
        let deadline = self.state.deadline;
        let result = {
            let budget = &*self.budget;
            let handle = self.table.get_mut(&ctx)?;
            let meta = handle.graph.meta.clone();
            run(&mut handle.ctx, &meta, named, &limits, deadline, budget)
        };
        self.budget.refund(held);
        match result {
            Ok(outputs) => {
                let mut out = Vec::with_capacity(outputs.len());
                for BackendTensor { name, tensor } in outputs {
                    let t = HeldTensor(tensor);
                    self.charge(t.cost(), "a wasi-nn output tensor")?;
                    out.push((name, self.table.push(t)?));
                }
                Ok(Ok(out))
            }
            Err(Failure::Guest(code, message)) => self.fail(code, message),
            Err(Failure::Trap(e)) => Err(e),
        }
    }

    fn drop(&mut self, ctx: Resource<ContextHandle>) -> wasmtime::Result<()> {
        self.table.delete(ctx)?;
        self.budget.refund(CONTEXT_COST);
        Ok(())
    }
}

impl wit::errors::Host for NnView<'_> {
    fn convert_error(&mut self, err: NnError) -> wasmtime::Result<NnError> {
        Ok(err)
    }
}

impl wit::errors::HostError for NnView<'_> {
    fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&error)?.code)
    }

    fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        let e = self.table.delete(error)?;
        self.budget.refund(HANDLE_COST + e.message.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_per_call_are_capped() {
        let mut l = LogLimiter::default();
        let mut n = 0;
        for _ in 0..100 {
            l.event(|| n += 1);
        }
        assert_eq!(n, LOGGED_FAILURES_PER_CALL);
        assert_eq!(l.reset(), 100 - u64::from(LOGGED_FAILURES_PER_CALL));
        assert_eq!(l.reset(), 0);
    }
}
