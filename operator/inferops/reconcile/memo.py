"""Memoized rendering: the same inputs render the same objects.

A model is reconciled several times on its way to Ready (its Job's and Deployment's events,
our own status write), and each reconcile rendered its Job or its serving objects again: jinja2,
a YAML read and a config.pbtxt check by protobuf, about 85% of a reconcile's CPU and, at 500
models, most of the operator's 50 CPU seconds (issue "At scale"). The renderers are pure
functions of their arguments, so the result is kept, keyed by a digest of every argument, in
a small LRU; each call gets its own copy (dicts and lists travel as JSON, which is also small
to keep), so a caller that edits what it got cannot change what the next one gets.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import threading
from typing import Any, Callable, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])


def _key_part(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return [type(value).__name__, value.model_dump(mode="json", by_alias=True)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [type(value).__name__, {f.name: _key_part(getattr(value, f.name)) for f in dataclasses.fields(value)}]
    if isinstance(value, (list, tuple)):
        return [_key_part(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _key_part(v) for k, v in value.items()}
    return value


def _digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    text = json.dumps([_key_part(args), _key_part(kwargs)], sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _freeze(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return ("json", json.dumps(value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_freeze(v) for v in value))
    return ("value", value)  # pydantic models and scalars: not edited by callers


def _thaw(frozen: Any) -> Any:
    kind, value = frozen
    if kind == "json":
        return json.loads(value)
    if kind == "tuple":
        return tuple(_thaw(v) for v in value)
    return value


def memoized(maxsize: int = 512) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        kept: collections.OrderedDict[str, Any] = collections.OrderedDict()
        lock = threading.Lock()

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = _digest(args, kwargs)
            with lock:
                frozen = kept.get(key)
                if frozen is not None:
                    kept.move_to_end(key)
            if frozen is None:
                frozen = _freeze(fn(*args, **kwargs))  # an exception is not kept
                with lock:
                    kept[key] = frozen
                    while len(kept) > maxsize:
                        kept.popitem(last=False)
            return _thaw(frozen)

        wrapper.cache_clear = kept.clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
