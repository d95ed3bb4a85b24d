//! Fast starts for edge nodes: pre-initialised components (snapshotted
//! after `configure`) and tract's prepared graph form (NNEF), from the
//! manifest (made once, cached) and from a signed bundle (`bundle build
//! --preinit --tract-form`), on the full and the lean build. Each must
//! answer exactly as the plain route does; a component that keeps a host
//! resource across `configure` is refused with the reason; a broken cached
//! form is ignored, not fatal.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{backend_available, ort_library, standard_manifest};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// The standard manifest with `preinit = true` on the components named.
    fn new(preinit: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut text = standard_manifest();
        for c in preinit {
            let table = format!("[components.{c}]\n");
            assert!(text.contains(&table), "{c} is in the standard manifest");
            text = text.replace(&table, &format!("{table}preinit = true\n"));
        }
        std::fs::write(dir.path().join("nboost.toml"), text).unwrap();
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `BINARY --manifest M --cache-dir CACHE ARGS`, debug logs on stderr.
    fn run(&self, binary: &Path, cache: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(binary)
            .arg("--manifest")
            .arg(self.path("nboost.toml"))
            .arg("--cache-dir")
            .arg(self.path(cache))
            .args(args)
            .env("RUST_LOG", "nboost=debug")
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, cache: &str, args: &[&str]) -> (String, String) {
        let (ok, out, log) = self.run(&full(), cache, args);
        assert!(ok, "{args:?} failed: {log}");
        (out, log)
    }
}

fn full() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nboost"))
}

const QUERY: [&str; 8] = [
    "-q",
    "what similarity laws must be obeyed",
    "--passage",
    "similarity laws for aerothermoelastic testing",
    "--passage",
    "the boundary layer of a flat plate",
    "--passage",
    "bread",
];

/// `rerank ... --json` of `QUERY` plus `args`: the scores by passage index.
fn scores(stdout: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    let mut s = vec![f64::NAN; 3];
    for r in v.as_array().unwrap() {
        s[r["index"].as_u64().unwrap() as usize] = r["score"].as_f64().unwrap();
    }
    s
}

fn rerank_args<'a>(head: &[&'a str]) -> Vec<&'a str> {
    let mut a = head.to_vec();
    a.extend_from_slice(&["rerank", "--json"]);
    a.extend_from_slice(&QUERY);
    a
}

fn assert_close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn a_manifest_component_is_snapshotted_once_and_answers_the_same() {
    let f = Fixture::new(&["minilm"]);
    let plain = Fixture::new(&[]);
    let mut args = rerank_args(&["--backend", "tract"]);
    args.extend_from_slice(&["-c", "minilm"]);
    let (want, _) = plain.ok("cache", &args);

    let (first, log) = f.ok("cache", &args);
    assert!(log.contains("component pre-initialised"), "{log}");
    assert!(
        log.contains("instance started from its pre-initialised image"),
        "{log}"
    );
    // `configure` ran once, for the snapshot, never for the instance that
    // answered.
    assert_eq!(log.matches("instance configured").count(), 1, "{log}");
    assert_close(&scores(&first), &scores(&want), "first run");

    let (second, log) = f.ok("cache", &args);
    assert!(
        log.contains("origin=Cached preinitialized=true"),
        "the snapshot comes from the cache: {log}"
    );
    assert!(!log.contains("instance configured"), "{log}");
    assert!(!log.contains("component pre-initialised"), "{log}");
    assert_close(&scores(&second), &scores(&want), "cached snapshot");
}

#[test]
fn a_component_keeping_a_host_resource_is_not_snapshotted() {
    // minilm-js keeps its wasi-nn execution context from `configure` on.
    let f = Fixture::new(&["minilm-js"]);
    let mut args = rerank_args(&[]);
    args.extend_from_slice(&["-c", "minilm-js"]);
    let (ok, _, log) = f.run(&full(), "cache", &args);
    assert!(!ok, "{log}");
    assert!(log.contains("cannot be pre-initialised"), "{log}");
    assert!(log.contains("holds host resources"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn tracts_prepared_form_is_cached_and_answers_the_same() {
    let f = Fixture::new(&[]);
    let mut args = rerank_args(&["--backend", "tract"]);
    args.extend_from_slice(&["-c", "minilm"]);
    let (onnx, log) = f.ok("cache", &args);
    assert!(log.contains("prepared graph form cached"), "{log}");
    let (nnef, log) = f.ok("cache", &args);
    assert!(log.contains("graph loaded from its prepared form"), "{log}");
    assert_close(&scores(&nnef), &scores(&onnx), "NNEF form");

    // A damaged form is reported and the ONNX file loaded instead.
    let forms = f.path("cache/graphs/tract-0.23-nnef-1");
    for e in std::fs::read_dir(&forms).unwrap() {
        std::fs::write(e.unwrap().path(), b"not a tar").unwrap();
    }
    let (again, log) = f.ok("cache", &args);
    assert!(
        log.contains("ignoring an unusable prepared graph form"),
        "{log}"
    );
    assert_close(&scores(&again), &scores(&onnx), "after a damaged form");
}

/// The files of `dir` whose names end with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

#[test]
fn onnx_runtimes_prepared_form_maps_its_weights_and_answers_the_same() {
    let Some(lib) = ort_library() else {
        backend_available("ONNX Runtime (libonnxruntime.so)", false);
        return;
    };
    let f = Fixture::new(&[]);
    let lib = lib.to_string_lossy().into_owned();
    let mut args = rerank_args(&["--backend", "ort", "--ort-library", &lib]);
    args.extend_from_slice(&["-c", "minilm"]);
    let (onnx, log) = f.ok("cache", &args);
    assert!(log.contains("prepared graph form cached"), "{log}");
    let forms = std::fs::read_dir(f.path("cache/graphs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("/ort-"))
        .expect("an ORT form directory");
    // The graph apart from its weights: a small file, and one weights file.
    let graph = files_ending(&forms, ".form");
    assert_eq!(graph.len(), 1, "{graph:?}");
    assert!(std::fs::metadata(&graph[0]).unwrap().len() < 1 << 20);
    let weights = files_ending(&forms, ".weights");
    assert_eq!(weights.len(), 1, "{weights:?}");
    assert!(std::fs::metadata(&weights[0]).unwrap().len() > 80 << 20);

    let (mapped, log) = f.ok("cache", &args);
    assert!(log.contains("graph loaded from its prepared form"), "{log}");
    assert_close(&scores(&mapped), &scores(&onnx), "ORT form");

    // A damaged graph is ignored; the form written again replaces the old
    // weights rather than leaving them behind.
    std::fs::write(&graph[0], b"not a model").unwrap();
    let (again, log) = f.ok("cache", &args);
    assert!(
        log.contains("ignoring an unusable prepared graph form"),
        "{log}"
    );
    assert!(log.contains("prepared graph form cached"), "{log}");
    assert_close(&scores(&again), &scores(&onnx), "after a damaged graph");
    let now = files_ending(&forms, ".weights");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, weights, "new weights for a new write");

    // Missing weights: ignored too, never a crash.
    std::fs::remove_file(&now[0]).unwrap();
    let (last, log) = f.ok("cache", &args);
    assert!(
        log.contains("ignoring an unusable prepared graph form"),
        "{log}"
    );
    assert_close(&scores(&last), &scores(&onnx), "after lost weights");
}

#[test]
fn a_preinitialised_bundle_answers_the_same_on_the_full_and_lean_builds() {
    let f = Fixture::new(&[]);
    f.ok("cache", &["keys", "generate", "ops"]);
    let (built, _) = f.ok(
        "cache",
        &[
            "bundle",
            "build",
            "-c",
            "minilm",
            "-o",
            "minilm.nbb",
            "--key",
            "ops.key",
            "--precompile",
            "--preinit",
            "--tract-form",
        ],
    );
    assert!(built.contains("signed"), "{built}");
    let (inspect, _) = f.ok("cache", &["bundle", "inspect", "minilm.nbb"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let parts = v["manifest"]["parts"].as_array().unwrap();
    let kind = |t: &str| parts.iter().find(|p| p["kind"]["type"] == t);
    let pre = kind("preinitialized").unwrap_or_else(|| panic!("{parts:?}"));
    assert_eq!(pre["kind"]["info"]["name"], "all-MiniLM-L6-v2", "{pre}");
    let art = kind("precompiled").unwrap_or_else(|| panic!("{parts:?}"));
    assert_eq!(art["kind"]["preinitialized"], true, "{art}");
    let form = kind("graph-form").unwrap_or_else(|| panic!("{parts:?}"));
    assert_eq!(form["kind"]["form"], "tract-0.23-nnef-1", "{form}");

    let mut args = rerank_args(&[]);
    args.extend_from_slice(&["-c", "minilm"]);
    let (want, _) = f.ok("plain", &args);

    let mut bundled = rerank_args(&[]);
    bundled.extend_from_slice(&["--bundle", "minilm.nbb", "--trusted-key", "ops.pub"]);
    let check = |binary: &Path, cache: &str| {
        let (ok, out, log) = f.run(binary, cache, &bundled);
        assert!(ok, "{log}");
        assert!(
            log.contains("origin=Precompiled preinitialized=true"),
            "{log}"
        );
        assert!(log.contains("graph loaded from its prepared form"), "{log}");
        assert!(!log.contains("instance configured"), "{log}");
        assert_close(&scores(&out), &scores(&want), "bundle");
    };
    check(&full(), "node");
    let lean = full().with_file_name("nboost-lean");
    if backend_available(
        "the lean build (target/debug/nboost-lean: `./just build`)",
        lean.is_file(),
    ) {
        check(&lean, "lean-node");
    }
}
