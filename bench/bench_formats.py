"""Models as people bring them: PyTorch and Keras in, int8 out; and accuracy-aware int8. One run,
ratios side by side.

    .venv/bin/python bench/bench_formats.py [--frameworks torch keras] [--skip-mixed]

Models made here: the same small CNN (two 3x3 convolutions, a pool, two dense layers) trained on
scikit-learn's digits in PyTorch (saved with torch.export as a .pt2) and in Keras (a .keras file).
Each goes through `inferops optimize` (format conversion with its fidelity check, then
quantize-int8-static behind a one-point budget). For each: the conversion (export) time, the
sizes (the framework's file, the ONNX export, the int8 model) and the CPU latency of the int8 model
(ONNX Runtime) against the framework's own CPU inference (PyTorch eager under inference_mode;
Keras as a tf.function graph, what TF Serving runs) at batch 1 and 32, every runtime on one
thread, in alternating rounds (the fastest of 5 round medians). Accuracy before and after.

Accuracy-aware int8: the digits MLP (64-512-512-10) with one outlier row in its first layer (pixel
0 is blank in every digit, so the row never changes a float output, but it sets that layer's int8
scale so high that every real weight rounds to zero: plain int8 collapses to chance). The layers
kept in float, and size and latency of the chosen model against full int8 and against FP32.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_optimize import cpu_description, digits_model  # noqa: E402

from inferops.api.tensors import TensorSpec  # noqa: E402
from inferops.optimize import measure  # noqa: E402
from inferops.optimize.sample_cnns import train_keras_cnn, train_torch_cnn  # noqa: E402
from inferops.optimize.pipeline import Options, optimize  # noqa: E402

ROUNDS = 5


def digits_split(layout: tuple[int, ...]):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, *layout)
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def torch_model(work: Path):
    """The test suite's PyTorch CNN (sample_cnns); returns (model file, eval data, the framework's predict)."""
    import torch

    torch.set_num_threads(1)
    x_train, x_test, y_train, y_test = digits_split((1, 8, 8))
    net = train_torch_cnn(x_train, y_train)
    program = torch.export.export(net, (torch.from_numpy(x_train[:4]),), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, str(work / "digits.pt2"))
    np.savez(work / "torch.npz", image=x_test, labels=y_test.astype(np.int64))

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    # The program names its input after forward's argument ("input"); the spec's signature renames it.
    inputs = [TensorSpec(name="image", datatype="FP32", dims=[1, 8, 8])]
    return work / "digits.pt2", work / "torch.npz", predict, f"PyTorch {torch.__version__} eager (inference_mode)", inputs


def keras_model(work: Path):
    """The test suite's Keras CNN (sample_cnns, NHWC); the framework's predict is a tf.function graph."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "triton" not in sys.modules:
        # TensorFlow's LLVM and OpenAI Triton's in one process abort it (Triton loaded second): torch runs without it.
        sys.modules["triton"] = None
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    x_train, x_test, y_train, y_test = digits_split((8, 8, 1))
    net = train_keras_cnn(x_train, y_train)
    net.save(work / "digits.keras")
    np.savez(work / "keras.npz", image=x_test, labels=y_test.astype(np.int64))
    graph = tf.function(lambda x: net(x, training=False), input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32)])

    def predict(x: np.ndarray) -> np.ndarray:
        return graph(tf.constant(x)).numpy()

    return work / "digits.keras", work / "keras.npz", predict, f"TensorFlow {tf.__version__} / Keras {keras.__version__} tf.function", None


def latency_ms(run, min_runs: int = 10, min_seconds: float = 1.0) -> float:
    """measure.latency_ms for any callable: median wall time of one run after warm-up."""
    for _ in range(3):
        run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def fastest_alternating(runs: dict[str, object]) -> dict[str, float]:
    """Alternating rounds, each a median; the fastest round of each (other load only adds time)."""
    best = {name: float("inf") for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            best[name] = min(best[name], latency_ms(run))
    return best


def onnx_runner(model: Path, feeds: dict):
    sess = measure.session(model)
    return lambda: sess.run(None, feeds)


def bench_framework(name: str, make, work: Path) -> dict:
    folder = work / name
    folder.mkdir()
    model, data, predict, native, inputs = make(folder)
    started = time.monotonic()
    report = optimize(Options(model_uri=f"file://{model}", recipe="quantize-int8-static", output_uri=f"file://{folder / 'out'}",
                              eval_uri=f"file://{data}", accuracy_budget=0.01, model_name="digits", inputs=inputs))
    total = time.monotonic() - started
    # The pipeline's export lives in its temporary folder: convert once more to size and time it.
    from inferops.api.tensors import Signature
    from inferops.optimize.model_io import load_model

    exported = load_model(model, folder, None, Signature(inputs=inputs or [])).onnx_path
    int8 = folder / "out" / "digits" / "1" / "model.onnx"
    x = np.load(data)["image"]
    row = {"name": name, "native": native, "export_s": report.conversion.seconds, "optimize_s": total,
           "size_framework": model.stat().st_size, "size_onnx": exported.stat().st_size, "size_int8": int8.stat().st_size,
           "acc_before": report.accuracy.before, "acc_after": report.accuracy.after, "drop": report.accuracy.drop,
           "fidelity": report.conversion.max_rel_diff, "tools": report.conversion.tool_versions}
    for batch in (1, 32):
        rows = np.ascontiguousarray(x[:batch])
        feeds = {"image": rows}
        got = fastest_alternating({"native": lambda: predict(rows), "onnx": onnx_runner(exported, feeds), "int8": onnx_runner(int8, feeds)})
        row[f"ms{batch}"] = got
    return row


def bench_mixed(work: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    folder = work / "mixed"
    folder.mkdir()
    model, data = digits_model(folder)
    m = onnx.load(str(model))
    x_test = np.load(data)["inputs"]
    assert not x_test[:, 0].any(), "pixel 0 is blank in every digit"
    first = next(i for i in m.graph.initializer if len(numpy_helper.to_array(i).shape) == 2)
    w = numpy_helper.to_array(first).copy()
    w[0, :] = np.where(np.arange(w.shape[1]) % 2, 50.0, -50.0)
    first.CopyFrom(numpy_helper.from_array(w, first.name))
    outlier = folder / "outlier.onnx"
    onnx.save(m, str(outlier))
    out = {}
    for key, params, budget in (("full", {}, 1.0), ("aware", {"accuracyAware": "true"}, 0.01)):
        report = optimize(Options(model_uri=f"file://{outlier}", recipe="quantize-int8-dynamic", output_uri=f"file://{folder / key}",
                                  eval_uri=f"file://{data}", accuracy_budget=budget, params=params, model_name="outlier"))
        out[key] = (report, folder / key / "outlier" / "1" / "model.onnx")
    paths = {"fp32": outlier, "full int8": out["full"][1], "accuracy-aware": out["aware"][1]}
    row = {"report": out["aware"][0], "full": out["full"][0], "sizes": {k: p.stat().st_size for k, p in paths.items()}}
    name = onnx.load(str(outlier)).graph.input[0].name
    for batch in (1, 32):
        feeds = {name: np.ascontiguousarray(x_test[:batch])}
        row[f"ms{batch}"] = fastest_alternating({k: onnx_runner(p, feeds) for k, p in paths.items()})
    return row


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frameworks", nargs="*", choices=["torch", "keras"], default=["torch", "keras"])
    parser.add_argument("--skip-mixed", action="store_true", help="leave out the accuracy-aware case")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    os.environ.setdefault(measure.LATENCY_THREADS_ENV, "1")
    makers = {"torch": torch_model, "keras": keras_model}
    rows, mixed = [], None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.frameworks:
            print(f"[{name}] train, convert, quantize, time", file=sys.stderr, flush=True)
            rows.append(bench_framework(name, makers[name], work))
        if not args.skip_mixed:
            print("[accuracy-aware] outlier MLP", file=sys.stderr, flush=True)
            mixed = bench_mixed(work)

    print(f"\nCPU: {cpu_description()}; every runtime on 1 thread; latency ratios are the fastest of {ROUNDS} alternating round medians")
    for r in rows:
        tools = ", ".join(f"{k} {v}" for k, v in r["tools"].items())
        print(f"\n{r['name']} digits CNN ({tools}); baseline: {r['native']}")
        print(f"  export to ONNX {r['export_s']:.2f} s (the whole optimize run {r['optimize_s']:.1f} s); export vs original max |diff| {r['fidelity']:.2g} of the output range")
        print(f"  size: framework file {r['size_framework'] / 1024:.0f} KiB, ONNX {r['size_onnx'] / 1024:.0f} KiB, int8 {r['size_int8'] / 1024:.0f} KiB "
              f"(int8/framework {r['size_int8'] / r['size_framework']:.3f}, int8/ONNX {r['size_int8'] / r['size_onnx']:.3f})")
        print(f"  accuracy: before {r['acc_before']:.4f} after {r['acc_after']:.4f} (drop {r['drop']:.4f}, budget 0.01)")
        print(f"  {'batch':>5} {'framework ms':>13} {'ONNX fp32 ms':>13} {'int8 ms':>8} {'int8/framework':>15} {'ONNX fp32/framework':>20}")
        for batch in (1, 32):
            t = r[f"ms{batch}"]
            print(f"  {batch:>5} {t['native']:>13.3f} {t['onnx']:>13.3f} {t['int8']:>8.3f} {t['int8'] / t['native']:>15.3f} {t['onnx'] / t['native']:>20.3f}")
    if mixed:
        rep, full = mixed["report"], mixed["full"]
        mp = rep.mixed_precision
        print("\naccuracy-aware int8 (quantize-int8-dynamic, accuracyAware=true) on the outlier digits MLP 64-512-512-10")
        print(f"  layers kept in float: {mp.float_layers} ({mp.int8_layers} of {mp.candidate_layers} weighted layers in int8; {len(mp.attempts)} attempts)")
        print(f"  accuracy: fp32 {rep.accuracy.before:.4f}, full int8 {full.accuracy.after:.4f}, accuracy-aware {rep.accuracy.after:.4f} (drop {rep.accuracy.drop:.4f}, budget 0.01)")
        sizes = mixed["sizes"]
        print(f"  size KiB: fp32 {sizes['fp32'] / 1024:.0f}, full int8 {sizes['full int8'] / 1024:.0f}, accuracy-aware {sizes['accuracy-aware'] / 1024:.0f} "
              f"(aware/fp32 {sizes['accuracy-aware'] / sizes['fp32']:.3f}, aware/full int8 {sizes['accuracy-aware'] / sizes['full int8']:.3f})")
        print(f"  {'batch':>5} {'fp32 ms':>8} {'full int8 ms':>13} {'aware ms':>9} {'aware/fp32':>11} {'aware/full int8':>16}")
        for batch in (1, 32):
            t = mixed[f"ms{batch}"]
            print(f"  {batch:>5} {t['fp32']:>8.3f} {t['full int8']:>13.3f} {t['accuracy-aware']:>9.3f} {t['accuracy-aware'] / t['fp32']:>11.3f} {t['accuracy-aware'] / t['full int8']:>16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
