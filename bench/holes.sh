#!/usr/bin/env bash
# Time to refusal and peak RSS of each sandbox-holes attack, one fresh
# `nboost rerank` process per attack (so the peak RSS is the attack's own),
# 300 ms deadline, 256 MiB instance budget, tract back-end.
#
#   NBOOST=target/release/nboost bash bench/holes.sh
#
# Prints one line per attack: wall seconds of the whole process (start,
# load, attack, refusal), peak RSS in MiB, exit code, and the error. The
# `none` line is the baseline (the same component, behaving).
set -euo pipefail
cd "$(dirname "$0")/.."

nboost=${NBOOST:-target/release/nboost}
hostile=components/target/wasm32-wasip2/release/nboost_hostile.wasm
graph=models/all-MiniLM-L6-v2/model.onnx
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

{
  echo "[graphs.all-minilm-l6-v2]"
  echo "path = \"$PWD/$graph\""
  for a in none sleep block poll configure-sleep; do
    printf '[components.%s]\npath = "%s"\nsettings = { attack = "%s" }\nlimits = { deadline-ms = 300, memory-mib = 256 }\n' \
      "$a" "$PWD/$hostile" "$a"
  done
  printf '[components.huge-compute]\npath = "%s"\ngraphs = ["all-minilm-l6-v2"]\nsettings = { attack = "huge-compute", graph = "all-minilm-l6-v2", rounds = 100 }\nlimits = { deadline-ms = 300, memory-mib = 256 }\n' "$PWD/$hostile"
  printf '[components.over-cap-compute]\npath = "%s"\ngraphs = ["all-minilm-l6-v2"]\nsettings = { attack = "huge-compute", graph = "all-minilm-l6-v2", batch = 512 }\nlimits = { deadline-ms = 300, memory-mib = 256 }\n' "$PWD/$hostile"
  printf '[components.tensor-flood]\npath = "%s"\nsettings = { attack = "tensor-flood", flood-mib = 100, count = 200 }\nlimits = { deadline-ms = 300, memory-mib = 512 }\n' "$PWD/$hostile"
  printf '[components.log-flood]\npath = "%s"\nsettings = { attack = "log-flood" }\nlimits = { deadline-ms = 300, memory-mib = 256 }\n' "$PWD/$hostile"
} > "$dir/nboost.toml"

# Warm the artifact cache so that compile time is not counted.
"$nboost" --manifest "$dir/nboost.toml" rerank -c none -q q --passage p >/dev/null

for a in none sleep block poll configure-sleep huge-compute over-cap-compute tensor-flood log-flood; do
  set +e
  /usr/bin/time -f "%e %M" -o "$dir/time" "$nboost" --manifest "$dir/nboost.toml" \
    rerank -c "$a" -q "wing lift" --passage "a wing" >/dev/null 2>"$dir/err"
  code=$?
  set -e
  read -r secs kib < <(tail -n1 "$dir/time")
  err=$(grep -m1 '^error' "$dir/err" || true)
  printf '%-18s %6ss %6s MiB exit %d  %s\n' "$a" "$secs" "$((kib / 1024))" "$code" "${err:0:110}"
done
