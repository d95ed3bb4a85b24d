#!/usr/bin/env bash
# Replicas over shared state (./just bench-replicas): a real PostgreSQL,
# s3s-fs and nginx on loopback (scripts/services.sh), three `nboost serve`
# replicas; bench/replicas.py measures upload propagation, 1 vs 3 replicas
# through nginx (lexical, 64 clients) and a kill -9 under load.
#   NBOOST: the binary (default target/release/nboost).
set -euo pipefail
cd "$(dirname "$0")/.."
nboost=${NBOOST:-target/release/nboost}
out=target/bench
dir=$out/replicas-$$
mkdir -p "$dir"
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
svc=scripts/services.sh
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; bash $svc stop-all "$dir" >/dev/null || true; }
trap cleanup EXIT
pg=$(bash $svc pg start "$(free)" "$dir/pg")
s3=$(bash $svc s3 start "$(free)" "$dir/s3")
export AWS_ENDPOINT_URL=$s3 AWS_ACCESS_KEY_ID=nboost-test AWS_SECRET_ACCESS_KEY=nboost-test-secret \
  AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
shared=(--database-url "$pg" --object-store "s3://nboost/bench-$$")
key=$("$nboost" tenants add bench --max-concurrent 1000 --data-dir "$dir/cli" "${shared[@]}")
addrs=()
for r in a b c; do
  port=$(free)
  "$nboost" --cache-dir "$dir/$r/cache" --threads 1 serve --listen 127.0.0.1:$port \
    --data-dir "$dir/$r/data" "${shared[@]}" > "$dir/$r.out" 2> "$dir/$r.log" &
  pids+=($!)
  addrs+=(127.0.0.1:$port)
  for _ in $(seq 1 200); do grep -q listening "$dir/$r.out" 2>/dev/null && break; sleep 0.05; done
done
nginx1=$(bash $svc nginx start "$(free)" "$dir/nginx1" "${addrs[0]}")
nginx3=$(bash $svc nginx start "$(free)" "$dir/nginx3" "${addrs[@]}")
python3 bench/replicas.py --replicas "http://${addrs[0]}" "http://${addrs[1]}" "http://${addrs[2]}" \
  --nginx1 "$nginx1" --nginx3 "$nginx3" --key "$key" --kill-pid "${pids[1]}" \
  --wasm components/target/wasm32-wasip2/release/nboost_reranker_lexical.wasm \
  --json $out/replicas.json "$@"
