//! The contract's compatibility policy (docs/wit.md), tested with real
//! components: one built against a later patch of `nboost:reranker`
//! (`0.1.1`) keeps the contract and serves on this `0.1.0` host; one built
//! against another minor (`0.2.0`) is refused, naming the version.

use std::path::Path;
use std::process::Command;

use crate::common::repo;
use crate::server::{nboost, succeeds};

/// Scaffold the JavaScript overlap plugin in `dir`, rewrite its vendored
/// WIT to `version`, and build it with componentize-js.
fn built_against(dir: &Path, version: &str) -> std::path::PathBuf {
    succeeds(
        nboost()
            .args(["new", "component", "later", "--lang", "js", "--dir"])
            .arg(dir),
    );
    let root = dir.join("later");
    let wit = root.join("wit/reranker.wit");
    let text = std::fs::read_to_string(&wit).unwrap();
    let moved = text.replace(
        "package nboost:reranker@0.1.0;",
        &format!("package nboost:reranker@{version};"),
    );
    assert_ne!(text, moved, "the vendored WIT names 0.1.0");
    std::fs::write(&wit, moved).unwrap();
    let componentize = repo().join("components/js-minilm/node_modules/.bin/componentize-js");
    succeeds(
        Command::new(componentize)
            .args([
                "reranker.js",
                "--wit",
                "wit",
                "--world-name",
                "reranker-plugin",
            ])
            .args(["--disable", "http", "fetch-event", "-o", "later.wasm"])
            .current_dir(&root),
    );
    root.join("later.wasm")
}

#[test]
fn a_component_built_against_a_later_patch_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = built_against(dir.path(), "0.1.1");
    let out = succeeds(nboost().args(["components", "test"]).arg(&wasm));
    assert!(out.contains("10 of 10 checks passed"), "{out}");
    let check = succeeds(nboost().args(["components", "check"]).arg(&wasm));
    assert!(check.contains("reranker@0.1.1"), "{check}");
}

#[test]
fn a_component_of_another_minor_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = built_against(dir.path(), "0.2.0");
    let out = nboost()
        .args(["components", "check"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("@0.1.x") && err.contains("reranker@0.2.0"),
        "{err}"
    );
}
