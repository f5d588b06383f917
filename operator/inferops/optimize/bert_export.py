"""Export a BERT sentence encoder (e.g. all-MiniLM-L6-v2) from safetensors to ONNX without torch.

The graph is written op by op with onnx.helper: embeddings (word + position + token type 0),
LayerNorm, N encoder layers (self-attention, GELU feed-forward, post-LayerNorm, as in BERT),
then sentence-transformers' mean pooling over the attention mask and L2 normalization.
Inputs: input_ids, attention_mask (int64 [batch, seq]); output: sentence_embedding [batch, hidden].
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTPUT = "sentence_embedding"


def is_bert_folder(path: Path) -> bool:
    config = path / "config.json"
    if not (config.is_file() and (path / "model.safetensors").is_file()):
        return False
    return json.loads(config.read_text()).get("model_type") == "bert"


def load_weights(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    return config, weights


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        self._n += 1
        out = f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def build_onnx(config: dict, w: dict[str, np.ndarray], opset: int = 17) -> onnx.ModelProto:
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT encoders with exact GELU and absolute positions are supported")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim, eps = hidden // heads, float(config.get("layer_norm_eps", 1e-12))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    g = _Graph()

    def dense(x: str, prefix: str) -> str:
        weight = g.const(f"{prefix}.weight_t", f32(w[f"{prefix}.weight"].T))  # torch Linear stores [out, in]
        return g.op("Add", [g.op("MatMul", [x, weight]), g.const(f"{prefix}.bias", f32(w[f"{prefix}.bias"]))])

    def layer_norm(x: str, prefix: str) -> str:
        return g.op("LayerNormalization", [x, g.const(f"{prefix}.weight", f32(w[f"{prefix}.weight"])), g.const(f"{prefix}.bias", f32(w[f"{prefix}.bias"]))], axis=-1, epsilon=eps)

    # embeddings: word[ids] + (position + token_type[0])[:seq]
    words = g.op("Gather", [g.const("embeddings.word_embeddings.weight", f32(w["embeddings.word_embeddings.weight"])), "input_ids"])
    pos_type = f32(w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0])
    seq = g.op("Shape", ["input_ids"], start=1, end=2)
    positions = g.op("Slice", [g.const("embeddings.position_plus_type0", pos_type), g.const("zero_1d", np.array([0], np.int64)), seq, g.const("axis0", np.array([0], np.int64))])
    x = layer_norm(g.op("Add", [words, positions]), "embeddings.LayerNorm")

    # additive attention mask [batch, 1, 1, seq]: 0 where attended, -10000 where padded (as BERT does)
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask4 = g.op("Unsqueeze", [mask_f, g.const("axes_1_2", np.array([1, 2], np.int64))])
    bias = g.op("Mul", [g.op("Sub", [g.const("one", np.array(1.0, np.float32)), mask4]), g.const("neg_10000", np.array(-10000.0, np.float32))])
    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], np.int64))
    scale = g.const("inv_sqrt_head_dim", np.array(1.0 / math.sqrt(head_dim), np.float32))
    half, inv_sqrt2 = g.const("half", np.array(0.5, np.float32)), g.const("inv_sqrt2", np.array(1 / math.sqrt(2), np.float32))
    one = "one"

    # Residual connections are written as Sum, not Add: ONNX Runtime (1.32, CPU) would fuse Add +
    # LayerNormalization into SkipLayerNormalization, which measured slower here than the two ops.
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        # Q, K and V as one [hidden, 3*hidden] MatMul: one larger GEMM (and one activation quantization) instead of three.
        qkv_w = np.concatenate([w[f"{p}.attention.self.{t}.weight"].T for t in ("query", "key", "value")], axis=1)
        qkv_b = np.concatenate([w[f"{p}.attention.self.{t}.bias"] for t in ("query", "key", "value")])
        qkv = g.op("Add", [g.op("MatMul", [x, g.const(f"{p}.attention.self.qkv.weight_t", f32(qkv_w))]), g.const(f"{p}.attention.self.qkv.bias", f32(qkv_b))])
        g._n += 1
        q, k, v = (f"qkv_split_{g._n}_{t}" for t in "qkv")
        g.nodes.append(helper.make_node("Split", [qkv, g.const(f"{p}.qkv_sizes", np.array([hidden] * 3, np.int64))], [q, k, v], axis=-1, name=f"split_{g._n}"))
        q = g.op("Transpose", [g.op("Reshape", [q, split_heads])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, split_heads])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, split_heads])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        x = layer_norm(g.op("Sum", [dense(context, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        h = dense(x, f"{p}.intermediate.dense")
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [g.op("Erf", [g.op("Mul", [h, inv_sqrt2])]), one])])
        x = layer_norm(g.op("Sum", [dense(h, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    # mean pooling over real tokens, then L2 normalization (sentence-transformers' Pooling + Normalize)
    mask3 = g.op("Unsqueeze", [mask_f, g.const("axis_2", np.array([2], np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask3]), g.const("axis_1", np.array([1], np.int64))], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [mask3, "axis_1"], keepdims=0), g.const("tiny", np.array(1e-9, np.float32))])
    pooled = g.op("Div", [summed, count])
    norm = g.op("Max", [g.op("ReduceL2", [pooled], axes=[-1], keepdims=1), g.const("eps_norm", np.array(1e-12, np.float32))])
    g.nodes.append(helper.make_node("Div", [pooled, norm], [OUTPUT], name="l2_normalize"))

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(g.nodes, "bert_sentence_encoder", inputs, [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", hidden])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="inferops.bert_export")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def export_folder(folder: Path, out: Path) -> Path:
    config, weights = load_weights(folder)
    onnx.save(build_onnx(config, weights), str(out))
    return out
