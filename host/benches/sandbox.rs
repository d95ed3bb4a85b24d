//! Per-call overhead of the sandbox, measured on the `lexical` component
//! (so the guest's own work is tiny and the cost is isolation itself):
//!
//! * `fresh`: a new instance for the call (pool allocation from the
//!   pre-linked `InstancePre` with copy-on-write memory, `configure`, then
//!   `score`) — the price of full per-call isolation;
//! * `warm`: `score` on an already-configured instance;
//! * `instantiate + configure` alone, for `lexical` and for `minilm`
//!   (whose `configure` parses its 700 KB tokenizer inside the guest), and
//!   for `minilm` pre-initialised (`preinit = true`: the instance starts
//!   from the snapshot taken after `configure`, which is not called again),
//!   also with its first `score` of one passage (the lazy wasi-nn handles
//!   and the first touch of the snapshot's pages).
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
    let mut start = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let plugin = pre.instantiate(engine).unwrap();
        start.push(t.elapsed());
        drop(plugin);
    }
    let minilm = Manifest::load_for(&root.join("nboost.toml"), "minilm")
        .ok()
        .and_then(|m| Reranker::new(m, RerankerConfig::default()).ok())
        .and_then(|r| r.registry().get("minilm").ok().map(|pre| (r, pre)));
    let minilm_start = minilm.map(|(r, pre)| {
        let mut v = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let plugin = pre.instantiate(r.registry().engine()).unwrap();
            v.push(t.elapsed());
            drop(plugin);
        }
        stats(v)
    });
    let preinit = Manifest::load_for(&root.join("nboost.toml"), "minilm")
        .ok()
        .and_then(|mut m| {
            m.components.get_mut("minilm")?.preinit = nboost::sandbox::Preinit::Snapshot;
            Reranker::new(m, RerankerConfig::default()).ok()
        })
        .and_then(|r| r.registry().get("minilm").ok().map(|pre| (r, pre)));
    let preinit_start = preinit.map(|(r, pre)| {
        let engine = r.registry().engine();
        let (mut start, mut first) = (Vec::new(), Vec::new());
        for _ in 0..iters {
            let t = Instant::now();
            let plugin = pre.instantiate(engine).unwrap();
            start.push(t.elapsed());
            drop(plugin);
        }
        let one = vec!["similarity laws for aerothermoelastic testing".to_string()];
        for _ in 0..50 {
            let t = Instant::now();
            let mut plugin = pre.instantiate(engine).unwrap();
            plugin.score("similarity laws", &one).unwrap();
            first.push(t.elapsed());
        }
        (stats(start), stats(first))
    });
    let (f50, f90) = stats(fresh);
    let (w50, w90) = stats(warm);
    println!("lexical, 10 passages, {iters} iterations");
    println!("fresh instance per call (instantiate + configure + score): median {f50:.1} us, p90 {f90:.1} us");
    println!("warm instance (score only):                                 median {w50:.1} us, p90 {w90:.1} us");
    println!(
        "isolation overhead (fresh - warm, medians):                 {:.1} us",
        f50 - w50
    );
    let (s50, s90) = stats(start);
    println!("lexical instantiate + configure:                            median {s50:.1} us, p90 {s90:.1} us");
    match minilm_start {
        Some((m50, m90)) => println!(
            "minilm instantiate + configure (tokenizer parsed in guest): median {m50:.1} us, p90 {m90:.1} us"
        ),
        None => println!("minilm: not in nboost.toml or its files are missing (`./just model`)"),
    }
    if let Some(((p50, p90), (q50, q90))) = preinit_start {
        println!("minilm pre-initialised: instantiate (configured image):    median {p50:.1} us, p90 {p90:.1} us");
        println!("minilm pre-initialised: instantiate + first score, 1 passage: median {q50:.1} us, p90 {q90:.1} us");
    }
}
