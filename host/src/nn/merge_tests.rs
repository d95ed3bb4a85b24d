use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::nn::{bytes_to_f32, bytes_to_i64, f32_tensor, i64_tensor, TensorSpec};
use wasmtime_wasi_nn::wit::TensorType;

fn signature() -> GraphSignature {
    let free2 = |name: &str, ty| TensorSpec {
        name: name.into(),
        ty,
        dims: vec![None, None],
    };
    GraphSignature {
        inputs: vec![
            free2("input_ids", TensorType::I64),
            free2("attention_mask", TensorType::I64),
        ],
        outputs: vec![free2("hidden", TensorType::Fp32)],
    }
}

fn merger(runners: usize) -> Merger {
    Merger::for_graph(&signature(), runners, Arc::default()).expect("mergeable")
}

/// A caller's inputs: `rows` rows of `seq` ids (`base + row * 10 + pos`),
/// mask all ones.
fn inputs(rows: usize, seq: usize, base: i64) -> Vec<BackendTensor> {
    let ids: Vec<i64> = (0..rows * seq)
        .map(|i| base + (i / seq) as i64 * 10 + (i % seq) as i64)
        .collect();
    vec![
        BackendTensor {
            name: "input_ids".into(),
            tensor: i64_tensor(&[rows, seq], &ids),
        },
        BackendTensor {
            name: "attention_mask".into(),
            tensor: i64_tensor(&[rows, seq], &vec![1; rows * seq]),
        },
    ]
}

/// The fake graph: `hidden = ids * mask`; fails on a negative id.
fn graph(calls: &AtomicUsize) -> impl FnMut(Vec<BackendTensor>, u64) -> Outcome + '_ {
    move |inputs, _n| {
        calls.fetch_add(1, Ordering::SeqCst);
        let get = |name: &str| inputs.iter().find(|t| t.name == name).expect("input");
        let (ids, mask) = (get("input_ids"), get("attention_mask"));
        let (i, m) = (bytes_to_i64(&ids.tensor), bytes_to_i64(&mask.tensor));
        if i.iter().any(|x| *x < 0) {
            return Err((ErrorCode::InvalidArgument, "a negative id".into()));
        }
        let h: Vec<f32> = i.iter().zip(&m).map(|(a, b)| (a * b) as f32).collect();
        let dims: Vec<usize> = ids.tensor.dimensions.iter().map(|d| *d as usize).collect();
        Ok(vec![BackendTensor {
            name: "hidden".into(),
            tensor: f32_tensor(&dims, &h),
        }])
    }
}

fn expect_own(out: &Outcome, rows: usize, seq: usize, base: i64) {
    let out = out.as_ref().expect("outputs");
    assert_eq!(out[0].tensor.dimensions, vec![rows as u32, seq as u32]);
    let want: Vec<f32> = bytes_to_i64(&inputs(rows, seq, base)[0].tensor)
        .into_iter()
        .map(|x| x as f32)
        .collect();
    assert_eq!(bytes_to_f32(&out[0].tensor), want);
}

impl Merger {
    fn queued(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }

    fn running(&self) -> usize {
        self.state.lock().unwrap().running
    }
}

#[test]
fn graphs_without_a_free_batch_axis_do_not_merge_and_padding_needs_a_mask() {
    let mut sig = signature();
    assert!(merger(1).pad);
    sig.inputs[1].name = "token_type_ids".into();
    let m = Merger::for_graph(&sig, 1, Arc::default()).expect("mergeable");
    assert!(!m.pad, "no mask: only computes of one length merge");
    sig.outputs[0].dims[0] = Some(4);
    assert!(Merger::for_graph(&sig, 1, Arc::default()).is_none());
}

#[test]
fn inputs_pad_with_zeros_and_outputs_are_cut_back_to_each_callers_rows() {
    let m = merger(1);
    let group: Vec<Pending> = [(1, 3, 100), (2, 5, 200)]
        .into_iter()
        .enumerate()
        .map(|(id, (r, s, b))| {
            let mut p = m.pending(inputs(r, s, b), 4096).ok().expect("pending");
            p.id = id as u64;
            p
        })
        .collect();
    let merged = merge_inputs(&group, true);
    let mask = merged.iter().find(|t| t.name == "attention_mask").unwrap();
    assert_eq!(mask.tensor.dimensions, vec![3, 5]);
    assert_eq!(
        bytes_to_i64(&mask.tensor),
        [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    );
    let calls = AtomicUsize::new(0);
    let out = graph(&calls)(merged, 15).unwrap();
    let mut parts = split_outputs(out, &group, &m.seq_outputs).expect("split");
    expect_own(&Ok(parts.pop().unwrap()), 2, 5, 200);
    expect_own(&Ok(parts.pop().unwrap()), 1, 3, 100);
}

#[test]
fn a_group_stays_within_the_budget_and_the_padding_bound() {
    let m = merger(1);
    let mut queue: VecDeque<Pending> = [(4, 10), (4, 10), (1, 40), (4, 8), (4, 10)]
        .into_iter()
        .map(|(r, s)| m.pending(inputs(r, s, 0), 100).ok().unwrap())
        .collect();
    // 4x10 + 4x10 = 80 elements; the 1x40 would pad all to 40 (and pass the
    // budget); the 4x8 pads to 10 (120 > 100 elements).
    let group = m.take_group(&mut queue);
    assert_eq!(
        group.iter().map(|p| (p.rows, p.seq)).collect::<Vec<_>>(),
        [(4, 10), (4, 10)]
    );
    assert_eq!(queue.len(), 3);
    let next = m.take_group(&mut queue);
    assert_eq!(
        next.len(),
        1,
        "1x40 with 4x8 pads 5x40 = 200 against 72 own"
    );
}

#[test]
fn computes_that_wait_merge_into_one_call_and_each_caller_gets_its_rows() {
    let m = merger(1);
    let calls = AtomicUsize::new(0);
    let outcomes = std::thread::scope(|s| {
        let first = s.spawn(|| {
            let mut g = graph(&calls);
            let mut slow = |i, n| {
                // Hold the graph until the other three wait behind it.
                while m.queued() < 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                g(i, n)
            };
            m.submit(inputs(2, 4, 0), 4096, None, &mut slow)
        });
        while m.running() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let others: Vec<_> = [(1, 6, 1000), (3, 5, 2000), (1, 3, 3000)]
            .into_iter()
            .map(|(r, sq, b)| {
                let calls = &calls;
                let m = &m;
                s.spawn(move || {
                    let mut g = graph(calls);
                    ((r, sq, b), m.submit(inputs(r, sq, b), 4096, None, &mut g))
                })
            })
            .collect();
        let first = first.join().unwrap();
        let mut all = vec![((2, 4, 0), first)];
        all.extend(others.into_iter().map(|h| h.join().unwrap()));
        all
    });
    for ((r, s, b), out) in &outcomes {
        let Ok(out) = out else {
            panic!("no deadline was set")
        };
        expect_own(out, *r, *s, *b);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one alone, then three merged"
    );
    assert_eq!(m.stats.merged_calls.load(Ordering::Relaxed), 1);
    assert_eq!(m.stats.merged_computes.load(Ordering::Relaxed), 3);
}

#[test]
fn a_failed_merged_call_is_retried_per_caller_so_only_the_bad_input_fails() {
    let m = merger(1);
    let mut group: Vec<Pending> = [(1, 3, 100), (1, 3, -50), (1, 3, 300)]
        .into_iter()
        .enumerate()
        .map(|(id, (r, s, b))| {
            let mut p = m.pending(inputs(r, s, b), 4096).ok().unwrap();
            p.id = id as u64;
            p
        })
        .collect();
    group.sort_by_key(|p| p.id);
    let calls = AtomicUsize::new(0);
    let out = m.run_group(group, &mut graph(&calls));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the merged call, then three alone"
    );
    expect_own(&out[0].1, 1, 3, 100);
    assert!(matches!(out[1].1, Err((ErrorCode::InvalidArgument, _))));
    expect_own(&out[2].1, 1, 3, 300);
    assert_eq!(m.stats.merged_calls.load(Ordering::Relaxed), 0);
}

#[test]
fn a_caller_whose_deadline_passes_in_the_queue_leaves_it() {
    let m = merger(1);
    let calls = AtomicUsize::new(0);
    let release = AtomicUsize::new(0);
    let left = std::thread::scope(|s| {
        let busy = s.spawn(|| {
            let mut g = graph(&calls);
            let mut hold = |i, n| {
                while release.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                g(i, n)
            };
            m.submit(inputs(1, 3, 0), 4096, None, &mut hold)
        });
        while m.running() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = Some(Instant::now() + Duration::from_millis(50));
        let left = m.submit(inputs(1, 3, 7), 4096, deadline, &mut graph(&calls));
        release.store(1, Ordering::SeqCst);
        assert!(busy.join().unwrap().is_ok());
        left
    });
    assert!(matches!(left, Err(Left::Deadline)));
    assert_eq!(m.queued(), 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the late compute never ran"
    );
}
