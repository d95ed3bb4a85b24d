#!/usr/bin/env bash
# Build the plugins written in Python and JavaScript into components, next
# to the Rust ones; each only when its sources are newer than its .wasm
# (componentize-py and componentize-js take ~10 s each, and a new file means
# a new digest, so a recompile in every host cache).
set -euo pipefail
cd "$(dirname "$0")/.."
out=components/target/wasm32-wasip2/release
mkdir -p "$out"

stale() { # stale OUTPUT SOURCES...: is OUTPUT missing or older than one of them?
  local o=$1; shift
  [ -f "$o" ] || return 0
  [ -n "$(find "$@" -newer "$o" -print -quit)" ]
}

py=$out/nboost_reranker_lexical_py.wasm
if stale "$py" components/py-lexical/bm25.py components/py-lexical/app.py wit; then
  (cd components/py-lexical && ../../.venv/bin/python -m unittest -q test_bm25 2>&1 | tail -n1 &&
    ../../.venv/bin/componentize-py -d ../../wit -w reranker-plugin componentize app -p . \
      --stub-wasi -o "../../$py" >/dev/null)
  echo "built $py"
fi

js=$out/nboost_reranker_minilm_js.wasm
if stale "$js" components/js-minilm/minilm.js components/js-minilm/wordpiece.js components/js-minilm/unicode.js components/js-minilm/package-lock.json wit; then
  (cd components/js-minilm &&
    { [ -d node_modules ] || npm ci --silent --no-audit --no-fund; } &&
    npm run --silent build)
  echo "built $js"
fi
