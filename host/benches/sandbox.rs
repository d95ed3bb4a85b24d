//! Per-call overhead of the sandbox, measured on the `lexical` component
//! (so the guest's own work is tiny and the cost is isolation itself):
//!
//! * `fresh`: a new instance for the call (pool allocation from the
//!   pre-linked `InstancePre` with copy-on-write memory, `configure`, then
//!   `score`) — the price of full per-call isolation;
//! * `warm`: `score` on an already-configured instance.
//!
//! Run with `cargo bench --bench sandbox` (after `./just components`).
//! Prints medians and p90 over many iterations; no assertions.

use std::path::Path;
use std::time::{Duration, Instant};

use nboost::registry::Manifest;
use nboost::service::{Reranker, RerankerConfig};

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 9 / 10]))
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let wasm = root.join("components/target/wasm32-wasip2/release/nboost_reranker_lexical.wasm");
    assert!(wasm.is_file(), "run `./just components` first");
    let manifest = Manifest::parse(
        &format!("[components.lexical]\npath = \"{}\"\n", wasm.display()),
        root,
    )
    .unwrap();
    let reranker = Reranker::new(manifest, RerankerConfig::default()).unwrap();
    let pre = reranker.registry().get("lexical").unwrap();
    let engine = reranker.registry().engine();
    let passages: Vec<String> = (0..10)
        .map(|i| format!("passage {i} about wings, lift and drag at high speed"))
        .collect();
    let iters = 2000;

    let mut fresh = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let mut plugin = pre.instantiate(engine).unwrap();
        plugin.score("wing lift", &passages).unwrap();
        drop(plugin);
        fresh.push(t.elapsed());
    }
    let mut plugin = pre.instantiate(engine).unwrap();
    let mut warm = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        plugin.score("wing lift", &passages).unwrap();
        warm.push(t.elapsed());
    }
    let (f50, f90) = stats(fresh);
    let (w50, w90) = stats(warm);
    println!("lexical, 10 passages, {iters} iterations");
    println!("fresh instance per call (instantiate + configure + score): median {f50:.1} us, p90 {f90:.1} us");
    println!("warm instance (score only):                                 median {w50:.1} us, p90 {w90:.1} us");
    println!(
        "isolation overhead (fresh - warm, medians):                 {:.1} us",
        f50 - w50
    );
}
