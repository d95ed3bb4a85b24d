#!/usr/bin/env bash
# Cold start, one run, same machine: process start -> first answer of a
# one-passage rerank (wall ms, median of RUNS fresh processes; peak RSS of
# the worst), for the routes an operator has:
#
#   manifest      nboost rerank -c NAME (compiled code and the back-end's
#                 prepared graph form already in the cache)
#   preinit       the same with `preinit = true` (the component snapshotted
#                 after configure, cached)
#   bundle        nboost rerank --bundle (signed; verified and unpacked on
#                 every start), with the component precompiled into it
#   edge bundle   the same, also pre-initialised (--preinit) and carrying
#                 tract's prepared graph form (--tract-form): what an edge
#                 node is meant to run
#   lean          the same bundles on the lean edge build (nboost-lean)
#   1000 entries  the lexical start with 999 more components in the manifest
#   native ORT    Python: import onnxruntime + tokenizers, load the session
#                 and tokenizer, embed query + passage (what a user would
#                 otherwise run)
#
# Run through `./just bench-coldstart`; NBOOST=path/to/nboost runs another
# binary. One JSON line per route.
set -euo pipefail
cd "$(dirname "$0")/.."
nboost=$(realpath "${NBOOST:-target/release/nboost}")
runs=${RUNS:-5}
work=target/bench/coldstart
rm -rf "$work" && mkdir -p "$work"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

measure() { # measure LABEL CMD...: one JSON line (bench/cold.py)
  local label=$1; shift
  .venv/bin/python bench/cold.py "$runs" "$label" -- "$@"
}

q=(-q "what similarity laws must be obeyed" --passage "similarity laws for aerothermoelastic testing")
"$nboost" keys generate "$work/op" > /dev/null
for comp in lexical minilm; do
  "$nboost" bundle build -c "$comp" -o "$work/$comp.nbb" --key "$work/op.key" --precompile > /dev/null
done
"$nboost" bundle build -c minilm -o "$work/edge.nbb" --key "$work/op.key" --precompile --preinit \
  --tract-form > /dev/null
# The manifest with minilm pre-initialised.
pre=$work/nboost-preinit.toml
sed "s#^path = \"#path = \"$PWD/#; s#^setting-files = { tokenizer = \"models#setting-files = { tokenizer = \"$PWD/models#" \
  nboost.toml > "$pre"
sed -i '/^\[components.minilm\]$/a preinit = true' "$pre"
for backend in tract ort; do
  measure "manifest minilm $backend" "$nboost" --backend $backend --cache-dir "$work/cache-m" \
    rerank -c minilm "${q[@]}"
  measure "manifest minilm $backend, preinit" "$nboost" --backend $backend --manifest "$pre" \
    --cache-dir "$work/cache-m" rerank -c minilm "${q[@]}"
  measure "bundle minilm $backend (precompiled)" "$nboost" --backend $backend --cache-dir "$work/cache" \
    rerank --bundle "$work/minilm.nbb" --trusted-key "$work/op.pub" "${q[@]}"
  measure "edge bundle minilm $backend (precompiled, preinit, tract form)" "$nboost" --backend $backend \
    --cache-dir "$work/cache" rerank --bundle "$work/edge.nbb" --trusted-key "$work/op.pub" "${q[@]}"
done
# The lean edge build (no compiler, uploads, SQLite, eval), same bundles.
lean=$(dirname "$nboost")/nboost-lean
if [ -x "$lean" ]; then
  measure "lean bundle minilm tract (precompiled)" "$lean" --cache-dir "$work/cache-lean" \
    rerank --bundle "$work/minilm.nbb" --trusted-key "$work/op.pub" "${q[@]}"
  measure "lean edge bundle minilm tract (precompiled, preinit, tract form)" "$lean" \
    --cache-dir "$work/cache-lean" rerank --bundle "$work/edge.nbb" --trusted-key "$work/op.pub" "${q[@]}"
  measure "lean bundle lexical (precompiled)" "$lean" --cache-dir "$work/cache-lean" \
    rerank --bundle "$work/lexical.nbb" --trusted-key "$work/op.pub" "${q[@]}"
  echo "{\"binary\": \"full\", \"bytes\": $(stat -c %s "$nboost")}"
  echo "{\"binary\": \"lean\", \"bytes\": $(stat -c %s "$lean")}"
fi
measure "bundle lexical (precompiled)" "$nboost" --cache-dir "$work/cache" \
  rerank --bundle "$work/lexical.nbb" --trusted-key "$work/op.pub" "${q[@]}"

# 1 vs 1000 components: the same lexical start, 999 more entries.
big=$work/nboost-1000.toml
cp nboost.toml "$big"
sed -i "s#^path = \"#path = \"$PWD/#" "$big"
for i in $(seq 1 999); do
  printf '\n[components.extra-%d]\npath = "%s"\nsettings = { k1 = 1.2 }\n' "$i" \
    "$PWD/components/target/wasm32-wasip2/release/nboost_reranker_lexical.wasm" >> "$big"
done
# A ~9 ms start moves by a millisecond with any noise: the pair is
# measured back to back, LEXICAL_RUNS times each (default 31).
lruns=${LEXICAL_RUNS:-31}
for pass in 1 2; do
  runs=$lruns measure "manifest lexical (pass $pass)" "$nboost" --cache-dir .nboost-cache \
    rerank -c lexical "${q[@]}"
  runs=$lruns measure "manifest lexical, 1000 entries (pass $pass)" "$nboost" --manifest "$big" \
    --cache-dir .nboost-cache rerank -c lexical "${q[@]}"
done

measure "native Python ORT + tokenizers" .venv/bin/python -c '
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
d = "models/all-MiniLM-L6-v2/"
o = ort.SessionOptions(); o.intra_op_num_threads = 2
s = ort.InferenceSession(d + "model.onnx", o, providers=["CPUExecutionProvider"])
t = Tokenizer.from_file(d + "tokenizer.json")
e = t.encode_batch(["what similarity laws must be obeyed", "similarity laws for aerothermoelastic testing"])
n = max(len(x.ids) for x in e)
ids = np.array([x.ids + [0] * (n - len(x.ids)) for x in e], dtype=np.int64)
m = np.array([[1] * len(x.ids) + [0] * (n - len(x.ids)) for x in e], dtype=np.int64)
h = s.run(None, {"input_ids": ids, "attention_mask": m, "token_type_ids": np.zeros_like(ids)})[0]
v = (h * m[..., None]).sum(1) / m.sum(1, keepdims=True)
v /= np.linalg.norm(v, axis=1, keepdims=True)
print(float(v[0] @ v[1]))'
