#!/usr/bin/env bash
# Would a batcher that merges concurrent requests pay? One run, same machine.
#
# A server already runs concurrent requests on every core (workers = cores
# + 1), so merging N requests into one call can only gain what a larger
# call gains per passage on one thread. This measures that bound: the
# passages/s of one call of 1, 10 and 80 passages (query + passages of
# bench/rerank-100x100.json, ~100 tokens each), on one thread, for the
# cross-encoder and minilm components, on each back-end in BACKENDS
# (default "tract ort"). If 80-passage calls are not clearly faster per
# passage than 10-passage ones, merging ten 10-passage requests cannot be.
#
#   NBOOST=target/release/nboost bash bench/batching.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nboost=${NBOOST:-target/release/nboost}
backends=${BACKENDS:-tract ort}
work=target/bench/batching
mkdir -p "$work"
export NBOOST_DEADLINE_MS=${NBOOST_DEADLINE_MS:-120000}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python - "$work" <<'PY'
import json, sys
d = json.load(open("bench/rerank-100x100.json"))
for n in (1, 10, 80):
    json.dump({"query": d["query"], "passages": d["passages"][:n]}, open(f"{sys.argv[1]}/{n}.json", "w"))
PY
for backend in $backends; do
  for comp in cross-encoder minilm; do
    for n in 1 10 80; do
      "$nboost" --backend "$backend" --threads 1 bench -c "$comp" --input "$work/$n.json" --iters 9 \
        | .venv/bin/python -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"backend": sys.argv[1], "component": r["component"], "passages_per_call": r["passages"], "ms_per_call": round(r["median_ms_per_call"], 2), "passages_per_s": round(r["passages_per_s"], 1)}))' "$backend"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
