//! Paths and builders shared by the tests.

use std::path::{Path, PathBuf};

use nboost::nn::{BackendKind, NnOptions};
use nboost::registry::Manifest;
use nboost::sandbox::EngineOptions;
use nboost::service::RerankerConfig;
use nboost::Reranker;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A component built by `just components`.
pub fn wasm(crate_name: &str) -> PathBuf {
    let p = repo()
        .join("components/target/wasm32-wasip2/release")
        .join(format!("{crate_name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run `just components`",
        p.display()
    );
    p
}

/// A file of the imported model (`just model`).
pub fn model_file(model: &str, file: &str) -> PathBuf {
    let p = repo().join("models").join(model).join(file);
    assert!(p.is_file(), "{} is missing: run `just model`", p.display());
    p
}

/// Compiled-component cache shared by all tests (debug builds compile
/// slowly; the cache is keyed by digest and engine, so sharing is safe).
pub fn cache_dir() -> PathBuf {
    repo().join("target/nboost-test-cache")
}

/// Manifest entries for the real components and graphs, to splice into
/// test manifests.
pub fn standard_manifest() -> String {
    format!(
        r#"
[graphs.all-minilm-l6-v2]
path = "{minilm_graph}"

[graphs.tiny-cross-encoder]
path = "{ce_graph}"

[components.lexical]
path = "{lexical}"

[components.minilm]
path = "{minilm}"
graphs = ["all-minilm-l6-v2"]
settings = {{ graph = "all-minilm-l6-v2" }}
setting-files = {{ tokenizer = "{minilm_tok}" }}

[components.lexical-py]
path = "{lexical_py}"

[components.minilm-js]
path = "{minilm_js}"
graphs = ["all-minilm-l6-v2"]
settings = {{ graph = "all-minilm-l6-v2" }}
setting-files = {{ tokenizer = "{minilm_tok}" }}

[components.cross-encoder]
path = "{ce}"
graphs = ["tiny-cross-encoder"]
settings = {{ graph = "tiny-cross-encoder" }}
setting-files = {{ tokenizer = "{ce_tok}" }}
"#,
        minilm_graph = model_file("all-MiniLM-L6-v2", "model.onnx").display(),
        minilm_tok = model_file("all-MiniLM-L6-v2", "tokenizer.json").display(),
        ce_graph = model_file("tiny-cross-encoder", "model.onnx").display(),
        ce_tok = model_file("tiny-cross-encoder", "tokenizer.json").display(),
        lexical = wasm("nboost_reranker_lexical").display(),
        minilm = wasm("nboost_reranker_minilm").display(),
        ce = wasm("nboost_reranker_cross_encoder").display(),
        lexical_py = wasm("nboost_reranker_lexical_py").display(),
        minilm_js = wasm("nboost_reranker_minilm_js").display(),
    )
}

/// Default test configuration with the given back-end.
pub fn config(backend: BackendKind) -> RerankerConfig {
    RerankerConfig {
        engine: EngineOptions {
            max_instances: 16,
            ..EngineOptions::default()
        },
        nn: NnOptions {
            backend,
            threads: 2,
            ort_library: ort_library(),
            openvino_library: openvino_library(),
            ..NnOptions::default()
        },
        cache_dir: Some(cache_dir()),
        max_idle_per_component: 2,
        compiler: None,
    }
}

/// A reranker over manifest `text` (paths in it should be absolute).
pub fn reranker(text: &str, config: RerankerConfig) -> Reranker {
    let manifest = Manifest::parse(text, &repo()).expect("test manifest parses");
    Reranker::new(manifest, config).expect("reranker builds")
}

fn site_packages() -> PathBuf {
    repo().join(".venv/lib/python3.11/site-packages")
}

/// libonnxruntime.so: `ORT_DYLIB_PATH`, else the project venv's wheel.
pub fn ort_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(repo().join(p));
    }
    let capi = site_packages().join("onnxruntime/capi");
    std::fs::read_dir(capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
}

/// The OpenVINO library directory: `OPENVINO_LIB_DIR`, else the venv's.
pub fn openvino_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OPENVINO_LIB_DIR") {
        return Some(repo().join(p));
    }
    let libs = site_packages().join("openvino/libs");
    libs.is_dir().then_some(libs)
}

/// Whether an optional back-end's library is present. Under CI it must be:
/// a missing library there is a broken setup, not a reason to skip.
pub fn backend_available(what: &str, present: bool) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is required under CI but was not found"
        );
        eprintln!("skipping: {what} not found");
    }
    present
}

/// Read a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Strings of a JSON array.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `bash SCRIPT VERB DIR` when this test process ends, however it
/// ends: a watchdog in the background (the servers a script starts outlive
/// the shell that started them).
pub fn stop_at_exit(script: &Path, verb: &str, dir: &Path) {
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"(while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec bash "$1" "$2" "$3") &"#)
        .arg(std::process::id().to_string())
        .arg(script)
        .arg(verb)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .status()
        .unwrap();
    assert!(status.success());
}
