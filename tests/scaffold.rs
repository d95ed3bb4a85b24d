//! `nboost new component`: the scaffold builds for wasm32-wasip2 as
//! generated, passes its own unit tests and the contract suite, and its
//! manifest snippet serves it.

use std::process::Command;

use crate::common::repo;
use crate::server::{nboost, succeeds};

fn cargo(dir: &std::path::Path, args: &[&str]) {
    succeeds(
        Command::new(env!("CARGO"))
            .args(args)
            .current_dir(dir)
            // Shared between runs: the first builds wit-bindgen once.
            .env("CARGO_TARGET_DIR", repo().join("target/scaffold"))
            .env_remove("CARGO_BUILD_TARGET"),
    );
}

#[test]
fn a_scaffolded_component_builds_and_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    succeeds(
        nboost()
            .args(["new", "component", "word-overlap", "--dir"])
            .arg(dir.path()),
    );
    let root = dir.path().join("word-overlap");
    assert!(root.join("wit/reranker.wit").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("wit/reranker.wit")).unwrap(),
        std::fs::read_to_string(repo().join("wit/reranker.wit")).unwrap(),
        "the vendored contract is this host's"
    );

    cargo(&root, &["test", "--quiet"]);
    cargo(
        &root,
        &["build", "--release", "--target", "wasm32-wasip2", "--quiet"],
    );
    let wasm =
        repo().join("target/scaffold/wasm32-wasip2/release/nboost_reranker_word_overlap.wasm");

    let stdout = succeeds(
        nboost()
            .args(["components", "test"])
            .arg(&wasm)
            .args(["--setting", "lowercase=true"]),
    );
    assert!(stdout.contains("10 of 10 checks passed"), "{stdout}");

    // The snippet, pointed at the built file, serves it.
    let snippet = std::fs::read_to_string(root.join("manifest-snippet.toml"))
        .unwrap()
        .replace(
            &format!("{}/target", std::fs::canonicalize(&root).unwrap().display()),
            &repo().join("target/scaffold").display().to_string(),
        );
    let manifest = dir.path().join("nboost.toml");
    std::fs::write(&manifest, snippet).unwrap();
    let out = succeeds(
        nboost()
            .arg("--manifest")
            .arg(&manifest)
            .args(["rerank", "-c", "word-overlap", "-q", "wing lift", "--json"])
            .args(["--passage", "bread", "--passage", "the lift of a wing"]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["index"], 1, "{v}");
    assert_eq!(v[0]["score"], 1.0, "{v}");
}

#[test]
fn bad_names_and_occupied_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["Bad", "has space", "x--y", "a_b"] {
        let out = nboost()
            .args(["new", "component", name, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(name));
    }
    std::fs::create_dir_all(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = nboost()
        .args(["new", "component", "taken", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );
    let py_nn = nboost()
        .args([
            "new",
            "component",
            "x",
            "--lang",
            "python",
            "--template",
            "bi-encoder",
        ])
        .args([
            "--graph",
            "nboost.toml",
            "--tokenizer",
            "nboost.toml",
            "--dir",
        ])
        .arg(dir.path())
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(py_nn.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&py_nn.stderr).contains("wasi:nn"));
    assert!(!dir.path().join("x").exists(), "nothing scaffolded");
    let lang = nboost()
        .args(["new", "component", "x", "--lang", "cobol"])
        .output()
        .unwrap();
    assert_eq!(
        lang.status.code(),
        Some(2),
        "clap refuses an unknown language"
    );
}

/// Scaffold `name` in `lang`, run its native tests and its build with
/// `test` and `build` (in its directory, `.venv/bin` first on PATH), then
/// check the built `name.wasm` with the contract suite and serve it through
/// its manifest snippet.
fn scaffold_in(lang: &str, name: &str, test: &[&str], build: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    succeeds(
        nboost()
            .args(["new", "component", name, "--lang", lang, "--dir"])
            .arg(dir.path()),
    );
    let root = dir.path().join(name);
    assert_eq!(
        std::fs::read_to_string(root.join("wit/reranker.wit")).unwrap(),
        std::fs::read_to_string(repo().join("wit/reranker.wit")).unwrap(),
    );
    let path = format!(
        "{}:{}",
        repo().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for argv in [test, build] {
        succeeds(
            Command::new(argv[0])
                .args(&argv[1..])
                .current_dir(&root)
                .env("PATH", &path),
        );
    }
    let wasm = root.join(format!("{name}.wasm"));
    let stdout = succeeds(nboost().args(["components", "test"]).arg(&wasm));
    assert!(stdout.contains("10 of 10 checks passed"), "{stdout}");

    let manifest = dir.path().join("nboost.toml");
    std::fs::copy(root.join("manifest-snippet.toml"), &manifest).unwrap();
    let out = succeeds(
        nboost()
            .arg("--manifest")
            .arg(&manifest)
            .args(["rerank", "-c", name, "-q", "wing lift", "--json"])
            .args(["--passage", "bread", "--passage", "the lift of a wing"]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["index"], 1, "{v}");
    assert_eq!(v[0]["score"], 1.0, "{v}");
}

#[test]
fn a_scaffolded_python_component_builds_and_keeps_the_contract() {
    scaffold_in(
        "python",
        "py-overlap",
        &["python", "-m", "unittest", "-q"],
        &["bash", "build.sh"],
    );
}

#[test]
fn a_scaffolded_javascript_component_builds_and_keeps_the_contract() {
    // `npm install` fetches componentize-js from the npm registry (a
    // registry this machine reaches; its cache makes reruns quick).
    scaffold_in(
        "js",
        "js-overlap",
        &["npm", "test", "--silent"],
        &[
            "bash",
            "-c",
            "npm install --silent --no-audit --no-fund && npm run --silent build",
        ],
    );
}
