//! Writes a few tiny WAT-made components into a seed-corpus directory
//! (default `corpus/validate`): one the validator accepts, and near misses
//! for each of its refusals, so the fuzzer starts next to every branch.
//!
//! Run from `fuzz/`: `cargo run --example make_seeds [DIR]`.

use std::{fs, path::PathBuf};

const SEEDS: &[(&str, &str)] = &[
    (
        "tiny_ok",
        r#"(component
            (import "wasi:cli/environment@0.2.6" (instance))
            (import "wasi:nn/graph@0.2.0-rc-2024-10-28" (instance))
            (instance $r)
            (export "nboost:reranker/reranker@0.1.0" (instance $r)))"#,
    ),
    (
        "tiny_ok_nested",
        r#"(component
            (component $inner
                (import "wasi:sockets/tcp@0.2.6" (instance))
                (core module $m (import "env" "f" (func)))
                (export "nboost:reranker/reranker@9.9.9" (instance 0)))
            (instance $r)
            (export "nboost:reranker/reranker@0.1.7" (instance $r)))"#,
    ),
    (
        "tiny_refused_import",
        r#"(component
            (import "wasi:sockets/tcp@0.2.6" (instance))
            (import "wasi:nn/graph@0.3.0" (instance))
            (import "evil" (func))
            (instance $r)
            (export "nboost:reranker/reranker@0.1.0" (instance $r)))"#,
    ),
    (
        "tiny_wrong_version",
        r#"(component
            (instance $r)
            (export "nboost:reranker/reranker@0.2.0" (instance $r))
            (export "nboost:reranker/reranker" (instance $r)))"#,
    ),
    (
        "tiny_core_module",
        r#"(module (func (export "f") (result i32) i32.const 1))"#,
    ),
];

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "corpus/validate".into()),
    );
    fs::create_dir_all(&dir).expect("create corpus dir");
    for (name, text) in SEEDS {
        let bytes = wat::parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = dir.join(format!("{name}.wasm"));
        fs::write(&path, &bytes).expect("write seed");
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
}
