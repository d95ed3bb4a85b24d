//! What a back-end is: something that loads a graph and then *runs* it on
//! inputs already matched to the graph's signature. Everything else is
//! written once here or in the adapter:
//!
//! * [`runner_graph`] turns a [`Runner`] into the `wasmtime-wasi-nn` graph
//!   type the adapter holds (one generic graph and execution context: input
//!   matching by name, type, rank and static dims, and the refusal of the
//!   witx-era `set-input` / `get-output`);
//! * [`Pool`] is the bounded pool of per-graph native objects (ONNX Runtime
//!   sessions, OpenVINO inference requests) that lets concurrent requests
//!   run at once;
//! * [`library_file`] finds a back-end's shared library from its flag or
//!   environment variable, with messages that say what to do.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use wasmtime_wasi_nn::backend::{BackendError, BackendExecutionContext, BackendGraph, NamedTensor};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use super::{invalid, GraphSignature};
use crate::RerankError;

/// A loaded graph of one back-end.
pub trait Runner: Send + Sync + 'static {
    /// Run once; `inputs` are in the graph's input order and match its
    /// signature. Outputs in the graph's output order, named.
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<NamedTensor>, BackendError>;
}

/// `runner` as a wasi-nn graph with `signature`.
pub fn runner_graph(runner: Arc<dyn Runner>, signature: GraphSignature) -> Graph {
    Graph::from(Box::new(RunnerGraph {
        runner,
        signature: Arc::new(signature),
    }) as Box<dyn BackendGraph>)
}

struct RunnerGraph {
    runner: Arc<dyn Runner>,
    signature: Arc<GraphSignature>,
}

impl BackendGraph for RunnerGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        Ok(ExecutionContext::from(Box::new(RunnerContext {
            runner: self.runner.clone(),
            signature: self.signature.clone(),
        })
            as Box<dyn BackendExecutionContext>))
    }
}

struct RunnerContext {
    runner: Arc<dyn Runner>,
    signature: Arc<GraphSignature>,
}

impl BackendExecutionContext for RunnerContext {
    fn set_input(
        &mut self,
        _id: wasmtime_wasi_nn::backend::Id,
        _tensor: &Tensor,
    ) -> Result<(), BackendError> {
        Err(invalid(
            "set-input is not supported; pass inputs to compute".into(),
        ))
    }

    fn get_output(&mut self, _id: wasmtime_wasi_nn::backend::Id) -> Result<Tensor, BackendError> {
        Err(invalid(
            "get-output is not supported; use compute's result".into(),
        ))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let ordered = self.signature.order_inputs(inputs.unwrap_or_default())?;
        self.runner.run(&ordered).map(Some)
    }
}

struct PoolState<T> {
    free: Vec<T>,
    created: usize,
}

/// At most `max` native objects of one graph, made on demand; a caller
/// takes a free one or, under the cap, makes another, else waits.
pub struct Pool<T> {
    max: usize,
    make: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    state: Mutex<PoolState<T>>,
    returned: Condvar,
}

impl<T> Pool<T> {
    /// A pool holding `first` (made while loading), growing to `max` with
    /// `make`.
    pub fn new(
        first: T,
        max: usize,
        make: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            max: max.max(1),
            make: Box::new(make),
            state: Mutex::new(PoolState {
                free: vec![first],
                created: 1,
            }),
            returned: Condvar::new(),
        }
    }

    /// A free object (back to the pool when the guard drops).
    pub fn take(&self) -> Result<Pooled<'_, T>, String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = st.free.pop() {
                return Ok(Pooled {
                    pool: self,
                    item: Some(item),
                });
            }
            if st.created < self.max {
                st.created += 1;
                drop(st);
                return match (self.make)() {
                    Ok(item) => Ok(Pooled {
                        pool: self,
                        item: Some(item),
                    }),
                    Err(e) => {
                        self.forget();
                        Err(e)
                    }
                };
            }
            st = self.returned.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn forget(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).created -= 1;
        self.returned.notify_one();
    }
}

/// An object out of its [`Pool`].
pub struct Pooled<'a, T> {
    pool: &'a Pool<T>,
    item: Option<T>,
}

impl<T> Pooled<'_, T> {
    /// The object.
    pub fn get(&mut self) -> &mut T {
        self.item.as_mut().expect("present until dropped")
    }

    /// Drop the object instead of returning it (it may be broken: the
    /// bindings panicked while using it); its place can be made again.
    pub fn discard(mut self) {
        self.item = None;
        self.pool.forget();
    }
}

impl<T> Drop for Pooled<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .free
                .push(item);
            self.pool.returned.notify_one();
        }
    }
}

/// A back-end's shared library: `flag`, else the environment variable
/// `env` (`None` when neither is given); an error when the path given does
/// not exist.
pub fn library_file(flag: Option<&PathBuf>, env: &str) -> Result<Option<PathBuf>, RerankError> {
    let Some(path) = flag
        .cloned()
        .or_else(|| std::env::var_os(env).map(PathBuf::from))
    else {
        return Ok(None);
    };
    if !path.exists() {
        return Err(RerankError::Backend(format!(
            "{} does not exist (from {})",
            path.display(),
            if flag.is_some() { "the flag" } else { env }
        )));
    }
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_grows_to_its_cap_and_reuses() {
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let m = made.clone();
        let pool = Pool::new(0usize, 2, move || {
            Ok(m.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        });
        let mut a = pool.take().unwrap();
        let mut b = pool.take().unwrap();
        assert_eq!((*a.get(), *b.get()), (0, 1));
        drop(a);
        let mut c = pool.take().unwrap();
        assert_eq!(*c.get(), 0, "a returned object is reused");
        c.discard();
        let mut d = pool.take().unwrap();
        assert_eq!(*d.get(), 2, "a discarded place is made again");
        drop((b, d));
    }
}
