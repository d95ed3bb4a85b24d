#!/usr/bin/env bash
# Does merging concurrent computes (`--merge-computes off|on`) raise a server's
# throughput? One run, same machine: bench/serve.sh without and with it, for
# each component in COMPONENTS (default "cross-encoder minilm"), requests of
# DOCS passages (default 1: the case where a back-end call's fixed cost
# dominates), CLIENTS concurrent clients (default "1 8 32"), BACKEND (default
# ort), THREADS inference threads (default 2: one call uses both cores, so a
# merged batch has them all).
#
#   NBOOST=target/release/nboost bash bench/merging.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPONENTS=${COMPONENTS:-"cross-encoder minilm"} DOCS=${DOCS:-1} CLIENTS=${CLIENTS:-"1 8 32"}
export BACKEND=${BACKEND:-ort} THREADS=${THREADS:-2} DURATION=${DURATION:-10}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for merge in off on; do
  MERGE=$merge bash bench/serve.sh
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
