#!/usr/bin/env bash
# Throughput benchmark, one run, same machine: 1 query x 100 passages of
# ~100 tokens (bench/rerank-100x100.json), all-MiniLM-L6-v2, end to end
# (tokenization included), THREADS threads (default 2).
#
#   native fp32 : Python tokenizers + ONNX Runtime, no sandbox (bench/native_ort.py),
#                 the fp32 graph: the baseline every ratio is taken against
#   native int8 : the same, the int8 graph (models/all-MiniLM-L6-v2-int8)
#   nboost      : the minilm WebAssembly component (tokenizer in wasm) with the
#                 graph on the host through wasi-nn, for each back-end, as
#                 `minilm` (fp32 graph) and `minilm-int8` (int8 graph)
#
# A back-end that cannot run a graph (the int8 graph uses ONNX Runtime's
# com.microsoft ops) is reported with its error instead of a figure.
# Prints one JSON line per system and round, then each one's ratio to native
# fp32 ONNX Runtime: the median over ROUNDS (default 3) rounds of its ratio to
# that round's own native run. Run through
# `./just bench` (sets library paths, builds release);
# NBOOST=path/to/nboost bash bench/run.sh runs an existing binary.
# BACKENDS (default "ort tract openvino") and COMPONENTS (default
# "minilm minilm-int8") narrow the run.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
iters=${ITERS:-7}
rounds=${ROUNDS:-3}
nboost=${NBOOST:-target/release/nboost}
backends=${BACKENDS:-ort tract openvino}
components=${COMPONENTS:-minilm minilm-int8}
int8_dir=models/all-MiniLM-L6-v2-int8
out=target/bench
# A benchmark, not a latency test: on a busy 2-core machine a 100-passage call
# can pass the host's default 10 s deadline.
export NBOOST_DEADLINE_MS=${NBOOST_DEADLINE_MS:-120000}
mkdir -p $out
rm -f $out/*.json

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# ROUNDS rounds, each measuring every system once, native fp32 first: on a
# shared 2-core machine the speed of the whole machine drifts by 10-20 %
# over minutes, so each round's ratios are taken against that round's own
# baseline and the report gives their median (and range) over the rounds.
systems=()
for backend in $backends; do
  for comp in $components; do systems+=("$backend:$comp"); done
done
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds"
  .venv/bin/python bench/native_ort.py --threads "$threads" --iters "$iters" --label native-fp32 \
    | tail -n1 | tee $out/r$round-native-fp32.json
  if [ -f $int8_dir/model.onnx ]; then
    .venv/bin/python bench/native_ort.py --threads "$threads" --iters "$iters" --label native-int8 \
      --model $int8_dir/model.onnx | tail -n1 | tee $out/r$round-native-int8.json
  fi
  for sys in "${systems[@]}"; do
    backend=${sys%%:*} comp=${sys#*:}
    # A system that failed once (a graph its back-end cannot run) is not retried.
    if grep -q '"error"' $out/$backend-$comp.json 2>/dev/null; then continue; fi
    if "$nboost" --backend $backend --threads "$threads" bench -c $comp --iters "$iters" \
        > $out/r$round-$backend-$comp.json 2> $out/$backend-$comp.err; then
      cp $out/r$round-$backend-$comp.json $out/$backend-$comp.json
    else
      .venv/bin/python -c 'import json,sys; print(json.dumps({"backend": sys.argv[1], "component": sys.argv[2], "error": open(sys.argv[3]).read().strip()}))' \
        $backend $comp $out/$backend-$comp.err > $out/$backend-$comp.json
    fi
    cat $out/$backend-$comp.json
  done
done
# Cold start: a new process, the cached compiled component, the graph loaded
# from scratch, one query x one passage answered; median of 5 runs.
.venv/bin/python - "$nboost" "$out" "$backends" "$components" <<'PY'
import json, statistics, subprocess, sys, time, pathlib
nboost, out, backends, components = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
for b in backends:
    for comp in components + (["lexical"] if b == "ort" else []):
        if "error" in json.loads((out / f"{b}-{comp}.json").read_text() if comp != "lexical" else "{}"):
            continue
        walls = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([nboost, "--backend", b, "rerank", "-c", comp, "-q", "how do wings make lift",
                            "--passage", "Lift comes from the pressure difference over the wing."],
                           check=True, capture_output=True)
            walls.append((time.perf_counter() - t) * 1e3)
        (out / f"cold-{b}-{comp}.json").write_text(json.dumps({"median_ms": statistics.median(walls)}))
PY
.venv/bin/python - "$out" "$backends" "$components" "$rounds" <<'PY'
import json, os, statistics, sys, pathlib
out, backends, components = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
rounds = range(1, int(sys.argv[4]) + 1)
def pps(name, r):
    f = out / f"r{r}-{name}.json"
    return json.loads(f.read_text())["passages_per_s"] if f.exists() else None
base = {r: pps("native-fp32", r) for r in rounds}
def line(label, name, extra=""):
    per = [(pps(name, r), base[r]) for r in rounds if pps(name, r) is not None]
    speeds = [p for p, _ in per]
    ratios = [p / b for p, b in per]
    print(f"{label}: {statistics.median(speeds):.1f} passages/s = {statistics.median(ratios):.3f} x native fp32 "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f}){extra}")
print(f"native ONNX Runtime fp32: {statistics.median(base.values()):.1f} passages/s (rounds: "
      f"{', '.join(f'{b:.1f}' for b in base.values())}) = 1.000 x native fp32")
if (out / "r1-native-int8.json").exists():
    line("native ONNX Runtime int8", "native-int8")
for b in backends:
    for comp in components:
        r = json.loads((out / f"{b}-{comp}.json").read_text())
        name = f"nboost {b:8s} {comp:11s}"
        if "error" in r:
            lines = [l.strip() for l in r["error"].splitlines() if l.strip()] or ["?"]
            pick = [l for l in lines if "No conversion rule" in l] + [l for l in lines if l.startswith("error:")]
            print(f"{name}: {(pick or lines)[0]}")
            continue
        cold = json.loads((out / f"cold-{b}-{comp}.json").read_text())["median_ms"]
        line(name, f"{b}-{comp}", f"; cold start to first answer (new process, 1 passage) {cold:.0f} ms")
if (out / "cold-ort-lexical.json").exists():
    cold = json.loads((out / "cold-ort-lexical.json").read_text())["median_ms"]
    print(f"nboost lexical: cold start to first answer (new process, 1 passage) {cold:.0f} ms")
print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores: above ~2.5 the figures are noisy)")
PY
