"""The jinja2 environment for everything InferOps renders (Kubernetes objects and config.pbtxt).

Templates live in the repository's templates/ folder; INFEROPS_TEMPLATES points elsewhere
(the operator image copies them next to the package).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import jinja2


def templates_dir() -> Path:
    override = os.environ.get("INFEROPS_TEMPLATES")
    if override:
        return Path(override)
    for candidate in (Path(__file__).resolve().parents[2] / "templates", Path(__file__).resolve().parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("InferOps templates not found; set INFEROPS_TEMPLATES to the templates/ folder")


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # tojson keeps every interpolated value a JSON scalar or object, which YAML reads back
    # unchanged: quotes, newlines and template syntax in a value cannot alter the document.
    env.filters["tojson"] = lambda value: json.dumps(value, sort_keys=True, ensure_ascii=True)
    env.filters["pbtxt_string"] = lambda value: json.dumps(str(value), ensure_ascii=True)
    return env


def render(template_name: str, **context: object) -> str:
    return environment().get_template(template_name).render(**context)
