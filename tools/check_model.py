"""Check the all-MiniLM-L6-v2 ONNX graph against the PyTorch reference and report ORT's fusions.

Why: import_model.py writes the graph by hand (no torch), so before anything
relies on it this script shows that it computes what sentence-transformers
computes, and that ONNX Runtime optimises it as it would a torch export.

Checks (any failure -> exit status 1):
  1. tokenizer.json with truncation 256 / no padding reproduces the fixture's
     input_ids and token_type_ids for every fixture sentence;
  2. for every fixture sentence (fixture ids, attention_mask = 1), the
     mean-pooled, L2-normalised embedding has cosine >= 0.9999 to the
     reference embedding;
  3. for every fixture cosine list, query/passage cosines (one padded batch
     per list, so the mask path is exercised) are within 1e-3 of the
     reference and rank the passages identically;
  4. onnxruntime.transformers' offline BERT optimiser fuses every layer
     (EmbedLayerNormalization, one Attention per layer, two
     SkipLayerNormalization per layer, one BiasGelu/Gelu per layer), and its
     fused graph passes checks 2 and 3 as well.

For an int8 graph (a model dir whose manifest.json has a "quantization"
entry, as tools/quantize_model.py writes; or --int8), checks 2-4 become:
  2'. embedding cosine to the PyTorch reference >= INT8_MIN_EMBEDDING_COSINE
      for every fixture sentence, and >= INT8_MEAN_EMBEDDING_COSINE on average;
  3'. cosine lists within INT8_MAX_SCORE_DIFF of the reference, rankings
      identical;
  4'. every MatMul the manifest does not keep in fp32 is int8 (MatMulInteger /
      QAttention), so the graph is really quantized;
and it reports the cosine of the int8 to the fp32 graph's embeddings over a
sample of the passages in ../shared/data (when present) and the speed of
both graphs. The bounds come from measurement, see INT8_MIN_EMBEDDING_COSINE.

Reported: the op types of the model ORT itself saves at ORT_ENABLE_ALL
(SessionOptions.optimized_model_filepath), and the time of one batch
(32 x 128 tokens) for the graph at ORT_ENABLE_BASIC, at ORT_ENABLE_ALL, and
for the offline-fused graph.

Usage:
    python tools/check_model.py [--model-dir models/all-MiniLM-L6-v2]
        [--fixture ../shared/fixtures/minilm_reference.json] [--threads 2]
        [--save-fused PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.transformers import optimizer as ort_transformers_optimizer

from bert_onnx import BertConfig
from text_pipeline import batch_inputs, load_tokenizer, mean_pool_normalize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURE = ROOT.parent / "shared" / "fixtures" / "minilm_reference.json"
MIN_EMBEDDING_COSINE = 0.9999
MAX_SCORE_DIFF = 1e-3
# int8 bounds (tools/quantize_model.py's default recipe: ORT-fused, dynamic,
# weights int8 per channel; ORT 1.32, AVX-512 VNNI). Measured: min cosine to
# the PyTorch reference 0.9830 (sentence "empty"), mean 0.9905 over the 12
# fixture sentences; cosine lists max |diff| 0.020, rankings identical; vs the
# fp32 graph over 286 passages of ../shared/data min 0.986, mean 0.994; and
# NDCG@10 within -0.0023 / +0.0121 of fp32 on the four collections. Per-tensor
# weights give min 0.90 (fail), reduce_range 0.69 (fail). The bounds leave
# ~0.008 of margin for other ORT/MLAS versions and kernels (MLAS without VNNI
# takes other int8 paths) and still reject those broken recipes.
INT8_MIN_EMBEDDING_COSINE = 0.975
INT8_MEAN_EMBEDDING_COSINE = 0.985
INT8_MAX_SCORE_DIFF = 0.03
INT8_OPS = ("MatMulInteger", "com.microsoft:QAttention", "com.microsoft:DynamicQuantizeMatMul",
            "com.microsoft:MatMulIntegerToFloat")
DATA_DIR = ROOT.parent / "shared" / "data"
DATA_SAMPLE_EVERY = 25  # every 25th passage of each collection's corpus.jsonl
TIMING_SHAPE = (32, 128)
TIMING_RUNS = 5
# Ops a well-optimised BERT graph should have, as report label -> op types that count.
WANTED_FUSIONS = {
    "LayerNormalization": ["LayerNormalization"],
    "SkipLayerNormalization": ["com.microsoft:SkipLayerNormalization"],
    "Attention": ["com.microsoft:Attention"],
    "GELU (BiasGelu/Gelu/FastGelu)": ["com.microsoft:BiasGelu", "com.microsoft:Gelu",
                                      "com.microsoft:FastGelu"],
    "FusedMatMul (scale folded into Q.K^T)": ["com.microsoft:FusedMatMul"],
}


class Report:
    """Collects pass/fail lines; the exit status is 1 if any check failed."""

    def __init__(self):
        self.failed = 0

    def check(self, ok: bool, line: str) -> None:
        self.failed += not ok
        print(f"  [{'ok' if ok else 'FAIL'}] {line}")


def session(path: Path, threads: int, level: ort.GraphOptimizationLevel,
            optimized_path: Path | None = None) -> ort.InferenceSession:
    """A CPU session; optionally saves ORT's optimised graph to `optimized_path`."""
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the "hardware specific optimisations" warning on save
    # As nboost on the CPU (host/src/nn/ort.rs): no fused SkipLayerNormalization.
    options.add_session_config_entry("optimization.disable_specified_optimizers",
                                     "SkipLayerNormFusion")
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(sess: ort.InferenceSession, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Sentence embeddings [b, d] for one batch of model inputs."""
    hidden = sess.run(["last_hidden_state"], feed)[0]
    return mean_pool_normalize(hidden, feed["attention_mask"])


def check_tokenizer(tokenizer, fixture: dict, report: Report) -> None:
    sentences = fixture["sentences"]
    mismatched = [s["name"] for s in sentences
                  if (e := tokenizer.encode(s["text"])).ids != s["input_ids"]
                  or e.type_ids != s["token_type_ids"]]
    report.check(not mismatched, f"tokenizer ids equal the fixture for "
                 f"{len(sentences) - len(mismatched)}/{len(sentences)} sentences"
                 + (f" (mismatch: {', '.join(mismatched)})" if mismatched else ""))


def check_outputs(sess: ort.InferenceSession, tokenizer, fixture: dict, report: Report,
                  min_cosine: float = MIN_EMBEDDING_COSINE, max_score_diff: float = MAX_SCORE_DIFF,
                  mean_cosine: float | None = None) -> None:
    """Checks 2 and 3 for one session (2' and 3' with the int8 bounds)."""
    cosines = {}
    for s in fixture["sentences"]:
        ids = np.array([s["input_ids"]], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.array([s["token_type_ids"]], dtype=np.int64)}
        reference = np.asarray(s["embedding"], dtype=np.float64)
        cosines[s["name"]] = float(embed(sess, feed)[0] @ reference / np.linalg.norm(reference))
    worst = min(cosines, key=cosines.get)
    report.check(cosines[worst] >= min_cosine,
                 f"embedding cosine to reference: min {cosines[worst]:.8f} ({worst}), "
                 f"max {max(cosines.values()):.8f}, over {len(cosines)} sentences "
                 f"(limit {min_cosine:g})")
    if mean_cosine is not None:
        mean = float(np.mean(list(cosines.values())))
        report.check(mean >= mean_cosine, f"embedding cosine to reference: mean {mean:.6f} "
                     f"(limit {mean_cosine:g})")

    max_diff, rankings_ok = 0.0, True
    for entry in fixture["cosine_lists"]:
        texts = [entry["query"], *entry["passages"]]
        emb = embed(sess, batch_inputs(tokenizer.encode_batch(texts)))
        scores = emb[1:] @ emb[0]
        max_diff = max(max_diff, float(np.abs(scores - np.asarray(entry["cosine"])).max()))
        ranking = [int(i) for i in np.argsort(-scores, kind="stable")]
        rankings_ok &= ranking == entry["ranking"]
    n = len(fixture["cosine_lists"])
    report.check(max_diff <= max_score_diff, f"cosine lists: max |score - reference| "
                 f"{max_diff:.2e} over {n} lists (limit {max_score_diff:g})")
    report.check(rankings_ok, f"cosine lists: rankings identical to the reference ({n} lists)")


def op_types(model_path: Path) -> Counter:
    """Counter of `domain:op_type` (domain omitted for the default ONNX domain)."""
    model = onnx.load(str(model_path), load_external_data=False)
    return Counter(f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in model.graph.node)


def format_ops(ops: Counter) -> str:
    return ", ".join(f"{op} x{count}" for op, count in sorted(ops.items()))


def fuse_offline(model_path: Path, cfg: BertConfig, out_path: Path, report: Report) -> None:
    """Run onnxruntime.transformers' BERT optimiser; check that every layer fused."""
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # producer-name notice
    fused = ort_transformers_optimizer.optimize_model(
        str(model_path), model_type="bert", num_heads=cfg.num_attention_heads,
        hidden_size=cfg.hidden_size, opt_level=0, use_gpu=False)
    fused.save_model_to_file(str(out_path))
    ops = op_types(out_path)
    print(f"  onnxruntime.transformers optimiser output: {format_ops(ops)}")
    layers = cfg.num_hidden_layers
    expected = {"com.microsoft:EmbedLayerNormalization": 1, "com.microsoft:Attention": layers,
                "com.microsoft:SkipLayerNormalization": 2 * layers}
    gelu = ops["com.microsoft:BiasGelu"] + ops["com.microsoft:Gelu"] + ops["com.microsoft:FastGelu"]
    ok = all(ops[op] == n for op, n in expected.items()) and gelu == layers
    report.check(ok, "offline optimiser fused every layer (EmbedLayerNormalization x1, "
                     f"Attention x{layers}, SkipLayerNormalization x{2 * layers}, "
                     f"BiasGelu/Gelu x{layers})")


def time_batch(sess: ort.InferenceSession) -> float:
    """Median milliseconds of one run on a fixed random batch of TIMING_SHAPE tokens."""
    ids = np.random.default_rng(0).integers(1000, 30000, TIMING_SHAPE, dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}
    sess.run(None, feed)
    times = []
    for _ in range(TIMING_RUNS):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def data_sample(data_dir: Path) -> list[str]:
    """Every DATA_SAMPLE_EVERY-th passage (title + text) of each collection under data_dir."""
    texts = []
    for corpus in sorted(data_dir.glob("*/corpus.jsonl")):
        with corpus.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i % DATA_SAMPLE_EVERY == 0:
                    doc = json.loads(line)
                    texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
    return texts


def embed_texts(sess: ort.InferenceSession, tokenizer, texts: list[str]) -> np.ndarray:
    return np.concatenate([embed(sess, batch_inputs(tokenizer.encode_batch(texts[i:i + 16])))
                           for i in range(0, len(texts), 16)])


def check_int8(model_dir: Path, fp32_dir: Path, fixture: dict, threads: int,
               data_dir: Path, report: Report) -> None:
    """Checks 1, 2', 3', 4' for an int8 graph; reports int8 vs fp32 on data and speed."""
    model_path = model_dir / "model.onnx"
    manifest_path = model_dir / "manifest.json"
    recipe = (json.loads(manifest_path.read_text()).get("quantization", {})
              if manifest_path.exists() else {})
    tokenizer = load_tokenizer(model_dir / "tokenizer.json")
    print(f"{model_path} (int8; ORT {ort.__version__}, ORT_ENABLE_ALL, {threads} threads)")
    if recipe:
        print(f"  recipe: {json.dumps(recipe)}")
    check_tokenizer(tokenizer, fixture, report)
    int8 = session(model_path, threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    check_outputs(int8, tokenizer, fixture, report, min_cosine=INT8_MIN_EMBEDDING_COSINE,
                  max_score_diff=INT8_MAX_SCORE_DIFF, mean_cosine=INT8_MEAN_EMBEDDING_COSINE)

    ops = op_types(model_path)
    print(f"  op types: {format_ops(ops)}")
    quantized = sum(ops[op] for op in INT8_OPS)
    float_matmuls = ops["MatMul"] + ops["com.microsoft:Attention"]
    kept = int(recipe.get("fp32_nodes", 0))
    # Attention (QK^T, AV) products have no constant operand and stay fp32 inside
    # (Q)Attention or as MatMul in an unfused graph: 2 per layer are allowed there.
    cfg = BertConfig.from_hf(json.loads((model_dir / "config.json").read_text()))
    allowed_float = kept + (0 if ops["com.microsoft:QAttention"] else 2 * cfg.num_hidden_layers)
    report.check(quantized > 0 and float_matmuls <= allowed_float,
                 f"weights are int8: {quantized} int8 matmul ops, {float_matmuls} fp32 "
                 f"MatMul/Attention (allowed {allowed_float}: {kept} kept in fp32 by the recipe)")

    fp32_path = fp32_dir / "model.onnx"
    if not fp32_path.exists():
        print(f"  ({fp32_path} missing: no int8-vs-fp32 comparison)")
        return
    fp32 = session(fp32_path, threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    texts = data_sample(data_dir)
    if texts:
        cos = (embed_texts(int8, tokenizer, texts) * embed_texts(fp32, tokenizer, texts)).sum(1)
        print(f"  int8 vs fp32 embeddings over {len(texts)} passages of {data_dir}: "
              f"min cosine {cos.min():.4f}, mean {cos.mean():.4f}")
    print(f"speed, one batch of {TIMING_SHAPE[0]} x {TIMING_SHAPE[1]} tokens, "
          f"median of {TIMING_RUNS} ({threads} threads):")
    t32, t8 = time_batch(fp32), time_batch(int8)
    print(f"  {'fp32 graph':38s} {t32:8.1f} ms\n  {'int8 graph':38s} {t8:8.1f} ms "
          f"({t32 / t8:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    parser.add_argument("--save-fused", type=Path, default=None,
                        help="also keep the onnxruntime.transformers-fused graph here "
                             "(uses com.microsoft ops: ONNX Runtime only)")
    parser.add_argument("--int8", action="store_true",
                        help="check an int8 graph (implied when the model dir's manifest.json "
                             "has a quantization entry)")
    parser.add_argument("--fp32-dir", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2",
                        help="the fp32 model dir the int8 graph is compared with")
    parser.add_argument("--data", type=Path, default=DATA_DIR,
                        help="collections whose passages sample the int8-vs-fp32 comparison")
    args = parser.parse_args()

    fixture = json.loads(args.fixture.read_text())
    manifest_path = args.model_dir / "manifest.json"
    if args.int8 or (manifest_path.exists()
                     and "quantization" in json.loads(manifest_path.read_text())):
        report = Report()
        check_int8(args.model_dir, args.fp32_dir, fixture, args.threads, args.data, report)
        print("all checks passed" if not report.failed else f"{report.failed} check(s) FAILED")
        sys.exit(1 if report.failed else 0)
    model_path = args.model_dir / "model.onnx"
    cfg = BertConfig.from_hf(json.loads((args.model_dir / "config.json").read_text()))
    tokenizer = load_tokenizer(args.model_dir / "tokenizer.json")
    report = Report()

    with tempfile.TemporaryDirectory() as tmp:
        ort_optimized = Path(tmp) / "ort_enable_all.onnx"
        fused_path = args.save_fused or Path(tmp) / "fused.onnx"

        print(f"{model_path} (ORT {ort.__version__}, ORT_ENABLE_ALL, {args.threads} threads)")
        check_tokenizer(tokenizer, fixture, report)
        exported = session(model_path, args.threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                           ort_optimized)
        check_outputs(exported, tokenizer, fixture, report)

        print("ORT session-level fusion (ORT_ENABLE_ALL, optimized_model_filepath):")
        ops = op_types(ort_optimized)
        print(f"  op types: {format_ops(ops)}")
        found = {label: sum(ops[op] for op in group) for label, group in WANTED_FUSIONS.items()}
        print(f"  present: {', '.join(f'{k} x{n}' for k, n in found.items() if n) or 'none'}; "
              f"absent: {', '.join(k for k, n in found.items() if not n) or 'none'}")
        print("  (ORT fuses SkipLayerNormalization at session level only when every dim but "
              "batch is static, and its session-level AttentionFusion does not match the "
              "opset-13+ mask subgraph; the offline optimiser below does both)")

        print("ORT offline fusion (onnxruntime.transformers.optimizer, model_type=bert):")
        fuse_offline(model_path, cfg, fused_path, report)
        fused = session(fused_path, args.threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        check_outputs(fused, tokenizer, fixture, report)

        print(f"speed, one batch of {TIMING_SHAPE[0]} x {TIMING_SHAPE[1]} tokens, "
              f"median of {TIMING_RUNS} ({args.threads} threads):")
        basic = session(model_path, args.threads, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        for label, sess in (("graph, ORT_ENABLE_BASIC", basic), ("graph, ORT_ENABLE_ALL", exported),
                            ("offline-fused graph, ORT_ENABLE_ALL", fused)):
            print(f"  {label:38s} {time_batch(sess):8.1f} ms")

    print("all checks passed" if not report.failed else f"{report.failed} check(s) FAILED")
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
