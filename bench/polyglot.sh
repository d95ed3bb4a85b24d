#!/usr/bin/env bash
# Plugins in other languages next to their Rust twins, one run, same
# machine: file size, cold start (process start -> first answer, compiled
# code already cached, median of RUNS) with peak RSS, and per-call cost on
# bench/rerank-100x100.json (1 query x 100 passages of ~100 tokens; tract).
#
#   lexical     Rust BM25            lexical-py  Python BM25 (componentize-py)
#   minilm      Rust MiniLM (wasi-nn) minilm-js  JavaScript MiniLM (componentize-js)
#
# Run through `./just bench-polyglot`; NBOOST=path/to/nboost bash
# bench/polyglot.sh runs an existing binary. One JSON line per component.
set -euo pipefail
cd "$(dirname "$0")/.."
nboost=${NBOOST:-target/release/nboost}
runs=${RUNS:-5}
iters=${ITERS:-5}
export NBOOST_DEADLINE_MS=${NBOOST_DEADLINE_MS:-120000}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for comp in lexical lexical-py minilm minilm-js; do
  file=$("$nboost" components inspect "$comp" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["path"])')
  # The first (untimed) run also fills the compiled-code cache.
  cold=$(.venv/bin/python bench/cold.py "$runs" "$comp" -- "$nboost" rerank -c "$comp" -q "wing lift" \
    --passage "the lift of a wing" --passage bread)
  bench=$("$nboost" --threads 2 bench -c "$comp" --iters "$iters")
  .venv/bin/python - "$comp" "$file" "$bench" "$cold" <<'PY'
import json, os, sys
comp, path, bench, cold = sys.argv[1:]
b, c = json.loads(bench), json.loads(cold)
print(json.dumps({
    "component": comp,
    "bytes": os.path.getsize(path),
    "cold_start_ms": c.get("cold_start_ms"),
    "peak_rss_mib": c.get("peak_rss_mib"),
    "passages_per_s": round(b["passages_per_s"], 1),
    "ms_per_call_100_passages": round(b["median_ms_per_call"], 1),
}))
PY
done
