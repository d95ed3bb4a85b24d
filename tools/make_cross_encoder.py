"""Generate a tiny random-weight BERT cross-encoder ONNX graph plus reference logits.

Why: the cross-encoder code path (pair tokenization, token_type_ids, a
[batch, 1] logits output) needs a model small enough for fast tests, with
expected outputs that do not come from the runtime under test. The weights are
random (fixed seed), so the scores mean nothing; what matters is that every
implementation computes the same numbers.

The graph is built by `bert_onnx.py` (same layout as the real encoder) with a
pooler ([CLS] token -> Dense -> Tanh) and a one-logit classifier. The
vocabulary is BERT's (30522), so the all-MiniLM-L6-v2 tokenizer.json is reused.

reference.json holds, per query, the pair encodings ([CLS] q [SEP] p [SEP];
token_type_ids 0 for the query segment, 1 for the passage segment; truncation
longest_first to 256 tokens; made with the `tokenizers` package) and the
logits of an independent float64 numpy forward pass. The script then runs the
ONNX graph in ONNX Runtime on padded batches and fails unless it agrees with
numpy within 1e-4.

Usage:
    python tools/make_cross_encoder.py --out models/tiny-cross-encoder [--tokenizer PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Encoding

from bert_onnx import INPUT_NAMES, OPSET, BertConfig, bert_cross_encoder, sha256_file
from import_model import default_src
from text_pipeline import MAX_TOKENS, batch_inputs, load_tokenizer

SEED = 20240611
CONFIG = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)
MAX_DIFF = 1e-4

_LONG = ("Cross-encoders read the query and the passage together, so every passage token can "
         "attend to every query token; this makes them slower than bi-encoders but usually "
         "more accurate when reranking a short list of candidates. ")
QUERIES = [
    ("how do airplanes stay in the air", [
        "Lift is generated when air flows over the wing; the pressure difference between the "
        "upper and lower surfaces pushes the aircraft upward.",
        "The recipe calls for two cups of flour, one egg and a pinch of salt.",
        "Birds fly by flapping their wings.",
        "",
    ]),
    ("symptoms of vitamin B12 deficiency", [
        "Vitamin B12 deficiency can cause fatigue, pale skin, numbness and memory problems.",
        "Iron-rich foods include spinach, lentils and red meat.",
        _LONG * 8,  # > 256 tokens with the query: exercises longest_first truncation
    ]),
    ("Café naïve résumé — Zürich", [
        "Zürich is the largest city in Switzerland.",
        "東京は日本の首都です。🙂",
        "A résumé lists a person's education and work experience.",
        "!!! ??? ... ;;; (([[{{}}]]))",
        "iPhone 15 Pro Max costs $1,199.99 in the USA.",
    ]),
    ("what is a cross-encoder", [
        _LONG,
        "A bi-encoder embeds the query and each passage separately and compares the vectors.",
        "The tokenizer splits unknown words into word pieces such as ##ing.",
    ]),
]


def random_weights(cfg: BertConfig, seed: int) -> dict[str, np.ndarray]:
    """Hugging Face-named float32 weights; scales keep activations O(1) so scores differ."""
    rng = np.random.default_rng(seed)
    h, f = cfg.hidden_size, cfg.intermediate_size
    weights: dict[str, np.ndarray] = {}

    def embedding(name: str, rows: int) -> None:
        weights[name] = rng.normal(0.0, 0.5, (rows, h))

    def linear(prefix: str, n_out: int, n_in: int) -> None:
        weights[f"{prefix}.weight"] = rng.normal(0.0, 1.0 / math.sqrt(n_in), (n_out, n_in))
        weights[f"{prefix}.bias"] = rng.normal(0.0, 0.1, n_out)

    def layer_norm(prefix: str) -> None:
        weights[f"{prefix}.weight"] = 1.0 + rng.normal(0.0, 0.1, h)
        weights[f"{prefix}.bias"] = rng.normal(0.0, 0.1, h)

    embedding("embeddings.word_embeddings.weight", cfg.vocab_size)
    embedding("embeddings.position_embeddings.weight", cfg.max_position_embeddings)
    embedding("embeddings.token_type_embeddings.weight", cfg.type_vocab_size)
    layer_norm("embeddings.LayerNorm")
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            linear(f"{p}.attention.self.{name}", h, h)
        linear(f"{p}.attention.output.dense", h, h)
        layer_norm(f"{p}.attention.output.LayerNorm")
        linear(f"{p}.intermediate.dense", f, h)
        linear(f"{p}.output.dense", h, f)
        layer_norm(f"{p}.output.LayerNorm")
    linear("pooler.dense", h, h)
    linear("classifier", 1, h)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def numpy_logit(w: dict[str, np.ndarray], cfg: BertConfig, enc: Encoding) -> float:
    """Independent float64 forward pass of one unpadded pair (no ONNX involved)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    erf = np.vectorize(math.erf)

    def dense(x, prefix):
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        normalized = (x - mean) / np.sqrt(var + cfg.layer_norm_eps)
        return normalized * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]

    def split_heads(x):  # [s, hidden] -> [heads, s, head_dim]
        return x.reshape(len(x), cfg.num_attention_heads, cfg.head_dim).transpose(1, 0, 2)

    n = len(enc.ids)
    x = (w["embeddings.word_embeddings.weight"][enc.ids]
         + w["embeddings.token_type_embeddings.weight"][enc.type_ids]
         + w["embeddings.position_embeddings.weight"][:n])
    x = layer_norm(x, "embeddings.LayerNorm")
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}"
        q, k, v = (split_heads(dense(x, f"{p}.attention.self.{name}"))
                   for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(cfg.head_dim)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, cfg.hidden_size)
        x = layer_norm(dense(ctx, f"{p}.attention.output.dense") + x,
                       f"{p}.attention.output.LayerNorm")
        hidden = dense(x, f"{p}.intermediate.dense")
        hidden = hidden * 0.5 * (1.0 + erf(hidden / math.sqrt(2.0)))
        x = layer_norm(dense(hidden, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    pooled = np.tanh(dense(x[0], "pooler.dense"))
    return float(dense(pooled, "classifier")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer.json to reuse (default: the installed all-MiniLM-L6-v2's)")
    args = parser.parse_args()
    tokenizer_src = args.tokenizer or default_src() / "tokenizer.json"

    weights = random_weights(CONFIG, SEED)
    model = bert_cross_encoder(weights, CONFIG, name="tiny-cross-encoder")
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out / "model.onnx")
    shutil.copyfile(tokenizer_src, args.out / "tokenizer.json")
    config = {**CONFIG.to_hf(), "architectures": ["BertForSequenceClassification"], "num_labels": 1}
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    tokenizer = load_tokenizer(args.out / "tokenizer.json")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(args.out / "model.onnx"), options,
                                providers=["CPUExecutionProvider"])
    entries, max_diff = [], 0.0
    for query, passages in QUERIES:
        encodings = tokenizer.encode_batch([(query, p) for p in passages])
        expected = np.array([numpy_logit(weights, CONFIG, e) for e in encodings])
        got = sess.run(["logits"], batch_inputs(encodings))[0][:, 0]
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
        entries.append({
            "query": query,
            "passages": passages,
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "logits": [round(x, 6) for x in expected.tolist()],
            "ranking": [int(i) for i in np.argsort(-expected, kind="stable")],
        })
        print(f"{query[:40]!r:44} lengths {[len(e.ids) for e in encodings]} "
              f"logits {np.round(expected, 4).tolist()}")

    reference = {
        "model": "tiny-cross-encoder (random weights; scores are meaningless but exact)",
        "seed": SEED,
        "pipeline": {
            "tokenizer": "tokenizer.json with truncation longest_first to "
                         f"{MAX_TOKENS} tokens and padding disabled",
            "pair_encoding": "[CLS] query [SEP] passage [SEP]; token_type_ids 0 for "
                             "[CLS] query [SEP], 1 for passage [SEP]",
            "score": "logits[:, 0]",
        },
        "logits_from": "float64 numpy forward pass of each unpadded pair (rounded to 1e-6)",
        "queries": entries,
    }
    (args.out / "reference.json").write_text(
        json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    manifest = {
        "model": "tiny-cross-encoder",
        "source": {"generator": "tools/make_cross_encoder.py", "seed": SEED},
        "files": {name: sha256_file(args.out / name)
                  for name in ("model.onnx", "tokenizer.json", "config.json", "reference.json")},
        "graph": {
            "opset": OPSET,
            "inputs": {name: "int64 [batch, sequence]" for name in INPUT_NAMES},
            "outputs": {"logits": "float32 [batch, 1]"},
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    ok = max_diff <= MAX_DIFF
    print(f"onnxruntime (padded batches) vs numpy: max |diff| {max_diff:.2e} "
          f"(limit {MAX_DIFF:g}) {'ok' if ok else 'FAIL'}")
    print(f"wrote {args.out}: model.onnx ({(args.out / 'model.onnx').stat().st_size} bytes), "
          "tokenizer.json, config.json, reference.json, manifest.json")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
