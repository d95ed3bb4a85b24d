"""Native baseline for the rerank benchmark: all-MiniLM-L6-v2 in ONNX Runtime, no sandbox.

Why: nboost runs rerankers as WebAssembly components whose model runs through
wasi-nn. This script measures the same end-to-end work done natively
(Python `tokenizers` + ONNX Runtime CPU, the same model.onnx), so the
component's cost can be stated relative to it.

One call = tokenize the query and the passages of bench/rerank-100x100.json
(truncation 256, padding to each batch's longest), run the encoder in batches
(the query rides in the first batch), mean-pool over the mask, L2-normalise,
score each passage by cosine to the query and sort. After --warmup untimed
calls, --iters calls are timed; the median is reported.

The same script measures the int8 graph (--model
models/all-MiniLM-L6-v2-int8/model.onnx, made by tools/quantize_model.py):
ONNX Runtime reads its int8 ops natively, so the call is unchanged.

Output: the top-5 passages, then one JSON line:
    {"label": ..., "model": ..., "passages_per_s": ..., "ms_per_call": ..., "threads": 2,
     "batch": ..., ...}

Usage:
    python bench/native_ort.py [--model models/all-MiniLM-L6-v2/model.onnx]
        [--input bench/rerank-100x100.json] [--threads 2] [--batch 16] [--iters 5]
        [--label native-fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# The tokenizers crate's own thread pool, left on, competes with ONNX
# Runtime's threads for the same 2 cores: measured here, the fp32 baseline
# went from ~71 to ~84 passages/s with it off. nboost's tokenizer runs on
# the calling thread too, so this is also the like-for-like comparison.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAX_TOKENS = 256
# Batch sweep (1/4/8/16/32/64/101, 2 threads, ~100-token passages): 8 and 16
# were fastest and within noise of each other, 1 and 101 clearly slower. The
# sweep ran beside cargo builds on a 2-core machine; re-run it when idle.
DEFAULT_BATCH = 16


def load_tokenizer(path: Path) -> Tokenizer:
    """tokenizer.json with its baked-in truncation 128 / padding Fixed(128) overridden."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(MAX_TOKENS, strategy="longest_first")
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of each batch
    return tokenizer


def make_session(model: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # As nboost does on the CPU (host/src/nn/ort.rs): ORT's fused
    # SkipLayerNormalization kernel is slower than Add + LayerNormalization.
    # The fp32 graph has no such fusion either way; the int8 graph gains ~20 %.
    options.add_session_config_entry("optimization.disable_specified_optimizers",
                                     "SkipLayerNormFusion")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def rerank(session: ort.InferenceSession, tokenizer: Tokenizer, query: str, passages: list[str],
           batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine score of each passage to the query, and passage indices best first."""
    texts = [query, *passages]
    embeddings = []
    for start in range(0, len(texts), batch):
        encodings = tokenizer.encode_batch(texts[start:start + batch])
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        hidden = session.run(["last_hidden_state"], feed)[0]
        mask = feed["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
        embeddings.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    emb = np.concatenate(embeddings)
    scores = emb[1:] @ emb[0]
    return scores, np.argsort(-scores, kind="stable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path,
                        default=ROOT / "models" / "all-MiniLM-L6-v2" / "model.onnx")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer.json (default: next to --model)")
    parser.add_argument("--input", type=Path, default=ROOT / "bench" / "rerank-100x100.json")
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="texts per ORT run")
    parser.add_argument("--iters", type=int, default=5, help="timed calls")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--label", default=None, help="name of this system in the JSON line")
    args = parser.parse_args()

    bench = json.loads(args.input.read_text(encoding="utf-8"))
    query, passages = bench["query"], bench["passages"]
    tokenizer = load_tokenizer(args.tokenizer or args.model.parent / "tokenizer.json")
    session = make_session(args.model, args.threads)

    for _ in range(args.warmup):
        rerank(session, tokenizer, query, passages, args.batch)
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        scores, order = rerank(session, tokenizer, query, passages, args.batch)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))

    print(f"query: {query!r}")
    for rank, i in enumerate(order[:5], 1):
        print(f"  {rank}. #{i:<3d} {scores[i]:.4f}  {passages[i][:70]!r}")
    print(json.dumps({
        "label": args.label or f"native {args.model.parent.name}",
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "passages_per_s": round(len(passages) / median, 1),
        "ms_per_call": round(median * 1e3, 1),
        "ms_min": round(min(times) * 1e3, 1),
        "threads": args.threads,
        "batch": args.batch,
        "iters": args.iters,
        "passages": len(passages),
        "top5": [[int(i), round(float(scores[i]), 4)] for i in order[:5]],
        "onnxruntime": ort.__version__,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
