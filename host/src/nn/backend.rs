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
//! * [`Lanes`] decides, per call, between one call on all of a graph's
//!   threads and several single-threaded calls side by side;
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
        let pool = Self::empty(max, make);
        {
            let mut st = pool.state.lock().unwrap_or_else(|e| e.into_inner());
            st.free.push(first);
            st.created = 1;
        }
        pool
    }

    /// An empty pool: its first object is made on the first [`Pool::take`].
    pub fn empty(max: usize, make: impl Fn() -> Result<T, String> + Send + Sync + 'static) -> Self {
        Self {
            max: max.max(1),
            make: Box::new(make),
            state: Mutex::new(PoolState {
                free: Vec::new(),
                created: 0,
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

/// The kind of call [`Lanes::enter`] admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Alone, on every thread the graph was given: the lowest latency.
    Wide,
    /// One thread, beside other narrow calls (at most one per core).
    Narrow,
}

#[derive(Default)]
struct LaneState {
    wide: bool,
    narrow: usize,
    waiting: usize,
}

/// Per-graph admission between one wide call and several narrow ones.
///
/// Why: a multi-threaded ONNX Runtime call parallelises each operator, and
/// its threads meet at a barrier after every one, so a small call spends
/// much of its time waiting there; two calls of one thread each, side by
/// side, do the same work with no barriers. Measured (2 cores, 8 clients
/// of one passage each): the cross-encoder 1.5-1.7k requests/s on 2
/// threads against 2.6-2.8k with `--threads 1`, MiniLM 20 against 40
/// unmerged. But a lone call on one thread leaves a core idle and takes
/// twice as long. So a call that finds the graph idle, with nobody
/// waiting, runs wide; any other waits until no wide call runs and fewer
/// than `narrow_max` narrow ones do, and runs narrow. Under steady load
/// the calls settle on the narrow lanes; a lone request keeps its latency.
pub struct Lanes {
    narrow_max: usize,
    state: Mutex<LaneState>,
    changed: Condvar,
}

impl Lanes {
    /// At most `narrow_max` narrow calls at once (the cores).
    pub fn new(narrow_max: usize) -> Self {
        Self {
            narrow_max: narrow_max.max(1),
            state: Mutex::default(),
            changed: Condvar::new(),
        }
    }

    /// Wait for a lane; it is held until the guard drops.
    pub fn enter(&self) -> LaneGuard<'_> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.wide && st.narrow == 0 && st.waiting == 0 {
            st.wide = true;
            return LaneGuard {
                lanes: self,
                lane: Lane::Wide,
            };
        }
        st.waiting += 1;
        while st.wide || st.narrow >= self.narrow_max {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.waiting -= 1;
        st.narrow += 1;
        LaneGuard {
            lanes: self,
            lane: Lane::Narrow,
        }
    }
}

/// A lane held (see [`Lanes::enter`]).
pub struct LaneGuard<'a> {
    lanes: &'a Lanes,
    lane: Lane,
}

impl LaneGuard<'_> {
    /// Which lane this call runs on.
    pub fn lane(&self) -> Lane {
        self.lane
    }
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.lanes.state.lock().unwrap_or_else(|e| e.into_inner());
        match self.lane {
            Lane::Wide => st.wide = false,
            Lane::Narrow => st.narrow -= 1,
        }
        self.lanes.changed.notify_all();
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

    #[test]
    fn a_lone_call_runs_wide_and_calls_side_by_side_run_narrow() {
        use std::sync::mpsc::{channel, Receiver, Sender};
        use std::time::Duration;
        let lanes = Arc::new(Lanes::new(2));
        // A caller on its own thread: reports its lane, holds it until told.
        let caller = |lanes: Arc<Lanes>| {
            let (lane_tx, lane_rx): (Sender<Lane>, Receiver<Lane>) = channel();
            let (go_tx, go_rx) = channel::<()>();
            let handle = std::thread::spawn(move || {
                let guard = lanes.enter();
                lane_tx.send(guard.lane()).unwrap();
                go_rx.recv().ok();
            });
            (lane_rx, go_tx, handle)
        };
        let wide = lanes.enter();
        assert_eq!(wide.lane(), Lane::Wide, "an idle graph runs a call wide");
        let (b_lane, b_go, b) = caller(lanes.clone());
        assert!(
            b_lane.recv_timeout(Duration::from_millis(100)).is_err(),
            "nobody starts beside a wide call"
        );
        drop(wide);
        assert_eq!(b_lane.recv().unwrap(), Lane::Narrow, "it met another call");
        let c = lanes.enter();
        assert_eq!(c.lane(), Lane::Narrow, "busy: narrow, beside the first");
        let (d_lane, d_go, d) = caller(lanes.clone());
        assert!(
            d_lane.recv_timeout(Duration::from_millis(100)).is_err(),
            "at most narrow_max narrow calls at once"
        );
        drop(c);
        assert_eq!(d_lane.recv().unwrap(), Lane::Narrow);
        for (go, handle) in [(b_go, b), (d_go, d)] {
            go.send(()).unwrap();
            handle.join().unwrap();
        }
        assert_eq!(lanes.enter().lane(), Lane::Wide, "idle again: wide again");
    }

    #[test]
    fn an_empty_pool_makes_its_first_object_on_demand() {
        let pool = Pool::empty(1, || Ok(7u8));
        assert_eq!(*pool.take().unwrap().get(), 7);
    }
}
