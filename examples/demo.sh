#!/usr/bin/env bash
# The nboost demo: a two-stage reranking pipeline over a real test
# collection (Cranfield, 1400 aeronautics abstracts), with real models.
#
#   stage 1: the `lexical` plugin (BM25, pure wasm) ranks the whole collection
#   stage 2: the `minilm` plugin (all-MiniLM-L6-v2: tokenizer in wasm, the
#            ONNX graph on the host through wasi-nn) reranks its top 20
#
# Both stages are WebAssembly components running in nboost's sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
nboost=${1:-target/debug/nboost}
data=../shared/data/cranfield
query=${QUERY:-"what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft"}

echo "query: $query"
echo
echo "== stage 1: lexical (BM25) over $(wc -l < $data/corpus.jsonl) documents, top 5 of 20 =="
"$nboost" rerank -c lexical -q "$query" -p $data/corpus.jsonl --top-n 20 --jsonl > target/demo-candidates.jsonl
head -n 5 target/demo-candidates.jsonl | cut -c1-160
echo
echo "== stage 2: minilm reranks those 20 =="
"$nboost" rerank -c minilm -q "$query" -p target/demo-candidates.jsonl --top-n 5
