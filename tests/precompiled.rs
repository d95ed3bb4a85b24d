//! Components compiled ahead of time (`nboost compile`, `bundle build
//! --precompile`): a node loads a signed bundle's artifact without
//! compiling; an artifact that does not fit the node's engine (another
//! configuration, another target) is not loaded, and the node compiles the
//! component itself.

use std::path::PathBuf;
use std::process::Output;

use crate::common::standard_manifest;
use crate::server::{nboost, succeeds};

struct Fixture {
    dir: tempfile::TempDir,
    manifest: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("nboost.toml");
        std::fs::write(&manifest, standard_manifest()).unwrap();
        succeeds(
            nboost()
                .args(["keys", "generate", "ops"])
                .current_dir(dir.path()),
        );
        Fixture { dir, manifest }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = nboost();
        // A cache of its own: what loads must come from the bundle or
        // from compiling, never from an earlier test's cache.
        c.arg("--manifest")
            .arg(&self.manifest)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .current_dir(self.dir.path());
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeds(&mut self.cmd(args))
    }

    /// `rerank --bundle FILE` with info logs: (stdout, stderr).
    fn rerank(&self, bundle: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "-v",
            "rerank",
            "--bundle",
            bundle,
            "--trusted-key",
            "ops.pub",
            "-q",
            "wing lift",
            "--json",
            "--passage",
            "bread",
            "--passage",
            "the lift of a wing",
        ];
        args.extend_from_slice(extra);
        let out: Output = self.cmd(&args).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v[0]["index"], 1, "{v}");
        (stdout, stderr)
    }

    fn parts(&self, bundle: &str) -> Vec<serde_json::Value> {
        let out = self.ok(&["bundle", "inspect", bundle]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["manifest"]["parts"].as_array().unwrap().clone()
    }
}

fn host_triple() -> &'static str {
    // What this test binary was built for is what the nboost binary runs on.
    if cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(
        target_arch = "aarch64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        "aarch64-unknown-linux-gnu"
    } else {
        panic!("add this host's triple")
    }
}

#[test]
fn a_bundled_artifact_loads_without_compiling() {
    let f = Fixture::new();
    f.ok(&[
        "bundle",
        "build",
        "-c",
        "lexical",
        "-o",
        "pre.nbb",
        "--key",
        "ops.key",
        "--precompile",
    ]);
    let parts = f.parts("pre.nbb");
    let pre = parts
        .iter()
        .find(|p| p["kind"]["type"] == "precompiled")
        .unwrap_or_else(|| panic!("no precompiled part: {parts:?}"));
    assert_eq!(pre["kind"]["target"], host_triple());
    assert!(pre["kind"]["engine"]
        .as_str()
        .unwrap()
        .starts_with("wasmtime-"));

    let (_, log) = f.rerank("pre.nbb", &[]);
    assert!(log.contains("origin=Precompiled"), "{log}");
    assert!(!log.contains("origin=Compiled"), "{log}");

    // The same bundle without the artifact: the node compiles.
    f.ok(&[
        "bundle",
        "build",
        "-c",
        "lexical",
        "-o",
        "plain.nbb",
        "--key",
        "ops.key",
    ]);
    let (_, log) = f.rerank("plain.nbb", &[]);
    assert!(log.contains("origin=Compiled"), "{log}");
}

#[test]
fn an_artifact_of_another_engine_configuration_is_not_loaded() {
    let f = Fixture::new();
    f.ok(&[
        "bundle",
        "build",
        "-c",
        "lexical",
        "-o",
        "pre.nbb",
        "--key",
        "ops.key",
        "--precompile",
    ]);
    // Fuel metering changes the generated code: wasmtime refuses the
    // artifact, the node says so and compiles.
    let (_, log) = f.rerank("pre.nbb", &["--fuel", "1000000000"]);
    assert!(log.contains("does not fit this engine"), "{log}");
    assert!(log.contains("origin=Compiled"), "{log}");
}

#[test]
fn an_artifact_for_another_target_is_carried_but_not_loaded_here() {
    let f = Fixture::new();
    let other = if host_triple().starts_with("x86_64") {
        "aarch64-unknown-linux-gnu"
    } else {
        "x86_64-unknown-linux-gnu"
    };
    let out = f.ok(&[
        "compile",
        "lexical",
        "--triple",
        other,
        "-o",
        "lexical.cwasm",
    ]);
    assert!(out.contains(other), "{out}");
    assert!(
        std::fs::metadata(f.dir.path().join("lexical.cwasm"))
            .unwrap()
            .len()
            > 1000
    );

    f.ok(&[
        "bundle",
        "build",
        "-c",
        "lexical",
        "-o",
        "cross.nbb",
        "--key",
        "ops.key",
        "--precompile",
        other,
    ]);
    let parts = f.parts("cross.nbb");
    assert!(
        parts.iter().any(|p| p["kind"]["target"] == other),
        "{parts:?}"
    );
    let (_, log) = f.rerank("cross.nbb", &[]);
    assert!(log.contains("origin=Compiled"), "{log}");

    let bad = f
        .cmd(&["compile", "lexical", "--triple", "no-such-triple"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-triple"));
}
