"""The jinja2 environment for everything InferOps renders (Kubernetes objects and config.pbtxt).

Templates are package data (inferops/templates/), so the wheel and every image built from it
carry them; INFEROPS_TEMPLATES points elsewhere (to try edited templates without a reinstall).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import jinja2


TEMPLATES = Path(__file__).resolve().parent / "templates"


def templates_dir() -> Path:
    override = os.environ.get("INFEROPS_TEMPLATES")
    return Path(override) if override else TEMPLATES


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
