//! Merging concurrent computes of one graph into one back-end call
//! (`--merge-computes`; issue 9 §4).
//!
//! Why: a back-end call has a fixed cost (session dispatch, thread wake-up,
//! per-op overheads) that a small compute (one passage through a
//! cross-encoder) pays in full, and concurrent small computes of the same
//! graph each pay it while fighting for the same cores. With merging on,
//! each loaded graph gets a [`Merger`]: a compute that arrives while the
//! graph's runner is busy waits in a queue, and the next free caller takes
//! the queue's oldest compute plus every later one that fits beside it,
//! runs them as one batch and hands each caller its own rows. Nothing waits
//! on a timer: a compute that finds the graph idle runs at once, alone.
//!
//! Why this is safe and bounded:
//!
//! * only graphs whose every input and output has a free batch axis merge
//!   (their rows are computed independently), and a merger belongs to one
//!   loaded graph, so a tenant's uploaded graph only ever merges with its own
//!   computes (a hostile graph could mix rows; manifest graphs are the
//!   operator's);
//! * inputs of different sequence lengths are padded with zeros along axis 1
//!   only when the graph has an attention-mask input (`*mask*`), so padded
//!   positions are masked out; outputs with a free axis 1 of the padded
//!   length are cut back to each caller's own length, and a merged result of
//!   any other shape is not used (the callers run alone instead);
//! * a merged compute stays within the chunk size of the first caller's
//!   limits (`NnLimits::chunk_elements`), so it overruns a deadline by at
//!   most one chunk, like any compute, and padding may grow it to at most
//!   [`MAX_PADDING_NUM`]/[`MAX_PADDING_DEN`] of the callers' own elements;
//! * a merged compute that fails is run again caller by caller, so one
//!   caller's bad input fails only its own compute;
//! * a caller whose deadline passes while it still waits leaves the queue
//!   with a deadline failure; a panic in the back-end fails the computes it
//!   held and is passed on to the caller that ran it.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use wasmtime_wasi_nn::backend::NamedTensor as BackendTensor;
use wasmtime_wasi_nn::Tensor;

use super::adapter::ErrorCode;
use super::{element_size, GraphSignature};

/// Padding may grow a merged compute to at most NUM/DEN of its callers' own
/// elements.
pub const MAX_PADDING_NUM: u64 = 3;
/// See [`MAX_PADDING_NUM`].
pub const MAX_PADDING_DEN: u64 = 2;

/// Counts of merged computes, for the server's metrics: one per host, shared
/// by its graphs' mergers.
#[derive(Debug, Default)]
pub struct MergeStats {
    /// Back-end calls that ran more than one caller's compute.
    pub merged_calls: AtomicU64,
    /// Callers' computes answered by such calls.
    pub merged_computes: AtomicU64,
}

/// What a caller gets: its outputs, or the wasi-nn error of its compute.
pub(super) type Outcome = Result<Vec<BackendTensor>, (ErrorCode, String)>;

/// Runs one compute on the calling instance's context: `(inputs,
/// elements)`.
pub(super) type Compute<'a> = dyn FnMut(Vec<BackendTensor>, u64) -> Outcome + 'a;

/// Why a caller got no outcome.
pub(super) enum Left {
    /// Its deadline passed while it waited in the queue.
    Deadline,
}

/// One graph's queue of computes waiting to be merged.
pub struct Merger {
    pad: bool,
    /// Outputs (by name) whose axis 1 is free: cut back after padding.
    seq_outputs: Vec<String>,
    /// Merged calls of this graph that may run at once.
    runners: usize,
    stats: std::sync::Arc<MergeStats>,
    state: Mutex<State>,
    changed: Condvar,
}

impl std::fmt::Debug for Merger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merger")
            .field("pad", &self.pad)
            .field("runners", &self.runners)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    next: u64,
    queue: VecDeque<Pending>,
    done: HashMap<u64, Outcome>,
    running: usize,
}

/// One caller's compute: inputs sorted by name, all of `rows` rows and (of
/// rank 2 or more) `seq` positions on axis 1.
struct Pending {
    id: u64,
    inputs: Vec<BackendTensor>,
    rows: u64,
    seq: u64,
    budget: u64,
}

impl Pending {
    /// Elements per row and position of the largest input.
    fn width(&self) -> u64 {
        self.inputs
            .iter()
            .map(|t| {
                let d = &t.tensor.dimensions;
                d.iter().skip(2).map(|x| u64::from(*x)).product::<u64>()
            })
            .max()
            .unwrap_or(1)
    }

    /// Whether `other` can run in one batch with this compute.
    fn compatible(&self, other: &Pending, pad: bool) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                let (da, db) = (&a.tensor.dimensions, &b.tensor.dimensions);
                a.name == b.name
                    && a.tensor.ty == b.tensor.ty
                    && da.len() == db.len()
                    && da.get(2..) == db.get(2..)
                    && (pad || da.get(1) == db.get(1))
            })
    }
}

impl Merger {
    /// The merger of a graph with `signature`, if its computes may merge:
    /// every input and output has a free batch axis. `runners` merged calls
    /// may run at once ([`super::GraphLoader::concurrent_calls`]).
    pub fn for_graph(
        signature: &GraphSignature,
        runners: usize,
        stats: std::sync::Arc<MergeStats>,
    ) -> Option<Self> {
        if !signature.free_batch() {
            return None;
        }
        let free =
            |s: &super::TensorSpec, axis: usize| s.dims.get(axis).is_some_and(|d| d.is_none());
        let pad = signature
            .inputs
            .iter()
            .any(|s| s.name.to_ascii_lowercase().contains("mask"))
            && signature.inputs.iter().all(|s| free(s, 1));
        Some(Self {
            pad,
            seq_outputs: signature
                .outputs
                .iter()
                .filter(|s| free(s, 1))
                .map(|s| s.name.clone())
                .collect(),
            runners: runners.max(1),
            stats,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    /// `inputs` as a queue entry, or back when they cannot merge (ragged
    /// rows or positions, empty tensors, a rank-1 input where padding would
    /// be needed).
    fn pending(
        &self,
        mut inputs: Vec<BackendTensor>,
        budget: u64,
    ) -> Result<Pending, Vec<BackendTensor>> {
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        let rows = inputs
            .first()
            .and_then(|t| t.tensor.dimensions.first())
            .copied();
        let seq = inputs
            .iter()
            .find_map(|t| t.tensor.dimensions.get(1))
            .copied();
        let even = inputs.iter().all(|t| {
            let d = &t.tensor.dimensions;
            d.first().copied() == rows
                && d.iter().all(|x| *x > 0)
                && element_size(t.tensor.ty).is_some()
                && (d.len() < 2 || d.get(1).copied() == seq)
        });
        match (rows, even) {
            (Some(rows), true) => Ok(Pending {
                id: 0,
                inputs,
                rows: u64::from(rows),
                seq: u64::from(seq.unwrap_or(1)),
                budget,
            }),
            _ => Err(inputs),
        }
    }

    /// Run `inputs` merged with whatever other computes of this graph are
    /// waiting, within `budget` elements, with `compute` (this caller's own
    /// execution context) if this caller runs the batch.
    pub(super) fn submit(
        &self,
        inputs: Vec<BackendTensor>,
        budget: u64,
        deadline: Option<Instant>,
        compute: &mut Compute<'_>,
    ) -> Result<Outcome, Left> {
        let mut pending = match self.pending(inputs, budget) {
            Ok(p) => p,
            Err(inputs) => {
                let n = largest(&inputs);
                return Ok(compute(inputs, n));
            }
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = st.next;
        st.next += 1;
        pending.id = id;
        st.queue.push_back(pending);
        loop {
            if let Some(outcome) = st.done.remove(&id) {
                return Ok(outcome);
            }
            if st.running < self.runners && !st.queue.is_empty() {
                let group = self.take_group(&mut st.queue);
                st.running += 1;
                drop(st);
                let ids: Vec<u64> = group.iter().map(|p| p.id).collect();
                let result = catch_unwind(AssertUnwindSafe(|| self.run_group(group, compute)));
                st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running -= 1;
                self.changed.notify_all();
                match result {
                    Ok(outcomes) => st.done.extend(outcomes),
                    Err(panic) => {
                        for i in ids {
                            st.done.insert(
                                i,
                                Err((
                                    ErrorCode::RuntimeError,
                                    "the back-end failed during a merged compute".into(),
                                )),
                            );
                        }
                        st.done.remove(&id);
                        drop(st);
                        resume_unwind(panic);
                    }
                }
                continue;
            }
            st = match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
                None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(left) if left.is_zero() => {
                    if let Some(at) = st.queue.iter().position(|p| p.id == id) {
                        st.queue.remove(at);
                        return Err(Left::Deadline);
                    }
                    // Already taken by a running batch: it ends within a chunk.
                    self.changed.wait(st).unwrap_or_else(|e| e.into_inner())
                }
                Some(left) => {
                    self.changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// The oldest waiting compute and every later one that fits beside it.
    fn take_group(&self, queue: &mut VecDeque<Pending>) -> Vec<Pending> {
        let Some(first) = queue.pop_front() else {
            return Vec::new();
        };
        let width = first.width();
        let (mut rows, mut seq, mut own) = (first.rows, first.seq, first.rows * first.seq);
        let budget = first.budget;
        let mut group = vec![first];
        let mut i = 0;
        while i < queue.len() {
            let p = &queue[i];
            let (r, s) = (rows + p.rows, seq.max(p.seq));
            let o = own + p.rows * p.seq;
            let fits = group[0].compatible(p, self.pad)
                && r * s * width <= budget
                && r * s * MAX_PADDING_DEN <= o * MAX_PADDING_NUM;
            if fits {
                (rows, seq, own) = (r, s, o);
                group.extend(queue.remove(i));
            } else {
                i += 1;
            }
        }
        group
    }

    /// Run a group as one call (or alone, for a group of one, or when the
    /// merged call fails or returns an unexpected shape).
    fn run_group(&self, mut group: Vec<Pending>, compute: &mut Compute<'_>) -> Vec<(u64, Outcome)> {
        if group.len() == 1 {
            let p = group.pop().expect("one");
            let n = largest(&p.inputs);
            return vec![(p.id, compute(p.inputs, n))];
        }
        let merged = merge_inputs(&group, self.pad);
        let n = largest(&merged);
        let parts = compute(merged, n)
            .ok()
            .and_then(|out| split_outputs(out, &group, &self.seq_outputs));
        match parts {
            Some(parts) => {
                self.stats.merged_calls.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .merged_computes
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                group
                    .iter()
                    .map(|p| p.id)
                    .zip(parts.into_iter().map(Ok))
                    .collect()
            }
            None => group
                .into_iter()
                .map(|p| {
                    let n = largest(&p.inputs);
                    (p.id, compute(p.inputs, n))
                })
                .collect(),
        }
    }
}

/// Elements of the largest tensor.
fn largest(tensors: &[BackendTensor]) -> u64 {
    tensors
        .iter()
        .map(|t| {
            t.tensor
                .dimensions
                .iter()
                .map(|d| u64::from(*d))
                .product::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// The group's inputs as one batch: rows one caller after another, each
/// row zero-padded along axis 1 to the longest.
fn merge_inputs(group: &[Pending], pad: bool) -> Vec<BackendTensor> {
    let rows: u64 = group.iter().map(|p| p.rows).sum();
    let seq = group.iter().map(|p| p.seq).max().unwrap_or(1);
    (0..group[0].inputs.len())
        .map(|k| {
            let first = &group[0].inputs[k];
            let mut dims = first.tensor.dimensions.clone();
            dims[0] = rows as u32;
            let padded = pad && dims.len() >= 2;
            if padded {
                dims[1] = seq as u32;
            }
            let elem = element_size(first.tensor.ty).unwrap_or(1);
            let total = dims.iter().map(|d| *d as usize).product::<usize>() * elem;
            let mut data = Vec::with_capacity(total);
            for p in group {
                let t = &p.inputs[k].tensor;
                if padded && p.seq < seq {
                    let row = t.data.len() / p.rows as usize;
                    let want = row / p.seq as usize * seq as usize;
                    for r in t.data.chunks_exact(row) {
                        data.extend_from_slice(r);
                        data.resize(data.len() + want - row, 0);
                    }
                } else {
                    data.extend_from_slice(&t.data);
                }
            }
            BackendTensor {
                name: first.name.clone(),
                tensor: Tensor::new(dims, first.tensor.ty, data),
            }
        })
        .collect()
}

/// Each caller's rows of a merged call's outputs (axis 1 cut back to its
/// own length where padded), or `None` when an output's shape is not the
/// merged batch's.
fn split_outputs(
    outputs: Vec<BackendTensor>,
    group: &[Pending],
    seq_outputs: &[String],
) -> Option<Vec<Vec<BackendTensor>>> {
    let rows: u64 = group.iter().map(|p| p.rows).sum();
    let seq = group.iter().map(|p| p.seq).max().unwrap_or(1);
    let padded = group.iter().any(|p| p.seq != seq);
    let mut parts: Vec<Vec<BackendTensor>> = group.iter().map(|_| Vec::new()).collect();
    for out in outputs {
        let dims = &out.tensor.dimensions;
        if dims.first().map(|d| u64::from(*d)) != Some(rows)
            || !(out.tensor.data.len() as u64).is_multiple_of(rows)
        {
            return None;
        }
        let row = out.tensor.data.len() / rows as usize;
        let cut = padded && seq_outputs.contains(&out.name) && dims.len() >= 2;
        if cut && u64::from(dims[1]) != seq {
            return None;
        }
        let mut at = 0usize;
        for (p, part) in group.iter().zip(&mut parts) {
            let mut d = dims.clone();
            d[0] = p.rows as u32;
            let mut data = Vec::with_capacity(row * p.rows as usize);
            for r in 0..p.rows as usize {
                let src = &out.tensor.data[(at + r) * row..(at + r + 1) * row];
                if cut {
                    let keep = row / seq as usize * p.seq as usize;
                    data.extend_from_slice(&src[..keep]);
                } else {
                    data.extend_from_slice(src);
                }
            }
            if cut {
                d[1] = p.seq as u32;
            }
            at += p.rows as usize;
            part.push(BackendTensor {
                name: out.name.clone(),
                tensor: Tensor::new(d, out.tensor.ty, data),
            });
        }
    }
    Some(parts)
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
