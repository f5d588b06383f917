"""tensorrt: serve through TensorRT on GPU classes.

The artifact stays ONNX; config.pbtxt gets ONNX Runtime's TensorRT execution accelerator, so
Triton's onnxruntime backend compiles the engine on the GPU node that loads the model (the
engine depends on that GPU and TensorRT version, so building it elsewhere would not carry over).
Where this program itself has a GPU with TensorRT, it also builds the engine once, to prove the
graph compiles; where it has none it says so in the report and builds nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from inferops.api.tensors import ExecutionAccelerator

from .context import RecipeContext, RecipeResult, log


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def _build_engine(model: Path, cache: Path, fp16: bool, feeds) -> float:
    import onnxruntime as ort

    options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache), "trt_fp16_enable": fp16}
    started = time.monotonic()
    sess = ort.InferenceSession(str(model), providers=[("TensorrtExecutionProvider", options), "CUDAExecutionProvider"])
    if feeds is not None:
        sess.run(None, feeds)
    return time.monotonic() - started


def apply(model: Path, ctx: RecipeContext) -> RecipeResult:
    import onnxruntime as ort

    precision = ctx.param("precision", "FP16").upper()
    accelerator = ExecutionAccelerator(
        name="tensorrt",
        parameters={"precision_mode": precision, "max_workspace_size_bytes": str(ctx.param("workspaceBytes", 1 << 30, int)), "trt_engine_cache_enable": "true", "trt_engine_cache_path": "/tmp/triton-trt-cache"},
    )
    gpu = gpu_name() if ctx.gpu else None
    if gpu and "TensorrtExecutionProvider" in ort.get_available_providers():
        log.info("building a TensorRT engine on %s to check that the graph compiles", gpu)
        feeds = ctx.data.batch(1) if ctx.data else None
        seconds = _build_engine(model, ctx.workdir / "trt-cache", precision == "FP16", feeds)
        notes = [f"TensorRT engine built on {gpu} in {seconds:.0f}s ({precision}); Triton builds its own on the serving GPU at load"]
    else:
        why = "no GPU on this machine" if not gpu else "this onnxruntime build has no TensorRT execution provider"
        log.warning("TensorRT engine NOT built: %s", why)
        notes = [f"TensorRT engine NOT built: {why}. config.pbtxt enables ONNX Runtime's TensorRT accelerator ({precision}); Triton builds the engine when the model first loads on a GPU node"]
    return RecipeResult(model, notes, accelerator=accelerator, instance_kind="KIND_GPU")
