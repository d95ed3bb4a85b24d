//! Hybrid fusion over HTTP: first-stage scores sent with a rerank request
//! are fused with the component's (RRF by default, or a normalised linear
//! mix), per request or by the component's manifest default; the model's
//! own score is reported beside the fused one.

use serde_json::{json, Value};

use crate::common::standard_manifest;
use crate::server::{add_tenant, assert_error, json_of, Server};

const DOCS: [&str; 4] = [
    "wing lift",
    "bread and yeast",
    "lift",
    "wing lift wing lift",
];
const FIRST: [f32; 4] = [1.0, 9.0, 5.0, 2.0];

fn post(s: &Server, key: &str, extra: Value) -> Value {
    let mut body = json!({"model": "lexical", "query": "wing lift", "documents": DOCS});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, v) = json_of(s.post(key, "/v1/rerank", &body));
    assert_eq!(status, 200, "{v}");
    v
}

/// `index -> (relevance_score, model_score)`.
fn scores(v: &Value) -> Vec<(f64, Option<f64>)> {
    let mut out = vec![(f64::NAN, None); DOCS.len()];
    for r in v["results"].as_array().unwrap() {
        out[r["index"].as_u64().unwrap() as usize] = (
            r["relevance_score"].as_f64().unwrap(),
            r.get("model_score").and_then(Value::as_f64),
        );
    }
    out
}

/// 1-based ranks, best first, ties by position.
fn ranks(s: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    let mut r = vec![0; s.len()];
    for (k, i) in order.into_iter().enumerate() {
        r[i] = k + 1;
    }
    r
}

#[test]
fn first_stage_scores_fuse_by_rrf_or_a_linear_mix() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}\n[components.lexical-linear]\npath = \"{}\"\nfusion = {{ method = \"linear\", weight = 1.0 }}\n",
        standard_manifest(),
        crate::common::wasm("nboost_reranker_lexical").display()
    );
    std::fs::write(dir.path().join("nboost.toml"), manifest).unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);

    let alone = scores(&post(&s, &key, json!({})));
    assert!(
        alone.iter().all(|(_, m)| m.is_none()),
        "no fusion, no model_score"
    );
    let model: Vec<f64> = alone.iter().map(|a| a.0).collect();

    // Unasked, the server's default fusion applies.
    let v = post(&s, &key, json!({"first_stage_scores": FIRST}));
    assert_eq!(
        v["meta"]["fusion"],
        json!({"method": "linear", "weight": 0.8, "normalize": "zscore"}),
        "{v}"
    );
    // RRF with k = 60 over the model's and the first stage's ranks.
    let v = post(
        &s,
        &key,
        json!({"first_stage_scores": FIRST, "fusion": {"method": "rrf"}}),
    );
    assert_eq!(
        v["meta"]["fusion"],
        json!({"method": "rrf", "k": 60.0}),
        "{v}"
    );
    let fused = scores(&v);
    let first: Vec<f64> = FIRST.iter().map(|&f| f as f64).collect();
    let (rm, rf) = (ranks(&model), ranks(&first));
    for i in 0..DOCS.len() {
        let want = 1.0 / (60.0 + rm[i] as f64) + 1.0 / (60.0 + rf[i] as f64);
        assert!(
            (fused[i].0 - want).abs() < 1e-6,
            "{i}: {fused:?} want {want}"
        );
        assert!(
            (fused[i].1.unwrap() - model[i]).abs() < 1e-6,
            "model_score: {fused:?}"
        );
    }
    // Fusion changes the order: the first stage's favourite climbs.
    let order = |v: &Value| -> Vec<u64> {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect()
    };
    let by_model = order(&post(&s, &key, json!({})));
    assert_ne!(order(&v), by_model, "{v}");

    // Linear, weight 0: the first stage's order; weight 1: the model's.
    let lin = |w: f64| {
        post(
            &s,
            &key,
            json!({"first_stage_scores": FIRST,
            "fusion": {"method": "linear", "weight": w, "normalize": "zscore"}}),
        )
    };
    assert_eq!(order(&lin(0.0)), vec![1, 2, 3, 0]);
    assert_eq!(order(&lin(1.0)), by_model);
    // `none`: the model's order, model scores beside.
    let none = post(
        &s,
        &key,
        json!({"first_stage_scores": FIRST, "fusion": {"method": "none"}}),
    );
    assert_eq!(order(&none), by_model);

    // A component's manifest default applies when the request says nothing.
    let mut body = json!({"model": "lexical-linear", "query": "wing lift", "documents": DOCS,
                          "first_stage_scores": FIRST});
    let (_, v) = json_of(s.post(&key, "/v2/rerank", &body));
    assert_eq!(v["meta"]["fusion"]["method"], "linear", "{v}");
    assert_eq!(order(&v), by_model, "weight 1 is the model's order: {v}");
    body["fusion"] = json!({"method": "rrf", "k": 1});
    let (_, v) = json_of(s.post(&key, "/v2/rerank", &body));
    assert_eq!(
        v["meta"]["fusion"],
        json!({"method": "rrf", "k": 1.0}),
        "{v}"
    );

    // TEI: a fused score is reported as it is; the model's through a sigmoid.
    let (status, v) = json_of(s.post(
        &key,
        "/rerank",
        &json!({"model": "lexical",
        "query": "wing lift", "texts": DOCS, "first_stage_scores": FIRST,
        "fusion": {"method": "rrf"}}),
    ));
    assert_eq!(status, 200, "{v}");
    let top = &v[0];
    assert!(top["score"].as_f64().unwrap() < 0.05, "an RRF score: {v}");
    let m = top["model_score"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&m), "sigmoid of a BM25 score: {v}");
}

#[test]
fn bad_fusion_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_tenant(&dir.path().join("data"), "acme", &[]);
    let s = Server::start(dir.path(), &[]);
    let bad = |extra: Value| {
        let mut body = json!({"model": "lexical", "query": "q", "documents": ["a", "b"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_error(s.post(&key, "/v1/rerank", &body), 422, "validation")
    };
    assert!(bad(json!({"fusion": {"method": "rrf"}})).contains("needs first-stage scores"));
    assert!(bad(json!({"first_stage_scores": [1.0]})).contains("1 first-stage scores for 2"));
    assert!(bad(json!({"first_stage_scores": [1.0, 2.0],
        "fusion": {"method": "linear", "weight": 2}}))
    .contains("between 0 and 1"));
    bad(json!({"first_stage_scores": [1.0, 2.0], "fusion": {"method": "magic"}}));
    bad(json!({"first_stage_scores": [1.0, 1e300]}));
}
