//! Plugins in other languages: `lexical-py` (Python, componentize-py) and
//! `minilm-js` (JavaScript, componentize-js, the model through wasi-nn) give
//! the scores of their Rust counterparts on a real collection's passages,
//! and import nothing the sandbox refuses.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::common::{cache_dir, repo, standard_manifest};
use crate::server::{nboost, succeeds};

/// Cranfield's first query and 40 of its documents (the judged ones first).
fn cranfield() -> (String, Vec<String>) {
    let data = repo().join("../shared/data/cranfield");
    let lines = |f: &str| -> Vec<Value> {
        std::fs::read_to_string(data.join(f))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let query = lines("queries.jsonl").remove(0);
    let qid = query["_id"].as_str().unwrap().to_owned();
    let judged: Vec<String> = std::fs::read_to_string(data.join("qrels.tsv"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.first() == Some(&qid.as_str())).then(|| f[1].to_owned())
        })
        .collect();
    let mut docs = lines("corpus.jsonl");
    docs.sort_by_key(|d| !judged.contains(&d["_id"].as_str().unwrap().to_owned()));
    let passages = docs
        .iter()
        .take(40)
        .map(|d| {
            format!(
                "{} {}",
                d["title"].as_str().unwrap_or(""),
                d["text"].as_str().unwrap()
            )
        })
        .collect();
    (query["text"].as_str().unwrap().to_owned(), passages)
}

/// Scores of `component` by passage index, through `nboost rerank`.
fn scores(
    manifest: &std::path::Path,
    component: &str,
    query: &str,
    passages: &[String],
) -> BTreeMap<u64, f64> {
    let dir = manifest.parent().unwrap();
    let file = dir.join("passages.jsonl");
    let text: Vec<String> = passages
        .iter()
        .map(|p| Value::from(p.as_str()).to_string())
        .collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let out = succeeds(
        nboost()
            .arg("--manifest")
            .arg(manifest)
            .args(["rerank", "-c", component, "-q", query, "--json", "-p"])
            .arg(&file)
            // Scores are under test, not speed: 40 MiniLM passages through a
            // debug build's tract, beside the other tests on 2 cores, can pass
            // the default 10 s deadline.
            .args(["--deadline-ms", "120000"])
            .arg("--cache-dir")
            .arg(cache_dir()),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["score"].as_f64().unwrap()))
        .collect()
}

fn compare(rust: &str, other: &str, tolerance: f64) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("nboost.toml");
    std::fs::write(&manifest, standard_manifest()).unwrap();
    let (query, passages) = cranfield();
    let a = scores(&manifest, rust, &query, &passages);
    let b = scores(&manifest, other, &query, &passages);
    assert_eq!(a.len(), passages.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let spread =
        a.values().cloned().fold(f64::MIN, f64::max) - a.values().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.1, "{rust} tells the passages apart: {a:?}");
    for (i, x) in &a {
        let y = b[i];
        assert!(
            (x - y).abs() <= tolerance,
            "passage {i}: {rust} {x}, {other} {y}"
        );
    }
}

#[test]
fn python_bm25_scores_as_the_rust_one() {
    // The same arithmetic in the same order (f64, sorted terms): equal up
    // to the f32 the interface carries.
    compare("lexical", "lexical-py", 1e-5);
}

#[test]
fn javascript_minilm_scores_as_the_rust_one() {
    // Same tokenizer ids, same graph; pooling in f64 (JS) against f32
    // (Rust): measured differences are below 4e-7.
    compare("minilm", "minilm-js", 1e-5);
}

#[test]
fn the_polyglot_components_import_only_what_the_sandbox_grants() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("nboost.toml");
    std::fs::write(&manifest, standard_manifest()).unwrap();
    let inspect = |name: &str| -> Value {
        let out = succeeds(nboost().arg("--manifest").arg(&manifest).args([
            "components",
            "inspect",
            name,
        ]));
        serde_json::from_str(&out).unwrap()
    };
    let py = inspect("lexical-py");
    assert_eq!(
        py["imports"],
        serde_json::json!([]),
        "--stub-wasi leaves no import: {py}"
    );
    let js = inspect("minilm-js");
    let imports: Vec<&str> = js["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports.iter().any(|i| i.starts_with("wasi:nn/inference@")),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .all(|i| !i.starts_with("wasi:sockets") && !i.starts_with("wasi:http")),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .all(|i| nboost::sandbox::validate::import_allowed(i)),
        "{imports:?}"
    );
}
