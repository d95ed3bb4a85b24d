#!/usr/bin/env bash
# How much does a larger back-end call gain per passage? One run, same
# machine. (bench/merging.sh measures the server's merging of concurrent
# computes itself; this is the part of its gain that is arithmetic, not
# contention.) It measures the passages/s of one call of 1, 10 and 80
# passages (query + passages of bench/rerank-100x100.json, ~100 tokens
# each), on one thread, for the cross-encoder and minilm components, on each
# back-end in BACKENDS (default "tract ort").
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
