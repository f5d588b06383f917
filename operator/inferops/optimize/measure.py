"""Size, CPU latency and the accuracy/fidelity metric of an ONNX model, measured with ONNX Runtime."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .evaldata import EvalData

LATENCY_THREADS_ENV = "INFEROPS_LATENCY_THREADS"


def session(model: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get(LATENCY_THREADS_ENV, "1"))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def latency_ms(model: Path, feeds: dict[str, np.ndarray], *, min_runs: int = 10, min_seconds: float = 1.0, max_seconds: float = 15.0) -> float:
    """Median wall time of one run, after warm-up, on one intra-op thread (steadier on shared machines)."""
    sess = session(model)
    for _ in range(3):
        sess.run(None, feeds)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - started > max_seconds and len(times) >= 3:
            break
    return float(np.median(times) * 1e3)


def predict(model: Path, inputs: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """The first output over all rows, in batches."""
    sess = session(model, threads=os.cpu_count())
    rows = len(next(iter(inputs.values())))
    outs = [sess.run(None, {k: v[i : i + batch] for k, v in inputs.items()})[0] for i in range(0, rows, batch)]
    return np.concatenate(outs).astype(np.float32)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.argmax(axis=1) == labels).mean())


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(cos.mean())


def metric(model: Path, data: EvalData, reference: np.ndarray | None) -> float:
    out = predict(model, data.inputs)
    if data.labels is not None:
        return accuracy(out, data.labels)
    assert reference is not None
    return mean_cosine(out, reference)


def size_bytes(model: Path) -> int:
    """The .onnx file and the external data files its tensors name (the weights of large models)."""
    from .external_data import total_size

    return total_size(model)
