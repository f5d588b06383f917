"""What a recipe gets (the current model, data, parameters) and what it gives back."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inferops.api.report import MixedPrecisionReport
from inferops.api.tensors import ExecutionAccelerator

from .evaldata import EvalData

log = logging.getLogger("inferops.optimize")


class RecipeError(ValueError):
    """A recipe cannot run on this model or with these inputs; the message says why and what to do."""


@dataclass
class RecipeContext:
    workdir: Path
    data: EvalData | None
    params: dict[str, str]
    gpu: bool
    step_index: int = 0
    # For recipes that search under the gate (accuracyAware): the original model's metric, the
    # budget, and its first output on the eval rows (the reference of the cosine metric).
    baseline: float | None = None
    budget: float | None = None
    reference: "np.ndarray | None" = None

    def out_path(self, recipe: str) -> Path:
        return self.workdir / f"step{self.step_index}-{recipe}.onnx"

    def param(self, name: str, default, cast=str):
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            return cast(raw) if cast is not bool else raw.strip().lower() in ("1", "true", "yes", "on")
        except ValueError:
            raise RecipeError(f"parameter {name}={raw!r} is not a valid {cast.__name__}") from None

    def require_data(self, recipe: str, what: str) -> EvalData:
        if self.data is None:
            raise RecipeError(f"{recipe} needs {what}: give --eval-data (see `inferops optimize --help` for the format)")
        return self.data


@dataclass
class RecipeResult:
    model: Path
    notes: list[str] = field(default_factory=list)
    # Rendered into config.pbtxt by the optimizer and, through the report, by the operator.
    accelerator: ExecutionAccelerator | None = None
    instance_kind: str | None = None
    mixed_precision: MixedPrecisionReport | None = None
