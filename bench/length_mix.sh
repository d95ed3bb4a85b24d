#!/usr/bin/env bash
# Issue 9 §4: does length-sorted batching pay on the collections' own
# passages (not the fixed 100-token bench)? For each collection: its first
# judged query and 100 of its documents (title + text, seed 1), reranked by
# `minilm` as shipped and with `sort-by-length = false`, one run each.
# NBOOST (default target/release/nboost), BACKEND (default ort).
set -euo pipefail
cd "$(dirname "$0")/.."
nboost=${NBOOST:-target/release/nboost}
backend=${BACKEND:-ort}
out=target/bench/length-mix
mkdir -p $out
cp nboost.toml $out/nboost.toml
cat >> $out/nboost.toml <<TOML

[components.minilm-unsorted]
path = "$PWD/components/target/wasm32-wasip2/release/nboost_reranker_minilm.wasm"
graphs = ["all-minilm-l6-v2"]
settings = { graph = "all-minilm-l6-v2", max-tokens = 256, batch-size = 16, sort-by-length = false }
setting-files = { tokenizer = "$PWD/models/all-MiniLM-L6-v2/tokenizer.json" }
TOML
sed -i "s|path = \"models/|path = \"$PWD/models/|; s|path = \"components/|path = \"$PWD/components/|; s|tokenizer = \"models/|tokenizer = \"$PWD/models/|" $out/nboost.toml
for c in cacm cisi cranfield medline; do
  .venv/bin/python - "$c" "$out/$c.json" <<'PY'
import json, random, sys
c, path = sys.argv[1], sys.argv[2]
docs = [json.loads(l) for l in open(f"../shared/data/{c}/corpus.jsonl")]
q = json.loads(open(f"../shared/data/{c}/queries.jsonl").readline())["text"]
random.Random(1).shuffle(docs)
passages = [(d.get("title", "") + ". " + d["text"]).strip(". ") for d in docs[:100]]
json.dump({"query": q, "passages": passages}, open(path, "w"))
PY
  for comp in minilm minilm-unsorted; do
    "$nboost" --manifest $out/nboost.toml --backend "$backend" --threads 2 --deadline-ms 120000 \
      bench -c $comp --input $out/$c.json --iters 5 > $out/$c-$comp.json
  done
  .venv/bin/python - "$out" "$c" <<'PY'
import json, sys
out, c = sys.argv[1], sys.argv[2]
s = json.load(open(f"{out}/{c}-minilm.json"))["passages_per_s"]
u = json.load(open(f"{out}/{c}-minilm-unsorted.json"))["passages_per_s"]
print(f"{c:10s} sorted {s:6.1f} passages/s, unsorted {u:6.1f}: sorting x{s/u:.2f}")
PY
done
