"""distill: train a smaller student on the teacher's soft labels over the training split, export ONNX.

The student is a named reduction of a dense-chain (MLP) teacher, `studentWidth` (fraction of
each hidden width, default 0.25) and `studentDepth` (number of hidden layers, default the
teacher's), or one the user supplies: `student` = URI of an ONNX dense chain with the teacher's
input and output sizes, trained from its own weights. Loss: T^2 * cross-entropy between the
student's and the teacher's softmax at `temperature` (default 4), `epochs` (default 60) of Adam.
The eval rows are never trained on: distillation needs `train_*` arrays in the eval data.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from .context import RecipeContext, RecipeError, RecipeResult, log
from .dense_chain import DenseChain, Layer, NotADenseChain, softmax
from .measure import predict


def named_student(teacher: DenseChain, width: float, depth: int, seed: int = 0) -> DenseChain:
    hidden = [max(1, round(w * width)) for w in teacher.widths[1:-1]]
    if not 1 <= depth <= max(1, len(hidden)):
        raise RecipeError(f"studentDepth {depth}: the teacher has {len(hidden)} hidden layers; choose 1..{max(1, len(hidden))}")
    hidden = hidden[:depth] if hidden else []
    widths = [teacher.widths[0], *hidden, teacher.widths[-1]]
    act = teacher.layers[0].activation or "Relu"
    rng = np.random.default_rng(seed)
    layers = [
        Layer((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32), np.zeros(b, np.float32), act if i < len(widths) - 2 else teacher.layers[-1].activation)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
    ]
    return DenseChain(layers, teacher.input_name, teacher.output_name, teacher.softmax_output, teacher.batch_dim)


def _teacher_logits(model: Path, proto: onnx.ModelProto, x: dict[str, np.ndarray]) -> tuple[np.ndarray, DenseChain | None]:
    try:
        chain = DenseChain.from_onnx(proto)
        return chain.logits(next(iter(x.values()))), chain
    except NotADenseChain:
        out = predict(model, x)
        if (out >= 0).all() and np.allclose(out.sum(axis=1), 1, atol=1e-3):
            out = np.log(out + 1e-12)  # probabilities -> logits up to a constant
        return out, None


def _user_student(uri: str, ctx: RecipeContext) -> DenseChain:
    from inferops.storage import fetch

    with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
        path = fetch(uri, Path(tmp), source=True)  # the user's, like the model
        try:
            return DenseChain.from_onnx(onnx.load(str(path)))
        except NotADenseChain as exc:
            raise RecipeError(f"the student at {uri} must be a dense chain (MLP) ONNX model: {exc}") from None


def apply(model: Path, ctx: RecipeContext) -> RecipeResult:
    data = ctx.require_data("distill", "a training split")
    if data.train_inputs is None:
        raise RecipeError("distill trains on the teacher's outputs over `train_*` rows of the eval data; the eval rows are kept for the metric")
    proto = onnx.load(str(model))
    logits, teacher = _teacher_logits(model, proto, data.train_inputs)
    if ctx.params.get("student"):
        student = _user_student(ctx.params["student"], ctx)
        how = f"user-supplied student {ctx.params['student']}"
    elif teacher is not None:
        width, depth = ctx.param("studentWidth", 0.25, float), ctx.param("studentDepth", len(teacher.layers) - 1, int)
        student = named_student(teacher, width, depth)
        how = f"student width x{width}, depth {depth}"
    else:
        raise RecipeError("named student sizes (studentWidth/studentDepth) apply to dense-chain (MLP) teachers; give parameter student=URI of an ONNX student")
    x = next(iter(data.train_inputs.values())).astype(np.float32)
    if student.widths[0] != x.shape[1] or student.widths[-1] != logits.shape[1]:
        raise RecipeError(f"student shape {student.widths} does not match the teacher's input {x.shape[1]} / output {logits.shape[1]}")
    student.input_name = next(iter(data.train_inputs))
    student.output_name = proto.graph.output[0].name
    temperature, epochs = ctx.param("temperature", 4.0, float), ctx.param("epochs", 60, int)
    log.info("distilling: %s, widths %s, %d epochs at T=%.1f on %d rows", how, student.widths, epochs, temperature, len(x))
    student.train(x, softmax(logits, temperature), epochs=epochs, lr=ctx.param("lr", 1e-3, float), temperature=temperature,
                  on_epoch=lambda e, loss: log.info("  distill epoch %d/%d loss %.4f", e + 1, epochs, loss) if (e + 1) % 10 == 0 else None)
    out = ctx.out_path("distill")
    onnx.save(student.to_onnx(), str(out))
    teacher_params = teacher.parameter_count if teacher else sum(int(np.prod(i.dims)) for i in proto.graph.initializer)
    return RecipeResult(out, [f"distilled: {how}, widths {student.widths}, parameters {teacher_params} -> {student.parameter_count} ({teacher_params / student.parameter_count:.1f}x fewer), {epochs} epochs, T={temperature}"])
