"""Make the int8 all-MiniLM-L6-v2 graph from the fp32 one (ONNX Runtime dynamic quantization).

Why: on this CPU (AMD EPYC Zen 4, AVX-512 VNNI) fp32 MiniLM through ONNX
Runtime is close to the fp32 peak, so only int8 arithmetic can make the
reranker clearly faster than native fp32 ONNX Runtime. This writes
models/all-MiniLM-L6-v2-int8 next to the fp32 directory: the same inputs,
output, tokenizer and pipeline, with int8 weights.

Recipe (the default; every step is an option, see --help):
  1. fuse (`--fuse ort`): onnxruntime.transformers' offline BERT optimiser
     (model_type bert) turns each layer into Attention + BiasGelu and the
     embeddings into EmbedLayerNormalization (com.microsoft ops, so the fused
     graph, and the int8 graph made from it, run on ONNX Runtime only). The
     residual adds stay Add + LayerNormalization: ONNX Runtime's CPU kernel
     for the fused SkipLayerNormalization is slower than the pair (16 x 100
     tokens, 2 threads: ~18 ms against ~4.5 ms of a ~94 ms call; the graph
     goes from ~170 to ~205 passages/s natively), so the optimiser is told
     not to fuse them, and nboost (like bench/native_ort.py) disables ONNX
     Runtime's own SkipLayerNormFusion on the CPU. `--fuse none` quantizes
     the plain opset-17 graph instead (standard ops: DynamicQuantizeLinear +
     MatMulInteger), which tract and OpenVINO can also read.
  2. quantize (`onnxruntime.quantization.quantize_dynamic`): weights int8,
     symmetric, **per output channel**; activations uint8, asymmetric, range
     taken per call (dynamic), so there is no calibration set. Per-tensor
     weights are not good enough: the FFN-down weights of MiniLM have outlier
     rows, and per-tensor int8 on those alone drops the embedding cosine to
     the fp32 graph to 0.89 (per channel: 0.993). reduce_range (7-bit) is worse
     still and not needed on VNNI (no int16 saturation).
  3. keep named MatMul groups in fp32 (`--keep-fp32 ffn_down,...`, default
     none). Measured alone (per channel, embedding cosine to fp32 over
     passages of ../shared/data, min): qkv 0.997, attn_out 0.9999, ffn_up
     0.993, ffn_down 0.995; every group is int8 by default, since the whole
     graph's NDCG@10 stays within 0.0023 of fp32 (README "int8") and each
     fp32 group costs speed.

The output is deterministic: the same fp32 graph and options give the same
bytes (manifest.json records the sha256 and the recipe).

Usage:
    python tools/quantize_model.py [--src models/all-MiniLM-L6-v2]
        [--out models/all-MiniLM-L6-v2-int8] [--fuse ort|none] [--per-tensor]
        [--keep-fp32 GROUP,...] [--if-stale]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers import optimizer as ort_transformers_optimizer
from onnxruntime.transformers.fusion_options import FusionOptions

from bert_onnx import BertConfig, sha256_file

ROOT = Path(__file__).resolve().parents[1]
# MatMul groups of a BERT layer, by the node names bert_onnx.py writes (after
# --fuse ort the Q/K/V projections live inside the Attention node).
GROUPS = ("qkv", "attn_out", "ffn_up", "ffn_down")


def node_group(name: str) -> str | None:
    """The GROUPS name of a MatMul node name, or None."""
    if any(k in name for k in ("attention/self/query/", "attention/self/key/",
                               "attention/self/value/")):
        return "qkv"
    if "attention/output/dense/" in name:
        return "attn_out"
    if "intermediate/dense/" in name:
        return "ffn_up"
    if "/output/dense/" in name:
        return "ffn_down"
    return None


def fuse(src: Path, out: Path, cfg: BertConfig) -> None:
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # slower than Add + LayerNormalization on the CPU
    fused = ort_transformers_optimizer.optimize_model(
        str(src), model_type="bert", num_heads=cfg.num_attention_heads,
        hidden_size=cfg.hidden_size, opt_level=0, use_gpu=False, optimization_options=options)
    fused.save_model_to_file(str(out))


def up_to_date(out: Path, derived_from: dict, recipe: dict) -> bool:
    """Whether `out` holds the graph `recipe` makes from that fp32 graph, by its manifest.

    A recipe change (such as the unfused layer norms) or a new fp32 graph
    makes the int8 graph stale, and `./just model` then writes it again.
    """
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError):
        return False
    recorded = {k: v for k, v in manifest.get("quantization", {}).items() if k != "fp32_nodes"}
    return (manifest.get("derived_from") == derived_from and recorded == recipe
            and all((out / name).is_file() and sha256_file(out / name) == digest
                    for name, digest in files.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "all-MiniLM-L6-v2-int8")
    parser.add_argument("--fuse", choices=["ort", "none"], default="ort",
                        help="fuse with onnxruntime.transformers first (ORT-only ops) or not")
    parser.add_argument("--per-tensor", action="store_true",
                        help="one weight scale per tensor instead of per output channel")
    parser.add_argument("--keep-fp32", default="",
                        help=f"comma-separated MatMul groups left in fp32: {', '.join(GROUPS)}")
    parser.add_argument("--if-stale", action="store_true",
                        help="do nothing if --out already holds this recipe's graph of this "
                             "fp32 graph (by its manifest.json)")
    args = parser.parse_args()

    keep = [g for g in args.keep_fp32.split(",") if g]
    if unknown := [g for g in keep if g not in GROUPS]:
        sys.exit(f"error: unknown --keep-fp32 group(s) {unknown}; known: {', '.join(GROUPS)}")
    if args.fuse == "ort" and "qkv" in keep:
        sys.exit("error: after --fuse ort the Q/K/V projections are inside Attention nodes; "
                 "use --fuse none to keep qkv in fp32")

    op_types = ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]
    recipe = {
        "tool": f"onnxruntime {onnxruntime.__version__} quantize_dynamic",
        "fuse": args.fuse,
        "skip_layer_norm_fused": False,
        "weights": "int8 symmetric, " + ("per tensor" if args.per_tensor else
                                         "per output channel"),
        "activations": "uint8 asymmetric, dynamic (range per call)",
        "reduce_range": False,
        "op_types": op_types,
        "fp32_groups": keep,
    }
    fp32_manifest = json.loads((args.src / "manifest.json").read_text())
    derived_from = {"model.onnx": fp32_manifest["files"]["model.onnx"]}
    if args.if_stale and up_to_date(args.out, derived_from, recipe):
        print(f"{args.out}/model.onnx is up to date (same fp32 graph and recipe)")
        return

    src_model = args.src / "model.onnx"
    cfg = BertConfig.from_hf(json.loads((args.src / "config.json").read_text()))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        graph = src_model
        if args.fuse == "ort":
            graph = Path(tmp) / "fused.onnx"
            fuse(src_model, graph, cfg)
        model = onnx.load(str(graph))
        exclude = [n.name for n in model.graph.node
                   if n.op_type == "MatMul" and node_group(n.name) in keep]
        quantize_dynamic(
            str(graph), str(args.out / "model.onnx"),
            weight_type=QuantType.QInt8, per_channel=not args.per_tensor,
            reduce_range=False, op_types_to_quantize=op_types, nodes_to_exclude=exclude,
            # com.microsoft ops defeat ONNX shape inference; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    for name in ("tokenizer.json", "config.json"):
        shutil.copyfile(args.src / name, args.out / name)

    quantized = onnx.load(str(args.out / "model.onnx"), load_external_data=False)
    manifest = {
        **{k: fp32_manifest[k] for k in ("model", "source") if k in fp32_manifest},
        "derived_from": derived_from,
        "quantization": {**recipe, "fp32_nodes": len(exclude)},
        "files": {name: sha256_file(args.out / name)
                  for name in ("model.onnx", "tokenizer.json", "config.json")},
        "graph": {**fp32_manifest["graph"],
                  "opset_imports": {o.domain or "ai.onnx": o.version
                                    for o in quantized.opset_import},
                  "runs_on": "onnxruntime only (com.microsoft ops)" if args.fuse == "ort"
                             else "standard ONNX ops (DynamicQuantizeLinear, MatMulInteger)"},
        "pipeline": fp32_manifest["pipeline"],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out}/model.onnx ({(args.out / 'model.onnx').stat().st_size} bytes, "
          f"{len(quantized.graph.node)} nodes, sha256 {manifest['files']['model.onnx']})")


if __name__ == "__main__":
    main()
