"""Build BERT ONNX graphs from Hugging Face-named numpy weights, without torch.

Why this exists: nboost needs ONNX graphs of BERT-style rerankers, but torch is
not available (and not wanted) in this project. This module writes the graph
node by node with `onnx.helper`, in the layout that `torch.onnx.export`
(opset 17) produces for transformers' `BertModel`, because that is the layout
ONNX Runtime's optimisers know how to fuse: at session level the bias + erf
GELU chain becomes BiasGelu and the score scaling folds into FusedMatMul; the
offline `onnxruntime.transformers` optimiser also fuses EmbedLayerNormalization,
Attention and SkipLayerNormalization (check_model.py verifies both).

Shared by `import_model.py` (the real all-MiniLM-L6-v2 encoder) and
`make_cross_encoder.py` (a tiny random-weight cross-encoder for tests).

Weights use the Hugging Face names without a model prefix
(`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`,
`pooler.dense.weight`, `classifier.weight`, ...). Linear weights are stored
[out, in] as in torch; the graph's MatMul needs [in, out], so they are
transposed here.

The serialised model is deterministic: same weights in, same bytes out.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR version 8 is what torch.onnx.export writes for opset 17; this onnx
# package's newer default would needlessly shut out older runtimes.
IR_VERSION = 8
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Added to the attention scores of padding positions. -10000 (what BERT was
# trained with) rather than float32's minimum: it survives a cast to float16
# (OpenVINO GPU/NPU inference precision), where the minimum would become -inf
# and 0 * -inf = NaN for the unmasked positions.
MASK_FILL = -10000.0


@dataclass(frozen=True)
class BertConfig:
    """The subset of a Hugging Face `BertConfig` that the graph depends on."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_hf(cls, config: dict) -> BertConfig:
        """Read a Hugging Face config.json dict (BERT, absolute positions, GELU)."""
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only exact GELU is supported, got {config['hidden_act']!r}")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        return cls(**{k: config[k] for k in cls.__dataclass_fields__ if k in config})

    def to_hf(self) -> dict:
        """A Hugging Face-style config.json dict for this configuration."""
        return {"model_type": "bert", "hidden_act": "gelu",
                "position_embedding_type": "absolute", **asdict(self)}

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        return self.hidden_size // self.num_attention_heads


class _Graph:
    """Accumulates nodes and initializers; names follow torch's `/scope/Op` style."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def _add_initializer(self, name: str, array: np.ndarray) -> str:
        if name in self._names:
            raise ValueError(f"duplicate initializer {name}")
        self._names.add(name)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def const(self, name: str, value, dtype=np.float32) -> str:
        """A small constant (scalar or shape) as an initializer."""
        return self._add_initializer(name, np.asarray(value, dtype=dtype))

    def param(self, key: str, transpose: bool = False) -> str:
        """A model weight by its Hugging Face name, float32, optionally as [in, out]."""
        array = np.asarray(self.weights[key], dtype=np.float32)
        if transpose:
            return self._add_initializer(key + ".T", array.T)
        return self._add_initializer(key, array)

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        """Append one single-output node; returns its output name."""
        output = f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output

    def linear(self, x: str, prefix: str, scope: str) -> str:
        """torch.nn.Linear as MatMul (weight [in, out]) + Add (bias)."""
        weight = self.param(f"{prefix}.weight", transpose=True)
        y = self.op("MatMul", [x, weight], f"{scope}/MatMul")
        return self.op("Add", [y, self.param(f"{prefix}.bias")], f"{scope}/Add")

    def layer_norm(self, x: str, prefix: str, scope: str, eps: float) -> str:
        """LayerNormalization over the last axis (an opset 17 op)."""
        return self.op("LayerNormalization",
                       [x, self.param(f"{prefix}.weight"), self.param(f"{prefix}.bias")],
                       f"{scope}/LayerNormalization", axis=-1, epsilon=eps)


def _embeddings(g: _Graph, cfg: BertConfig) -> str:
    """word + token-type + position embeddings, then LayerNorm."""
    s = "/embeddings"
    words = g.op("Gather", [g.param("embeddings.word_embeddings.weight"), "input_ids"],
                 f"{s}/word_embeddings/Gather")
    types = g.op("Gather", [g.param("embeddings.token_type_embeddings.weight"), "token_type_ids"],
                 f"{s}/token_type_embeddings/Gather")
    summed = g.op("Add", [words, types], f"{s}/Add")
    # position_ids = arange(max_positions)[None, :seq_len], as torch slices its buffer.
    shape = g.op("Shape", ["input_ids"], f"{s}/Shape")
    seq_len = g.op("Gather", [shape, g.const(f"{s}/seq_axis", 1, np.int64)], f"{s}/Gather", axis=0)
    seq_end = g.op("Unsqueeze", [seq_len, g.const(f"{s}/unsqueeze_axes", [0], np.int64)],
                   f"{s}/Unsqueeze")
    all_positions = g.const("embeddings.position_ids",
                            np.arange(cfg.max_position_embeddings)[None, :], np.int64)
    position_ids = g.op("Slice", [all_positions, g.const(f"{s}/slice_starts", [0], np.int64),
                                  seq_end, g.const(f"{s}/slice_axes", [1], np.int64)],
                        f"{s}/Slice")
    positions = g.op("Gather", [g.param("embeddings.position_embeddings.weight"), position_ids],
                     f"{s}/position_embeddings/Gather")
    summed = g.op("Add", [summed, positions], f"{s}/Add_1")
    return g.layer_norm(summed, "embeddings.LayerNorm", f"{s}/LayerNorm", cfg.layer_norm_eps)


def _extended_mask(g: _Graph) -> str:
    """(1 - mask[:, None, None, :]) * MASK_FILL, shared by every layer."""
    s = "/extended_mask"
    m = g.op("Unsqueeze", ["attention_mask", g.const(f"{s}/axes_1", [1], np.int64)],
             f"{s}/Unsqueeze")
    m = g.op("Unsqueeze", [m, g.const(f"{s}/axes_2", [2], np.int64)], f"{s}/Unsqueeze_1")
    m = g.op("Cast", [m], f"{s}/Cast", to=TensorProto.FLOAT)
    m = g.op("Sub", [g.const(f"{s}/one", 1.0), m], f"{s}/Sub")
    return g.op("Mul", [m, g.const(f"{s}/fill", MASK_FILL)], f"{s}/Mul")


def _layer(g: _Graph, cfg: BertConfig, i: int, x: str, mask: str, heads_shape: str,
           hidden_shape: str) -> str:
    """One post-LN transformer layer: self-attention, then the GELU feed-forward."""
    p, s = f"encoder.layer.{i}", f"/encoder/layer.{i}"

    def heads(name: str, perm: list[int]) -> str:
        proj = g.linear(x, f"{p}.attention.self.{name}", f"{s}/attention/self/{name}")
        r = g.op("Reshape", [proj, heads_shape], f"{s}/attention/self/{name}/Reshape")
        return g.op("Transpose", [r], f"{s}/attention/self/{name}/Transpose", perm=perm)

    q = heads("query", [0, 2, 1, 3])  # [b, h, s, d]
    k = heads("key", [0, 2, 3, 1])    # [b, h, d, s]
    v = heads("value", [0, 2, 1, 3])  # [b, h, s, d]
    a = f"{s}/attention/self"
    scores = g.op("MatMul", [q, k], f"{a}/MatMul")
    scores = g.op("Div", [scores, g.const(f"{a}/scale", math.sqrt(cfg.head_dim))], f"{a}/Div")
    scores = g.op("Add", [scores, mask], f"{a}/Add")
    probs = g.op("Softmax", [scores], f"{a}/Softmax", axis=-1)
    ctx = g.op("MatMul", [probs, v], f"{a}/MatMul_1")
    ctx = g.op("Transpose", [ctx], f"{a}/Transpose", perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, hidden_shape], f"{a}/Reshape")

    attn = g.linear(ctx, f"{p}.attention.output.dense", f"{s}/attention/output/dense")
    attn = g.op("Add", [attn, x], f"{s}/attention/output/Add")
    attn = g.layer_norm(attn, f"{p}.attention.output.LayerNorm", f"{s}/attention/output/LayerNorm",
                        cfg.layer_norm_eps)

    # Exact GELU as torch exports it: x * 0.5 * (1 + erf(x / sqrt(2))).
    f = f"{s}/intermediate"
    h = g.linear(attn, f"{p}.intermediate.dense", f"{f}/dense")
    e = g.op("Div", [h, g.const(f"{f}/sqrt2", math.sqrt(2.0))], f"{f}/act/Div")
    e = g.op("Erf", [e], f"{f}/act/Erf")
    e = g.op("Add", [e, g.const(f"{f}/one", 1.0)], f"{f}/act/Add")
    e = g.op("Mul", [h, e], f"{f}/act/Mul")
    e = g.op("Mul", [e, g.const(f"{f}/half", 0.5)], f"{f}/act/Mul_1")

    out = g.linear(e, f"{p}.output.dense", f"{s}/output/dense")
    out = g.op("Add", [out, attn], f"{s}/output/Add")
    return g.layer_norm(out, f"{p}.output.LayerNorm", f"{s}/output/LayerNorm", cfg.layer_norm_eps)


def _encoder(g: _Graph, cfg: BertConfig) -> str:
    """Embeddings and all layers; returns the last hidden state [b, s, hidden]."""
    x = _embeddings(g, cfg)
    mask = _extended_mask(g)
    heads_shape = g.const("/encoder/heads_shape", [0, 0, cfg.num_attention_heads, cfg.head_dim],
                          np.int64)
    hidden_shape = g.const("/encoder/hidden_shape", [0, 0, cfg.hidden_size], np.int64)
    for i in range(cfg.num_hidden_layers):
        x = _layer(g, cfg, i, x, mask, heads_shape, hidden_shape)
    return x


def _model(g: _Graph, name: str, result: str, output: str, output_dims: list) -> onnx.ModelProto:
    """Wrap the nodes into a checked opset-17 model whose graph output `output` is `result`."""
    last = g.nodes[-1]
    if last.output[0] != result:
        raise ValueError("the graph output must come from the last node")
    last.output[0] = output
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in INPUT_NAMES]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_dims)]
    graph = helper.make_graph(g.nodes, name, inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nboost-tools", producer_version="1")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def bert_encoder(weights: dict[str, np.ndarray], cfg: BertConfig, name: str) -> onnx.ModelProto:
    """BertModel without pooler: output `last_hidden_state` [batch, sequence, hidden]."""
    g = _Graph(weights)
    hidden = _encoder(g, cfg)
    return _model(g, name, hidden, "last_hidden_state", ["batch", "sequence", cfg.hidden_size])


def bert_cross_encoder(weights: dict[str, np.ndarray], cfg: BertConfig,
                       name: str) -> onnx.ModelProto:
    """BertForSequenceClassification with one label: output `logits` [batch, 1].

    Pooler: first ([CLS]) token -> Dense -> Tanh; classifier: Dense to 1 logit.
    """
    g = _Graph(weights)
    hidden = _encoder(g, cfg)
    cls = g.op("Gather", [hidden, g.const("/pooler/first_token", 0, np.int64)], "/pooler/Gather",
               axis=1)
    pooled = g.op("Tanh", [g.linear(cls, "pooler.dense", "/pooler/dense")], "/pooler/Tanh")
    logits = g.linear(pooled, "classifier", "/classifier")
    return _model(g, name, logits, "logits", ["batch", 1])


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
