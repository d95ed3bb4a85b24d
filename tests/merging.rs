//! `--merge-computes`: concurrent small requests for the same graph merge
//! into one back-end call (padded to one length, cut back after), and each
//! request still gets exactly its own scores. These tests run tract, where
//! the default (`auto`) is off, so they turn it `on`. The real server, the real
//! components: the tiny cross-encoder (logits `[batch, 1]`) and MiniLM
//! (hidden states `[batch, seq, 384]`, which are cut back per request).
//! Whether two requests overlap is up to the scheduler, so bursts repeat
//! (bounded) until the server's metrics count a merged call; the scores of
//! every burst are checked either way.

use serde_json::json;

use crate::server::{add_tenant, json_of, Server};

/// Passages of different token counts, so merged batches need padding.
const DOCS: [&str; 8] = [
    "Lift on a wing.",
    "The pressure difference between the upper and lower surfaces of an aircraft wing produces lift.",
    "Birds migrate with the seasons.",
    "A recipe for bread needs flour, water, salt and yeast, and a warm place for the dough to rise slowly overnight.",
    "Wings.",
    "Flaps and slats change the camber of a wing so that it produces more lift at low speed during take-off and landing.",
    "Drag grows with the square of the airspeed.",
    "Airfoil.",
];

fn score(s: &Server, key: &str, model: &str, doc: &str) -> f64 {
    let body = json!({"model": model, "query": "what produces lift on an aircraft wing", "documents": [doc]});
    let (status, v) = json_of(s.post(key, "/v1/rerank", &body));
    assert_eq!(status, 200, "{v}");
    v["results"][0]["relevance_score"].as_f64().unwrap()
}

/// A server with `--merge-computes merge` and enough workers for eight
/// requests at once, and a tenant's key.
fn start(dir: &std::path::Path, merge: &str) -> (Server, String) {
    let key = add_tenant(&dir.join("data"), "acme", &["--max-concurrent", "64"]);
    let s = Server::start(
        dir,
        &[
            "--merge-computes",
            merge,
            "--workers",
            "8",
            "--workers-per-tenant",
            "8",
        ],
    );
    (s, key)
}

#[test]
fn merged_computes_give_each_request_its_own_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (s, key) = start(dir.path(), "on");
    for model in ["cross-encoder", "minilm"] {
        // One at a time: nothing to merge with, each runs alone.
        let alone: Vec<f64> = DOCS.iter().map(|d| score(&s, &key, model, d)).collect();
        let before = s.metric(&key, "nboost_nn_merged_computes_total");
        let mut merged = false;
        for _ in 0..40 {
            let together: Vec<f64> = std::thread::scope(|sc| {
                let handles: Vec<_> = DOCS
                    .iter()
                    .map(|d| sc.spawn(|| score(&s, &key, model, d)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{model}, passage {i}: {a} alone, {b} under merging"
                );
            }
            if s.metric(&key, "nboost_nn_merged_computes_total") > before {
                merged = true;
                break;
            }
        }
        assert!(
            merged,
            "{model}: 40 bursts of 8 concurrent requests never merged a compute:\n{}",
            s.log_text()
        );
        assert!(s.metric(&key, "nboost_nn_merged_calls_total") >= 1.0);
    }
}

#[test]
fn merging_off_and_auto_on_tract_run_every_compute_alone() {
    // `auto` (the default) is off on tract, the back-end these tests run.
    for merge in ["off", "auto"] {
        let dir = tempfile::tempdir().unwrap();
        let (s, key) = start(dir.path(), merge);
        for _ in 0..10 {
            std::thread::scope(|sc| {
                for d in DOCS {
                    sc.spawn(|| score(&s, &key, "cross-encoder", d));
                }
            });
        }
        assert_eq!(
            s.metric(&key, "nboost_nn_merged_computes_total"),
            0.0,
            "{merge}"
        );
        assert_eq!(
            s.metric(&key, "nboost_rerank_requests_total{api=\"cohere\"}"),
            80.0,
            "{merge}"
        );
    }
}
