"""The optimization recipes and where each one makes sense."""

from __future__ import annotations

from typing import Literal, get_args

Recipe = Literal[
    "none",
    "quantize-int8-dynamic",
    "quantize-int8-static",
    "fp16",
    "prune",
    "distill",
    "tensorrt",
]
RECIPES: tuple[str, ...] = get_args(Recipe)
GPU_ONLY_RECIPES: frozenset[str] = frozenset({"fp16", "tensorrt"})


def parse_recipe_chain(text: str) -> list[str]:
    """`prune,quantize-int8-dynamic` -> ['prune', 'quantize-int8-dynamic']; raises ValueError on an unknown step."""
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe {', '.join(map(repr, unknown))}; known recipes: {', '.join(RECIPES)}")
    if not steps:
        raise ValueError("empty recipe; use 'none' to deploy the model as it is")
    return steps
