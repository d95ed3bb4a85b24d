//! The neural path against the PyTorch reference
//! (`shared/fixtures/minilm_reference.json`, computed with
//! sentence-transformers on torch) on every back-end present: tokenization
//! inside the wasm component, the graph on the host through wasi-nn, pooling
//! and cosine in the component.

use nboost::nn::BackendKind;
use nboost::Reranker;

use crate::common::{
    backend_available, config, json, model_file, openvino_library, ort_library, repo, reranker,
    standard_manifest, strings,
};

fn fixture() -> serde_json::Value {
    json(&repo().join("../shared/fixtures/minilm_reference.json"))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalized(v: &serde_json::Value) -> Vec<f64> {
    let v: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let n = dot(&v, &v).sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// The reference cosine lists: scores within 1e-3, identical ranking.
fn check_cosine_lists(r: &Reranker) {
    for case in fixture()["cosine_lists"].as_array().unwrap() {
        let query = case["query"].as_str().unwrap();
        let passages = strings(&case["passages"]);
        let out = r.rerank("minilm", query, &passages, None).unwrap();
        let mut scores = vec![0f32; passages.len()];
        for p in &out.ranking {
            scores[p.index] = p.score;
        }
        for (got, want) in scores.iter().zip(case["cosine"].as_array().unwrap()) {
            let want = want.as_f64().unwrap();
            assert!(
                (f64::from(*got) - want).abs() <= 1e-3,
                "{query}: {got} vs {want}"
            );
        }
        let ranking: Vec<u64> = out.ranking.iter().map(|p| p.index as u64).collect();
        let want: Vec<u64> = case["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ranking, want, "{query}");
    }
}

/// Every fixture sentence against every other: the component's cosine
/// must equal the dot product of the reference embeddings. This covers
/// tokenization (accents, CJK, emoji, empty, >256 tokens) end to end.
fn check_sentence_matrix(r: &Reranker) {
    let sentences = fixture()["sentences"].as_array().unwrap().clone();
    let texts: Vec<String> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let embeddings: Vec<Vec<f64>> = sentences
        .iter()
        .map(|s| normalized(&s["embedding"]))
        .collect();
    for (qi, query) in texts.iter().enumerate() {
        if query.trim().is_empty() {
            continue; // the host refuses empty queries; empty passages are covered below
        }
        let out = r.rerank("minilm", query, &texts, None).unwrap();
        for p in &out.ranking {
            let want = dot(&embeddings[qi], &embeddings[p.index]);
            assert!(
                (f64::from(p.score) - want).abs() <= 1e-3,
                "{} vs {}: {} vs {want}",
                sentences[qi]["name"],
                sentences[p.index]["name"],
                p.score
            );
        }
    }
}

fn check_backend(backend: BackendKind) {
    let r = reranker(&standard_manifest(), config(backend));
    check_cosine_lists(&r);
    check_sentence_matrix(&r);
}

#[test]
fn tract_matches_pytorch_reference() {
    check_backend(BackendKind::Tract);
}

#[test]
fn onnx_runtime_matches_pytorch_reference() {
    if backend_available("ONNX Runtime (libonnxruntime.so)", ort_library().is_some()) {
        check_backend(BackendKind::Ort);
    }
}

#[test]
fn openvino_matches_pytorch_reference() {
    let present = cfg!(feature = "openvino")
        && openvino_library().is_some_and(|d| d.join("libopenvino_c.so").exists());
    if backend_available("OpenVINO (libopenvino_c.so)", present) {
        check_backend(BackendKind::Openvino);
    }
}

#[test]
fn cross_encoder_matches_numpy_reference() {
    let reference = json(&model_file("tiny-cross-encoder", "reference.json"));
    let r = reranker(&standard_manifest(), config(BackendKind::Tract));
    for case in reference["queries"].as_array().unwrap() {
        let query = case["query"].as_str().unwrap();
        let passages = strings(&case["passages"]);
        let out = r.rerank("cross-encoder", query, &passages, None).unwrap();
        for p in &out.ranking {
            let want = case["logits"][p.index].as_f64().unwrap();
            assert!(
                (f64::from(p.score) - want).abs() <= 1e-4,
                "{query}: {} vs {want}",
                p.score
            );
        }
    }
}

#[test]
fn missing_ort_library_is_a_clear_error() {
    let mut cfg = config(BackendKind::Ort);
    cfg.nn.ort_library = Some(repo().join("no/such/libonnxruntime.so"));
    let r = reranker(&standard_manifest(), cfg);
    let err = r
        .rerank("minilm", "wing", &["lift".to_string()], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}
