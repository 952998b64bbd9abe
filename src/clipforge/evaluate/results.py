"""The result document every evaluation writes (one JSON object per run, its schema in
docs/evaluation.md), and reading one back with its schema checked.

Numbers that are not finite (an empty reliability bin's accuracy) are written as ``null``, so
every file is strict JSON that any reader parses.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from ..version import __version__
from .config import TASKS, EvalConfig
from .tasks.common import TaskOutput

SCHEMA_VERSION = 1
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "task": str,
    "dataset": str,
    "model": dict,
    "metrics": dict,
    "config": dict,
    "clipforge_version": str,
    "created": str,
}


def build_result(
    config: EvalConfig, output: TaskOutput, model: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """The document of one run, JSON-ready."""
    return jsonable(
        {
            "schema_version": SCHEMA_VERSION,
            "task": config.task,
            "dataset": config.dataset,
            "model": model,
            "metrics": output.metrics,
            "details": output.details,
            "data": output.data,
            "config": config.to_dict(),
            "clipforge_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "time": round(seconds, 3),
        }
    )


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, numpy scalars and arrays as Python values, and
    non-finite floats as None; anything else that JSON cannot hold is an error."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot write a {type(value).__name__} into a result: {value!r:.80}")


def write_result(document: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``document`` as indented strict JSON, atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """A result written by :func:`write_result`; every problem is a ``ValueError`` (or
    ``FileNotFoundError``) that names the file."""
    path = Path(path)
    where = f"result file {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{where} is not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{where} holds a {type(document).__name__}, not an object")
    for key, kind in REQUIRED.items():
        if key not in document:
            raise ValueError(f"{where} lacks the key {key!r}")
        if not isinstance(document[key], kind):
            raise ValueError(f"{where}: {key!r} is a {type(document[key]).__name__}")
    if document["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{where} has schema_version {document['schema_version']}; "
            f"this clipforge reads {SCHEMA_VERSION}"
        )
    if document["task"] not in TASKS:
        raise ValueError(f"{where}: unknown task {document['task']!r} (known: {', '.join(TASKS)})")
    return document
