#!/usr/bin/env bash
# Throughput benchmark, one run, same machine: 1 query x 100 passages of
# ~100 tokens (bench/rerank-100x100.json), all-MiniLM-L6-v2, end to end
# (tokenization included), THREADS threads (default 2).
#
#   native  : Python tokenizers + ONNX Runtime, no sandbox (bench/native_ort.py)
#   nboost  : the minilm WebAssembly component (tokenizer in wasm) with the
#             graph on the host through wasi-nn, for each back-end
#
# Prints one JSON line per system, then each nboost back-end's ratio to
# native ONNX Runtime. Run through `./just bench` (sets library paths).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
iters=${ITERS:-7}
nboost=${NBOOST:-target/release/nboost}
out=target/bench
mkdir -p $out

.venv/bin/python bench/native_ort.py --threads "$threads" --iters "$iters" | tail -n1 | tee $out/native.json
for backend in ort tract openvino; do
  "$nboost" --backend $backend --threads "$threads" bench -c minilm --iters "$iters" | tee $out/$backend.json
done
# Cold start: a new process, the cached compiled component, the graph loaded
# from scratch, one query x one passage answered; median of 5 runs.
.venv/bin/python - "$nboost" "$out" <<'PY'
import json, statistics, subprocess, sys, time, pathlib
nboost, out = sys.argv[1], pathlib.Path(sys.argv[2])
for b in ["ort", "tract", "openvino"]:
    for comp in ["minilm", "lexical"] if b == "ort" else ["minilm"]:
        walls = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([nboost, "--backend", b, "rerank", "-c", comp, "-q", "how do wings make lift",
                            "--passage", "Lift comes from the pressure difference over the wing."],
                           check=True, capture_output=True)
            walls.append((time.perf_counter() - t) * 1e3)
        (out / f"cold-{b}-{comp}.json").write_text(json.dumps({"median_ms": statistics.median(walls)}))
PY
.venv/bin/python - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
native = json.loads((out / "native.json").read_text())["passages_per_s"]
print(f"native ONNX Runtime: {native:.1f} passages/s")
for b in ["ort", "tract", "openvino"]:
    r = json.loads((out / f"{b}.json").read_text())
    cold = json.loads((out / f"cold-{b}-minilm.json").read_text())["median_ms"]
    print(f"nboost {b:9s}: {r['passages_per_s']:.1f} passages/s = {r['passages_per_s']/native:.3f} x native; "
          f"cold start to first answer (new process, 1 passage) {cold:.0f} ms")
cold = json.loads((out / "cold-ort-lexical.json").read_text())["median_ms"]
print(f"nboost lexical  : cold start to first answer (new process, 1 passage) {cold:.0f} ms")
PY
