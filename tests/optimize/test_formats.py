"""Formats the optimizer refuses, each before the expensive work and saying why (no torch needed)."""

from __future__ import annotations

import zipfile

from inferops.optimize import model_io

from .conftest import run_optimize


def _run(tmp_path, model, *extra):
    return run_optimize("--model", f"file://{model}", "--recipe", "none", "--output", f"file://{tmp_path / 'repo'}", *extra)


def test_a_pickled_module_is_refused_because_loading_it_runs_code(tmp_path):
    # What torch.save writes: a zip whose data.pkl is a pickle (never opened here).
    with zipfile.ZipFile(tmp_path / "net.pt", "w") as z:
        z.writestr("net/data.pkl", b"\x80\x02cos\nsystem\n.")
        z.writestr("net/version", "3")
    code, report = _run(tmp_path, tmp_path / "net.pt")
    assert code == 2 and "arbitrary code" in report["notes"][-1] and "torch.export.save" in report["notes"][-1]
    code, report = _run(tmp_path, tmp_path / "net.pt", "--format", "torchscript", "--inputs", '[{"name":"x","datatype":"FP32","dims":[4]}]')
    if model_io.has_torch():
        assert code == 2 and "arbitrary code" in report["notes"][-1]


def test_a_tensorrt_plan_is_refused_before_anything_is_fetched(tmp_path):
    code, report = _run(tmp_path, tmp_path / "absent.plan", "--format", "tensorrt-plan")
    assert code == 2 and "already compiled" in report["notes"][-1]


def test_a_torch_format_without_the_torch_extra_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "has_torch", lambda: False)
    code, report = _run(tmp_path, tmp_path / "absent.pt2", "--format", "pytorch")
    assert code == 2 and "inferops[optimize,torch]" in report["notes"][-1], "refused before the (absent) file was fetched"


def test_a_format_that_contradicts_the_file_is_refused(digits, tmp_path):
    code, report = _run(tmp_path, digits.model, "--format", "pytorch")
    if model_io.has_torch():
        assert code == 2 and "looks like onnx" in report["notes"][-1]
    code, report = _run(tmp_path, digits.model, "--format", "onnx")
    assert code == 0 and report["conversion"] is None
