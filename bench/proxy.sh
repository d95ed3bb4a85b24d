#!/usr/bin/env bash
# `nboost proxy` in front of a real OpenSearch 2.19 node: NDCG@10 / MRR@10
# of OpenSearch BM25, the model alone and the fused default on every
# collection in ../shared/data, and the proxy's added latency per search at
# topn 50 (lexical and minilm). Run through `./just bench-proxy`.
#   PORT (default 9270): the node's port; NBOOST: the binary; BACKEND (ort).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-9270}
nboost=${NBOOST:-target/release/nboost}
backend=${BACKEND:-ort}
dir=target/bench/opensearch-$port
out=target/bench
mkdir -p $out
node=$(bash ../shared/opensearch/run.sh start "$port" "$dir")
cleanup() { kill "${proxy_pid:-}" 2>/dev/null || true; bash ../shared/opensearch/run.sh stop "$dir" || true; }
trap cleanup EXIT
for c in cacm cisi cranfield medline; do
  .venv/bin/python tests/proxy/index.py "$node" ../shared/data/$c $c
done
"$nboost" --backend "$backend" --threads 2 --deadline-ms 600000 proxy --upstream "$node" -c minilm \
  --allow-components lexical --listen 127.0.0.1:0 --rerank-timeout-ms 600000 > $out/proxy.addr 2> $out/proxy.log &
proxy_pid=$!
for _ in $(seq 1 100); do grep -q listening $out/proxy.addr 2>/dev/null && break; sleep 0.2; done
proxy=$(sed -n 's/^listening on //p' $out/proxy.addr)
.venv/bin/python bench/proxy_eval.py --node "$node" --proxy "$proxy" --json $out/proxy.json "$@"
