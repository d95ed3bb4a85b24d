//! The `nboost` binary, as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{json, repo, standard_manifest, strings, wasm};

fn nboost(manifest: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nboost"))
        .arg("--manifest")
        .arg(manifest)
        .arg("--cache-dir")
        .arg(crate::common::cache_dir())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("nboost runs")
}

fn manifest_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("nboost.toml");
    std::fs::write(&p, standard_manifest()).unwrap();
    p
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A real query of the Cranfield collection with its judged-relevant
/// documents mixed among documents judged for other queries: the lexical
/// reranker must put a relevant one first.
#[test]
fn rerank_real_collection_with_lexical() {
    let data = repo().join("../shared/data/cranfield");
    let query: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(data.join("queries.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let qid = query["_id"].as_str().unwrap().to_string();
    let qrels = std::fs::read_to_string(data.join("qrels.tsv")).unwrap();
    let relevant: Vec<String> = qrels
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0] == qid && f[2].trim() != "0").then(|| f[1].to_string())
        })
        .collect();
    assert!(!relevant.is_empty());
    let corpus = std::fs::read_to_string(data.join("corpus.jsonl")).unwrap();
    let docs: Vec<serde_json::Value> = corpus
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Relevant documents plus every 50th document of the collection.
    let picked: Vec<&serde_json::Value> = docs
        .iter()
        .enumerate()
        .filter(|(i, d)| relevant.contains(&d["_id"].as_str().unwrap().to_string()) || i % 50 == 0)
        .map(|(_, d)| d)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let passages = dir.path().join("passages.jsonl");
    let lines: Vec<String> = picked.iter().map(|d| d.to_string()).collect();
    std::fs::write(&passages, lines.join("\n")).unwrap();

    let out = nboost(
        &manifest_file(dir.path()),
        &[
            "rerank",
            "-c",
            "lexical",
            "-q",
            query["text"].as_str().unwrap(),
            "-p",
            passages.to_str().unwrap(),
            "--top-n",
            "3",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let best = &picked[rows[0]["index"].as_u64().unwrap() as usize];
    assert!(
        relevant.contains(&best["_id"].as_str().unwrap().to_string()),
        "top: {best}"
    );
    assert!(rows[0]["score"].as_f64().unwrap() >= rows[1]["score"].as_f64().unwrap());
}

#[test]
fn components_list_reads_no_component_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("nboost.toml");
    std::fs::write(&m, "[components.ghost]\npath = \"nowhere.wasm\"\n").unwrap();
    let out = nboost(&m, &["components", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ghost"));
}

#[test]
fn components_inspect_reports_world_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let out = nboost(
        &manifest_file(dir.path()),
        &["components", "inspect", "minilm"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["world"], "nn-reranker-plugin");
    assert_eq!(v["export"], "nboost:reranker/reranker@0.1.0");
    let bytes = std::fs::read(wasm("nboost_reranker_minilm")).unwrap();
    assert_eq!(v["size"].as_u64().unwrap() as usize, bytes.len());
    assert_eq!(
        v["sha256"].as_str().unwrap(),
        nboost::sandbox::sha256_digest(&bytes)
    );
    assert!(strings(&v["imports"])
        .iter()
        .any(|i| i.starts_with("wasi:nn/graph@")));
}

fn check(file: &Path) -> Output {
    nboost(
        Path::new("unused.toml"),
        &["components", "check", file.to_str().unwrap()],
    )
}

#[test]
fn components_check_accepts_a_reranker() {
    let out = check(&wasm("nboost_reranker_lexical"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("world reranker-plugin"));
}

#[test]
fn components_check_explains_each_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.wasm", vec![], "the file is empty"),
        (
            "text.wasm",
            b"hello, I am not wasm".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "core.wasm",
            wat::parse_str("(module (func (export \"f\")))").unwrap(),
            "core WebAssembly module",
        ),
        (
            "other.wasm",
            wat::parse_str("(component)").unwrap(),
            "does not export `nboost:reranker/reranker",
        ),
    ];
    for (name, bytes, needle) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let out = check(&f);
        assert!(!out.status.success(), "{name} accepted");
        assert!(stderr(&out).contains(needle), "{name}: {}", stderr(&out));
    }
    let out = check(&wasm("nboost_hostile_sockets"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wasi:sockets"), "{}", stderr(&out));
}

#[test]
fn bad_cli_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_file(dir.path());
    let out = nboost(&m, &["rerank", "-c", "nope", "-q", "x", "--passage", "y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown component `nope`"));
    let out = nboost(&m, &["rerank", "-c", "lexical", "-q", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no passages"));
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"title\": 3}\n").unwrap();
    let out = nboost(
        &m,
        &[
            "rerank",
            "-c",
            "lexical",
            "-q",
            "x",
            "-p",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.jsonl:1"), "{}", stderr(&out));
    let out = nboost(&dir.path().join("missing.toml"), &["components", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.toml"));
}

#[test]
fn rerank_with_minilm_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = json(&repo().join("../shared/fixtures/minilm_reference.json"));
    let case = &fixture["cosine_lists"][0];
    let mut args = vec![
        "rerank",
        "-c",
        "minilm",
        "-q",
        case["query"].as_str().unwrap(),
        "--json",
    ];
    let passages = strings(&case["passages"]);
    for p in &passages {
        args.push("--passage");
        args.push(p);
    }
    let out = nboost(&manifest_file(dir.path()), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let order: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = case["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(order, want);
}

/// A manifest alias names its component on the command line too.
#[test]
fn rerank_through_a_manifest_alias() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nboost.toml");
    std::fs::write(
        &p,
        format!(
            "{}\n[aliases]\n\"rerank-v3.5\" = \"lexical\"\n",
            standard_manifest()
        ),
    )
    .unwrap();
    let run = |component: &str| {
        let out = nboost(
            &p,
            &[
                "rerank",
                "--component",
                component,
                "--query",
                "wing lift",
                "--json",
                "--passage",
                "bread",
                "--passage",
                "wing lift",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let direct = run("lexical");
    assert_eq!(direct[0]["text"], "wing lift", "{direct}");
    assert_eq!(run("rerank-v3.5"), direct);
}
