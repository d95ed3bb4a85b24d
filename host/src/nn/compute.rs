//! One wasi-nn `compute`, bounded: the checks before the back-end runs
//! (bytes, element cap, estimated output size against the cap and the
//! instance's memory budget), the split of a large batch into chunks along
//! its batch axis with a deadline check before each, and each graph's
//! measured cost per element that predicts whether a chunk fits in the time
//! left. A compute no larger than one chunk goes through the graph's merger
//! when merging is on (`nn::merge`), which may run it in one batch with
//! other callers' computes. The adapter (`nn::adapter`) calls [`run`] with
//! the guest's tensors.

use std::time::{Duration, Instant};

use wasmtime_wasi_nn::backend::{BackendError, NamedTensor as BackendTensor};
use wasmtime_wasi_nn::{ExecutionContext, Tensor};

use super::adapter::{DeadlineExceeded, ErrorCode, NnLimits, OverBudget};
use super::merge::{Left, Merger};
use super::{check_tensors, element_size};
use crate::meter::MemoryBudget;

/// How a compute failed: an error the guest gets, or the end of the call.
pub(super) enum Failure {
    Guest(ErrorCode, String),
    Trap(wasmtime::Error),
}

fn from_backend_error(e: BackendError) -> Failure {
    match e {
        BackendError::UnsupportedTensorType(m) => Failure::Guest(ErrorCode::InvalidArgument, m),
        BackendError::NotEnoughMemory(n) => Failure::Guest(
            ErrorCode::TooLarge,
            format!("the tensors of this compute need {n} bytes, over the limit"),
        ),
        other => Failure::Guest(ErrorCode::RuntimeError, format!("{other:#}")),
    }
}

fn elements(t: &Tensor) -> u64 {
    t.dimensions
        .iter()
        .fold(1u64, |acc, d| acc.saturating_mul(u64::from(*d)))
}

fn deadline_failure(msg: String) -> Failure {
    Failure::Trap(wasmtime::Error::new(DeadlineExceeded(msg)))
}

/// Check, then run one compute, in chunks when it is large.
pub(super) fn run(
    ctx: &mut ExecutionContext,
    meta: &GraphMeta,
    inputs: Vec<BackendTensor>,
    limits: &NnLimits,
    deadline: Option<Instant>,
    budget: &MemoryBudget,
) -> Result<Vec<BackendTensor>, Failure> {
    check_tensors(
        inputs.iter().map(|t| (t.name.as_str(), &t.tensor)),
        limits.max_tensor_bytes,
    )
    .map_err(from_backend_error)?;
    let largest = inputs
        .iter()
        .map(|t| elements(&t.tensor))
        .max()
        .unwrap_or(0);
    if largest > limits.max_compute_elements {
        return Err(Failure::Guest(
            ErrorCode::TooLarge,
            format!(
                "this compute's largest input has {largest} elements (batch x tokens), over the \
                 limit of {} per compute; send smaller batches",
                limits.max_compute_elements
            ),
        ));
    }
    let estimate = meta.signature.estimate_output_bytes(&inputs);
    if estimate > limits.max_tensor_bytes as u64 {
        return Err(Failure::Guest(
            ErrorCode::TooLarge,
            format!(
                "this compute's outputs would be about {estimate} bytes, over the limit of {}",
                limits.max_tensor_bytes
            ),
        ));
    }
    if !budget.would_fit(estimate) {
        return Err(Failure::Trap(wasmtime::Error::new(OverBudget(format!(
            "wasi-nn: this compute's outputs (about {estimate} bytes) would take the instance \
             past its memory budget of {} bytes",
            budget.cap()
        )))));
    }
    let rows = inputs
        .first()
        .and_then(|t| t.tensor.dimensions.first())
        .map_or(1, |d| u64::from(*d).max(1));
    let per_row = largest.div_ceil(rows).max(1);
    let chunk_rows = if meta.splittable && largest > limits.chunk_elements {
        (limits.chunk_elements / per_row).max(1)
    } else {
        rows
    };
    let check_time = |chunk_elements: u64| -> Result<(), Failure> {
        let Some(d) = deadline else { return Ok(()) };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_failure(
                "the call's deadline passed during a wasi-nn compute".into(),
            ));
        }
        match meta.estimate(chunk_elements) {
            Some(est) if est > left => Err(deadline_failure(format!(
                "a wasi-nn compute of {chunk_elements} elements would take about {} ms; the \
                 call has {} ms left",
                est.as_millis(),
                left.as_millis()
            ))),
            _ => Ok(()),
        }
    };
    let mut compute = |part: Vec<BackendTensor>, n: u64| -> Result<Vec<BackendTensor>, Failure> {
        let _span = tracing::debug_span!("compute", elements = n).entered();
        let began = Instant::now();
        let out = ctx.compute_with_io(part).map_err(from_backend_error)?;
        meta.observe(n, began.elapsed());
        Ok(out)
    };
    let merger = meta
        .merger
        .as_ref()
        .filter(|_| largest <= limits.chunk_elements);
    let outputs = if let Some(merger) = merger {
        check_time(largest)?;
        let mut one = |part: Vec<BackendTensor>, n: u64| {
            compute(part, n).map_err(|f| match f {
                Failure::Guest(code, m) => (code, m),
                Failure::Trap(e) => (ErrorCode::RuntimeError, format!("{e:#}")),
            })
        };
        match merger.submit(inputs, limits.chunk_elements, deadline, &mut one) {
            Ok(Ok(outputs)) => outputs,
            Ok(Err((code, m))) => return Err(Failure::Guest(code, m)),
            Err(Left::Deadline) => {
                return Err(deadline_failure(
                    "the call's deadline passed while its wasi-nn compute waited to be merged \
                     with others"
                        .into(),
                ))
            }
        }
    } else if chunk_rows >= rows {
        check_time(largest)?;
        compute(inputs, largest)?
    } else {
        let mut acc: Option<Vec<BackendTensor>> = None;
        let mut start = 0u64;
        while start < rows {
            let end = (start + chunk_rows).min(rows);
            let n = (end - start) * per_row;
            check_time(n)?;
            let part = inputs
                .iter()
                .map(|t| slice_rows(t, start, end, rows))
                .collect();
            let out = compute(part, n)?;
            acc = Some(match acc {
                None => out,
                Some(acc) => {
                    append_rows(acc, out).map_err(|m| Failure::Guest(ErrorCode::RuntimeError, m))?
                }
            });
            start = end;
        }
        acc.unwrap_or_default()
    };
    check_tensors(
        outputs.iter().map(|t| (t.name.as_str(), &t.tensor)),
        limits.max_tensor_bytes,
    )
    .map_err(from_backend_error)?;
    Ok(outputs)
}

/// Rows `start..end` (of `rows`) of a tensor whose first axis is the batch.
fn slice_rows(t: &BackendTensor, start: u64, end: u64, rows: u64) -> BackendTensor {
    let row_bytes = t.tensor.data.len() as u64 / rows;
    let data = t.tensor.data[(start * row_bytes) as usize..(end * row_bytes) as usize].to_vec();
    let mut dims = t.tensor.dimensions.clone();
    if let Some(d) = dims.first_mut() {
        *d = (end - start) as u32;
    }
    BackendTensor {
        name: t.name.clone(),
        tensor: Tensor::new(dims, t.tensor.ty, data),
    }
}

/// Concatenate chunk outputs along the batch axis.
fn append_rows(
    mut acc: Vec<BackendTensor>,
    more: Vec<BackendTensor>,
) -> Result<Vec<BackendTensor>, String> {
    if acc.len() != more.len() {
        return Err("the back-end returned a different number of outputs per chunk".into());
    }
    for (a, b) in acc.iter_mut().zip(more) {
        let (ad, bd) = (&a.tensor.dimensions, &b.tensor.dimensions);
        if a.name != b.name || ad.len() != bd.len() || ad.is_empty() || ad[1..] != bd[1..] {
            return Err(format!(
                "output `{}` has shape {ad:?} in one chunk and {bd:?} in another",
                a.name
            ));
        }
        a.tensor.dimensions[0] += b.tensor.dimensions[0];
        a.tensor.data.extend_from_slice(&b.tensor.data);
    }
    Ok(acc)
}

/// Output bytes a compute will produce, from the graph's declared outputs:
/// static dimensions as declared, free ones taken from the inputs' free
/// dimensions at the same position (batch, sequence), else from the largest.
pub(super) fn estimate_output_bytes(
    outputs: &[super::TensorSpec],
    inputs: &[super::TensorSpec],
    given: &[BackendTensor],
) -> u64 {
    let free_at = |i: usize| -> u64 {
        let mut best = 0u64;
        for (spec, t) in inputs.iter().zip(given) {
            if spec.dims.get(i).is_some_and(|d| d.is_none()) {
                if let Some(d) = t.tensor.dimensions.get(i) {
                    return u64::from(*d);
                }
            }
            best = best.max(
                t.tensor
                    .dimensions
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(0)
                    .into(),
            );
        }
        best
    };
    outputs
        .iter()
        .map(|o| {
            let elem = element_size(o.ty).unwrap_or(8) as u64;
            o.dims.iter().enumerate().fold(elem, |acc, (i, d)| {
                acc.saturating_mul(d.unwrap_or_else(|| free_at(i)))
            })
        })
        .fold(0u64, u64::saturating_add)
}

/// What the adapter keeps about one loaded graph: its signature and the
/// measured cost of its computes.
#[derive(Debug)]
pub struct GraphMeta {
    /// Inputs and outputs.
    pub signature: super::GraphSignature,
    /// Every input and output has a free first (batch) axis.
    pub splittable: bool,
    /// Recent nanoseconds per input element (0 = not measured yet).
    ns_per_element: std::sync::atomic::AtomicU64,
    /// Where concurrent small computes of this graph merge, when on.
    merger: Option<Merger>,
}

impl GraphMeta {
    /// Metadata of a graph with this signature.
    pub fn new(signature: super::GraphSignature) -> Self {
        let splittable = signature.free_batch();
        Self {
            signature,
            splittable,
            ns_per_element: 0.into(),
            merger: None,
        }
    }

    /// The same, with `merger` taking this graph's small computes.
    pub fn with_merger(mut self, merger: Option<Merger>) -> Self {
        self.merger = merger;
        self
    }

    /// Expected time of a compute over `elements`, once measured.
    pub fn estimate(&self, elements: u64) -> Option<Duration> {
        let ns = self
            .ns_per_element
            .load(std::sync::atomic::Ordering::Relaxed);
        (ns > 0).then(|| Duration::from_nanos(ns.saturating_mul(elements)))
    }

    /// Record a compute's duration (a moving average that follows slowdowns
    /// faster than speed-ups: it guards deadlines).
    fn observe(&self, elements: u64, took: Duration) {
        if elements == 0 {
            return;
        }
        let now = (took.as_nanos() as u64 / elements).max(1);
        let cell = &self.ns_per_element;
        let old = cell.load(std::sync::atomic::Ordering::Relaxed);
        let new = match old {
            0 => now,
            // Slower: move most of the way at once (a deadline guard must
            // not lag behind a slowdown).
            _ if now > old => (old + 3 * now) / 4,
            // Faster: move a quarter of the way.
            _ => (3 * old + now) / 4,
        };
        cell.store(new.max(1), std::sync::atomic::Ordering::Relaxed);
    }
}

impl super::GraphSignature {
    /// Every input and output has a free first (batch) axis, and there is an
    /// input: the graph's rows are computed independently, so its batches
    /// can be split ([`run`]'s chunks) and joined (`nn::merge`).
    pub fn free_batch(&self) -> bool {
        !self.inputs.is_empty()
            && self
                .inputs
                .iter()
                .chain(&self.outputs)
                .all(|s| s.dims.first().is_some_and(|d| d.is_none()))
    }

    /// See [`estimate_output_bytes`].
    pub fn estimate_output_bytes(&self, given: &[BackendTensor]) -> u64 {
        estimate_output_bytes(&self.outputs, &self.inputs, given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{GraphSignature, TensorSpec};
    use wasmtime_wasi_nn::wit::TensorType as BackendType;

    fn spec(name: &str, ty: BackendType, dims: Vec<Option<u64>>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            ty,
            dims,
        }
    }

    fn ids(rows: u32, cols: u32) -> BackendTensor {
        BackendTensor {
            name: "input_ids".into(),
            tensor: Tensor::new(
                vec![rows, cols],
                BackendType::I64,
                (0..u64::from(rows * cols) * 8).map(|i| i as u8).collect(),
            ),
        }
    }

    #[test]
    fn output_size_is_estimated_from_free_dimensions() {
        let sig = GraphSignature {
            inputs: vec![spec("input_ids", BackendType::I64, vec![None, None])],
            outputs: vec![spec(
                "hidden",
                BackendType::Fp32,
                vec![None, None, Some(384)],
            )],
        };
        assert_eq!(
            sig.estimate_output_bytes(&[ids(64, 256)]),
            64 * 256 * 384 * 4
        );
        assert!(GraphMeta::new(sig).splittable);
    }

    #[test]
    fn chunks_slice_and_concatenate_along_the_batch_axis() {
        let t = ids(5, 3);
        let mut acc = vec![slice_rows(&t, 0, 2, 5)];
        for (a, b) in [(2, 4), (4, 5)] {
            acc = append_rows(acc, vec![slice_rows(&t, a, b, 5)]).unwrap();
        }
        assert_eq!(acc[0].tensor.dimensions, vec![5, 3]);
        assert_eq!(acc[0].tensor.data, t.tensor.data);
    }

    #[test]
    fn cost_estimates_follow_measurements() {
        let m = GraphMeta::new(GraphSignature::default());
        assert_eq!(m.estimate(100), None);
        m.observe(1000, Duration::from_millis(1));
        let e = m.estimate(1000).unwrap();
        assert!(
            e >= Duration::from_micros(900) && e <= Duration::from_millis(2),
            "{e:?}"
        );
    }
}
