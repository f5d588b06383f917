"""Fixtures for the tests that run the real tritonserver from the nvidia-pytriton wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inferops.api.tensors import BatchingConfig
from inferops.triton.config import build_model_config
from inferops.triton.sample_model import SIGNATURE, mlp_to_onnx, train_digits_mlp

MODEL = "digits"


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory) -> Path:
    """A digits MLP trained with scikit-learn, written as ONNX (trained once per session)."""
    classifier, accuracy = train_digits_mlp()
    assert accuracy > 0.9, f"the sample model learned too little: {accuracy:.3f}"
    return mlp_to_onnx(classifier, tmp_path_factory.mktemp("digits") / "model.onnx")


@pytest.fixture
def make_repository(tmp_path, digits_onnx):
    """Write an onnxruntime model repository: make_repository(name, batching) -> repository path."""

    def make(batching: BatchingConfig | None, name: str = MODEL, root: Path | None = None, **config_args) -> Path:
        repository = root or tmp_path / "repository"
        version = repository / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        shutil.copy(digits_onnx, version / "model.onnx")
        (repository / name / "config.pbtxt").write_text(build_model_config(name, "onnxruntime", SIGNATURE, batching, **config_args))
        return repository

    return make


def pytest_collection_modifyitems(items):
    # Every test of this folder that starts a server is marked triton; check the wheel once.
    try:
        from inferops.triton.server import wheel_paths

        wheel_paths()
        reason = None
    except Exception as exc:  # noqa: BLE001 - reported as the skip reason
        reason = str(exc)
    if reason:
        for item in items:
            if item.get_closest_marker("triton"):
                item.add_marker(pytest.mark.skip(reason=f"tritonserver unavailable: {reason}"))
