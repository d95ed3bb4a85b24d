//! The component contract suite (`nboost::contract`, what
//! `wit/reranker.wit` promises) against every component in `components/`,
//! and `nboost components test`, the same suite as a plugin author runs it
//! on a file before uploading.

use nboost::nn::BackendKind;
use nboost::registry::Manifest;

use crate::common::{config, model_file, repo, standard_manifest, wasm};
use crate::server::{nboost, succeeds};

/// Every check of the suite passes for component `name`.
fn keeps_the_contract(name: &str) {
    let manifest = Manifest::parse(&standard_manifest(), &repo()).unwrap();
    // The suite checks behaviour, not speed: one of its checks is 1 000
    // passages in one call, which the JavaScript MiniLM on a debug build,
    // beside the other tests, once ran past the default 10 s deadline.
    let mut config = config(BackendKind::Tract);
    config.engine.limits.deadline_ms = 120_000;
    let checks = nboost::contract::run(&manifest, name, &config)
        .unwrap_or_else(|e| panic!("{name}: cannot load: {e}"));
    assert_eq!(checks.len(), 10, "{name}: {checks:?}");
    for c in &checks {
        assert!(c.ok, "{name}: {}: {}", c.name, c.detail);
    }
}

#[test]
fn lexical_keeps_the_contract() {
    keeps_the_contract("lexical");
}

#[test]
fn minilm_keeps_the_contract() {
    keeps_the_contract("minilm");
}

#[test]
fn python_lexical_keeps_the_contract() {
    keeps_the_contract("lexical-py");
}

#[test]
fn javascript_minilm_keeps_the_contract() {
    keeps_the_contract("minilm-js");
}

#[test]
fn cross_encoder_keeps_the_contract() {
    keeps_the_contract("cross-encoder");
}

fn manifest_file(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("nboost.toml");
    std::fs::write(&path, format!("{}\n{extra}", standard_manifest())).unwrap();
    path
}

#[test]
fn components_test_passes_a_good_file_with_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = succeeds(
        nboost()
            .arg("--manifest")
            .arg(manifest_file(dir.path(), ""))
            .args(["components", "test"])
            .arg(wasm("nboost_reranker_minilm"))
            .args([
                "--graph",
                "all-minilm-l6-v2",
                "--setting",
                "graph=all-minilm-l6-v2",
            ])
            .arg("--setting-file")
            .arg(format!(
                "tokenizer={}",
                model_file("all-MiniLM-L6-v2", "tokenizer.json").display()
            ))
            .arg("--json"),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["checks"].as_array().unwrap().len(), 10);
}

#[test]
fn components_test_names_each_broken_promise_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = format!(
        "[components.wrong-count]\npath = \"{}\"\nsettings = {{ attack = \"wrong-count\" }}\n",
        wasm("nboost_hostile").display()
    );
    let out = nboost()
        .arg("--manifest")
        .arg(manifest_file(dir.path(), &hostile))
        .args(["components", "test", "wrong-count"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL an empty passage list gives an empty list: guest fault"),
        "{stdout}"
    );
    assert!(stdout.contains("pass an unknown setting"), "{stdout}");
    assert!(stdout.contains("3 of 10 checks passed"), "{stdout}");

    // A file that is not a component: a clear error, exit 1, no panic.
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let out = nboost()
        .arg("--manifest")
        .arg(manifest_file(dir.path(), ""))
        .args(["components", "test"])
        .arg(&junk)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
}
