#!/usr/bin/env bash
# HTTP load benchmark of `nboost serve`, on loopback only, bounded in time.
#
# Starts the real server on 127.0.0.1 (port 0) with a throw-away data
# directory and one tenant, then for each component (public `lexical` and
# `minilm`) and each number of concurrent clients (1, 8, 64) runs a load
# generator for DURATION seconds against POST /v1/rerank with one query and
# DOCS passages taken from bench/rerank-100x100.json. Prints one JSON line
# per run (requests/s, p50, p99 latency, errors) and exits non-zero if any
# request failed.
#
#   NBOOST=target/release/nboost DURATION=10 DOCS=10 bash bench/serve.sh
#
# Load generator: `oha` if installed (cargo install oha), else `wrk`
# (apt-get install wrk). The server runs WORKERS calls at once (default: the
# server's own) with THREADS inference threads each (default 1); the rest queue.
# MERGE=off|on|auto is passed as --merge-computes (default auto: concurrent
# computes of one graph merge into one back-end call on ONNX Runtime and
# OpenVINO, not on tract).
set -euo pipefail
cd "$(dirname "$0")/.."

nboost=${NBOOST:-target/release/nboost}
duration=${DURATION:-10}
docs=${DOCS:-10}
clients=${CLIENTS:-"1 8 64"}
components=${COMPONENTS:-"lexical minilm"}
threads=${THREADS:-1}
workers=${WORKERS:-}
backend=${BACKEND:-tract}
merge=${MERGE:-auto}

if command -v oha >/dev/null; then tool=oha
elif command -v wrk >/dev/null; then tool=wrk
else echo "need oha (cargo install oha) or wrk (apt-get install wrk)" >&2; exit 2
fi

tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

key=$("$nboost" tenants add bench --data-dir "$tmp/data" --max-concurrent 4096)
"$nboost" --backend "$backend" --threads "$threads" serve --listen 127.0.0.1:0 \
  --data-dir "$tmp/data" ${workers:+--workers "$workers"} --max-concurrent-requests 4096 \
  --merge-computes "$merge" \
  >"$tmp/out" 2>"$tmp/log" &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^listening on ' "$tmp/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
  sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$tmp/out")
[ -n "$base" ] || { echo "the server did not start" >&2; cat "$tmp/log" >&2; exit 1; }

machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
echo "{\"machine\": \"$machine\", \"tool\": \"$tool\", \"server\": \"$base\", \"workers\": \"${workers:-default}\", \"threads\": $threads, \"backend\": \"$backend\", \"merge\": \"$merge\", \"docs\": $docs, \"duration_s\": $duration}"

failed=0
for component in $components; do
  body="$tmp/$component.json"
  python3 - "$component" "$docs" >"$body" <<'PY'
import json, sys
data = json.load(open("bench/rerank-100x100.json"))
print(json.dumps({"model": sys.argv[1], "query": data["query"],
                  "documents": data["passages"][: int(sys.argv[2])], "top_n": 3}))
PY
  # Warm-up (loads and compiles the component, fills the pool); must succeed.
  curl -sf -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary @"$body" "$base/v1/rerank" || { echo "warm-up of $component failed" >&2; cat "$tmp/log" >&2; exit 1; }
  for c in $clients; do
    if [ "$tool" = oha ]; then
      oha -z "${duration}s" -c "$c" --no-tui --output-format json -m POST \
        -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -D "$body" \
        "$base/v1/rerank" >"$tmp/result.json"
      line=$(python3 - "$tmp/result.json" "$component" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(r.get("errorDistribution", {}).values())
p = r["latencyPercentiles"]
print(json.dumps({"component": sys.argv[2], "clients": int(sys.argv[3]), "requests": ok + errors,
                  "rps": round(r["summary"]["requestsPerSec"], 1),
                  "p50_ms": round(p["p50"] * 1e3, 2), "p99_ms": round(p["p99"] * 1e3, 2), "errors": errors}))
PY
)
    else
      cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
local f = io.open("$body", "r"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"component": "$component", "clients": $c, "requests": %d, "rps": %.1f, "p50_ms": %.2f, "p99_ms": %.2f, "errors": %d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA
      t=$(( c < 2 ? c : 2 ))
      line=$(wrk -t "$t" -c "$c" -d "${duration}s" --timeout 60s --latency -s "$tmp/post.lua" "$base/v1/rerank" | tail -n1)
    fi
    echo "$line"
    case "$line" in *'"errors": 0}'*) ;; *) failed=1 ;; esac
  done
done
# The server's own view: failures by kind must be absent.
curl -sf -H "Authorization: Bearer $key" "$base/metrics" | grep -E '^nboost_rerank_failures_total' >&2 && failed=1
exit $failed
