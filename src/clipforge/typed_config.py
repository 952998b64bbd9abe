"""Building frozen config dataclasses from JSON/YAML values, strictly.

Model configs and training configs share these rules: an unknown key, a value of the wrong type
or a non-positive size fails with an error naming the key, because a silently ignored typo
trains or builds something other than what was asked for. Each caller passes its own error
class so its users can catch the error of the config they wrote.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_SCALARS = {"int": int, "float": (int, float), "str": str, "bool": bool}


def check_positive(error: type[Exception], where: str, **values: float) -> None:
    """Raise ``error`` naming the first of ``values`` that is not > 0."""
    for name, value in values.items():
        if value <= 0:
            raise error(f"{where}.{name}={value!r} must be > 0")


def build_dataclass(cls: type, data: dict[str, Any], where: str, error: type[Exception]) -> Any:
    """``cls(**data)`` after rejecting unknown keys and checking each value's type.

    Values that are dicts or dataclasses pass through: nested sections are built by the caller.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise error(f"{where}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    values = {name: _coerce(value, str(fields[name].type), f"{where}.{name}", error)
              for name, value in data.items()}  # fmt: skip
    try:
        return cls(**values)
    except TypeError as err:  # e.g. a required field missing
        raise error(f"{where}: {err}") from None


def _coerce(value: Any, annotation: str, where: str, error: type[Exception]) -> Any:
    """Check a value against a field annotation (a string under ``from __future__``)."""
    if isinstance(value, dict) or dataclasses.is_dataclass(value):
        return value
    allowed = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in allowed:
        return None
    for kind in allowed:
        if kind.startswith("tuple[") and isinstance(value, list | tuple):
            element = "float" if "float" in kind else "int"
            items = [_scalar(v, element) for v in value]
            if all(item is not None for item in items):
                return tuple(items)
        converted = _scalar(value, kind)
        if converted is not None:
            return converted
    raise error(f"{where}={value!r} has the wrong type; expected {annotation}")


def _scalar(value: Any, kind: str) -> Any:
    """``value`` as ``kind``, or None when it is not one. Booleans are not numbers here, and
    a float may come as a string because YAML 1.1 reads ``2e-3`` (no dot) as one."""
    expected = _SCALARS.get(kind)
    if expected is None or (isinstance(value, bool) and kind != "bool"):
        return None
    if kind == "float" and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, expected):
        return float(value) if kind == "float" else value
    return None
