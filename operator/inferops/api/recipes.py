"""The optimization recipes (described in catalogue.py) as the API types them."""

from __future__ import annotations

from typing import Literal

from .catalogue import RECIPE_CATALOGUE, RECIPE_NAMES

# Literal[tuple] spreads the names: the CRD's enum comes from the catalogue.
Recipe = Literal[RECIPE_NAMES]  # type: ignore[valid-type]
RECIPES: tuple[str, ...] = RECIPE_NAMES
GPU_ONLY_RECIPES: frozenset[str] = frozenset(r.name for r in RECIPE_CATALOGUE if r.gpu_only)
LOSSY_RECIPES: frozenset[str] = frozenset(r.name for r in RECIPE_CATALOGUE if r.lossy)


def parse_recipe_chain(text: str) -> list[str]:
    """`prune,quantize-int8-dynamic` -> ['prune', 'quantize-int8-dynamic']; raises ValueError on an unknown step."""
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe {', '.join(map(repr, unknown))}; known recipes: {', '.join(RECIPES)}")
    if not steps:
        raise ValueError("empty recipe; use 'none' to deploy the model as it is")
    return steps
