"""Typed configs: frozen dataclasses built strictly from YAML/JSON values, plus overrides.

Every clipforge command (model, train, eval, embed, index, dedup, serve) is described by one
such config, and they share these rules: an unknown key, a value of the wrong type or a
non-positive size fails with an error naming the key (and listing the known ones), because a
silently ignored typo trains, builds or serves something other than what was asked for.

A config is loaded in three layers, later ones winning: a YAML recipe, then command-line
values, then ``key=value`` overrides whose dotted keys walk nested sections
(``optim.lr=1e-3``, ``data.options.size=24``) and whose values are parsed as YAML.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

_SCALARS = (int, float, str, bool)


class ConfigError(ValueError):
    """A config has an unknown key or a bad value; the message names the key."""


# Each rule: whether a value keeps it, and what the error says of a value that breaks it.
# Booleans are not integers here (``true`` for a count is a mistake, not 1).
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "non_negative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "not in [0, 1)"),
    "share": (lambda v: 0 <= v <= 1, "not in [0, 1]"),
    "integer": (lambda v: type(v) is int, "must be an integer"),
    "at_least_one": (lambda v: v >= 1, "must be >= 1"),
    "count": (lambda v: type(v) is int and v >= 1, "must be an integer >= 1"),
    "index": (lambda v: type(v) is int and v >= 0, "must be an integer >= 0"),
    "count_or_none": (
        lambda v: v is None or (type(v) is int and v >= 1),
        "must be a positive integer or None",
    ),
}


def check(
    rule: str | tuple[str, ...], where: str = "", error: type[Exception] = ValueError, **values: Any
) -> None:
    """Raise ``error`` naming the first of ``values`` that breaks ``rule``: a name in
    :data:`RULES`, or the tuple of the allowed choices. Under ``where`` (a config section
    ``"optim."``, an owner ``"EvalLoader: "``) the message reads ``optim.lr=0 must be > 0``;
    without, as for a function's argument, ``lr must be > 0, got 0``."""
    holds, says = RULES[rule] if isinstance(rule, str) else (rule.__contains__, "")
    says = says or f"must be one of {', '.join(rule)}"
    for name, value in values.items():
        if not holds(value):
            raise error(
                f"{where}{name}={value!r} {says}" if where else f"{name} {says}, got {value!r}"
            )


def field_types(cls: type) -> dict[str, Any]:
    """The init fields of dataclass ``cls`` with their resolved annotations."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """``(dotted key, annotation, field)`` of every value of ``cls``, its sections walked."""
    hints, leaves = field_types(cls), []
    for spec in (spec for spec in dataclasses.fields(cls) if spec.init):
        section = section_type(hints[spec.name])
        if section is None:
            leaves.append((prefix + spec.name, hints[spec.name], spec))
        else:
            leaves += leaf_fields(section, f"{prefix}{spec.name}.")
    return leaves


def value_types(annotation: Any) -> list[Any]:
    """The types a field holds besides None: ``[X]`` for ``X`` and ``X | None``."""
    if not _is_union(annotation):
        return [annotation]
    return [arg for arg in typing.get_args(annotation) if arg is not type(None)]


def section_type(annotation: Any) -> type | None:
    """The dataclass a field holds (``Section`` or ``Section | None``), or None for a leaf."""
    options = value_types(annotation)
    return options[0] if len(options) == 1 and dataclasses.is_dataclass(options[0]) else None


def build_dataclass(
    cls: type, data: Mapping[str, Any], where: str = "", error: type[Exception] = ConfigError
) -> Any:
    """``cls(**data)`` after rejecting unknown keys and coercing each value to its field type.

    Mappings given for dataclass-typed fields are built the same way, recursively; ``where``
    is the dotted path of ``data`` in the whole config ("" at the top) and prefixes messages.
    """
    if not isinstance(data, Mapping):
        raise error(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise error(f"{_at(where)}unknown key(s) {unknown}; known keys are {sorted(types_)}")
    values = {name: coerce(value, types_[name], _join(where, name), error)
              for name, value in data.items()}  # fmt: skip
    try:
        return cls(**values)
    except TypeError as err:  # e.g. a required field missing
        raise error(f"{_at(where)}{err}") from None


def coerce(value: Any, annotation: Any, where: str, error: type[Exception] = ConfigError) -> Any:
    """``value`` as ``annotation`` (scalars, ``X | None``, tuples, dicts, nested dataclasses).

    A tuple may come as a comma list (``"1,2,4"``, as a command-line flag gives it), each item
    read as YAML; a float may come as a string because YAML 1.1 reads ``2e-3`` as one.
    """
    if annotation is Any:
        return value
    if _is_union(annotation):
        options = value_types(annotation)
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        if len(options) == 1:
            return coerce(value, options[0], where, error)
        for option in options:
            try:
                return coerce(value, option, where, error)
            except error:
                continue
        raise error(f"{where}={value!r} has the wrong type; expected {_name(annotation)}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return build_dataclass(annotation, value, where, error)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        items = _items(value, where, error)
        return tuple(coerce(item, args[0], where, error) for item in items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise error(f"{where}={value!r} has the wrong type; expected a mapping")
        return {key: coerce(item, args[1], _join(where, str(key)), error)
                for key, item in value.items()}  # fmt: skip
    if annotation is float and isinstance(value, str | int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return float(value)
    # Booleans are not numbers here (``true`` for a count is a mistake, not 1).
    scalar = annotation in _SCALARS and isinstance(value, annotation)
    if scalar and (annotation is bool) == isinstance(value, bool):
        return value
    raise error(f"{where}={value!r} has the wrong type; expected {_name(annotation)}")


def to_plain(value: Any) -> Any:
    """A config (or any value in one) as plain YAML/JSON data: dicts, lists, scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return value


def flatten(tree: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by ``sep`` (``{"run.steps": 10}``)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, sep, f"{prefix}{key}{sep}"))
        else:
            flat[prefix + key] = value
    return flat


def read_recipe(path: str | Path, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The mapping a YAML (or JSON) recipe file holds."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"config {str(path)!r} does not exist") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"{path}: cannot parse, not valid YAML ({where}{problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top, got {type(data).__name__}")
    return data


def set_path(data: dict[str, Any], cls: type, key: str, value: Any, error: type[Exception]) -> None:
    """Set dotted ``key`` of ``data`` (the mapping form of a ``cls``) to ``value``.

    Each part of ``key`` must name a field of the section it is in; a missing section is
    created. Errors name the key and list the keys known at the point where it went wrong.
    """
    parts = key.split(".")
    node, owner = data, cls
    for depth, name in enumerate(parts):
        types_ = field_types(owner)
        if name not in types_:
            raise error(_unknown(parts[: depth + 1], owner, cls))
        section = section_type(types_[name])
        if depth == len(parts) - 1:
            if section is not None and not isinstance(value, Mapping | type(None)):
                raise error(f"{key!r} is a section; set one of its keys ({_known(section)})")
            node[name] = value
            return
        if section is None:
            raise error(f"{'.'.join(parts[: depth + 1])!r} is a value, not a section")
        node[name] = dict(to_plain(node.get(name) or {}))
        node, owner = node[name], section


def apply_overrides(
    data: dict[str, Any], cls: type, overrides: Iterable[str], error: type[Exception]
) -> None:
    """Apply ``key=value`` strings to ``data`` in order; values are read as YAML (``1e-3``,
    ``true``, ``[1, 2]``), except that a text field keeps the text as written."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise error(f"override {item!r}: expected key=value")
        value = yaml.safe_load(raw) if raw.strip() else ""
        if value is not None and not isinstance(value, str) and _takes_text(cls, key.strip()):
            value = raw.strip()
        try:
            set_path(data, cls, key.strip(), value, error)
        except error as err:
            raise error(f"override {item!r}: {err}") from None


class TypedConfig:
    """Base of a command's top-level config dataclass: loading, overrides and printing.

    Subclasses are frozen dataclasses; ``error`` is the exception their checks raise.
    """

    error: ClassVar[type[Exception]] = ConfigError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> Any:
        """Build from plain data; errors start with ``source`` (a file name, "overrides")."""
        try:
            return build_dataclass(cls, data, "", cls.error)
        except cls.error as err:
            raise cls.error(f"{source}: {err}") from None

    @classmethod
    def load(
        cls,
        recipe: str | Path | None = None,
        overrides: Iterable[str] = (),
        *,
        values: Mapping[str, Any] | None = None,
    ) -> Any:
        """Recipe file (optional), then ``values`` (dotted keys, e.g. from command-line flags),
        then ``key=value`` overrides; the result is checked once, as a whole."""
        data = read_recipe(recipe, cls.error) if recipe is not None else {}
        for key, value in (values or {}).items():
            set_path(data, cls, key, value, cls.error)
        overrides = list(overrides)
        apply_overrides(data, cls, overrides, cls.error)
        source = "overrides" if overrides else str(recipe or "config")
        return cls.from_dict(data, source=source)

    def with_overrides(self, overrides: Iterable[str]) -> Any:
        """A copy with ``key=value`` overrides applied (see :func:`apply_overrides`)."""
        data = self.to_dict()
        apply_overrides(data, type(self), overrides, self.error)
        return self.from_dict(data, source="overrides")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) that :meth:`from_dict` reads back to an equal config."""
        return to_plain(self)

    def to_yaml(self) -> str:
        """The config as a YAML recipe, fields in declaration order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _items(value: Any, where: str, error: type[Exception]) -> list[Any]:
    if isinstance(value, str):
        return [yaml.safe_load(part) for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        raise error(f"{where}={value!r} has the wrong type; expected a list or a comma list")
    return [value]  # one item, as `--set fewshot.shots=4` gives it


def _takes_text(cls: type, key: str) -> bool:
    """Whether dotted ``key`` of ``cls`` is a text field (False when it names no field)."""
    annotation = {leaf: annotation for leaf, annotation, _ in leaf_fields(cls)}.get(key)
    return str in value_types(annotation)


def _unknown(parts: list[str], owner: type, root: type) -> str:
    """'unknown key', with the known keys, or the sections holding a key of that name."""
    key = ".".join(parts)
    holders = [path for path, _, _ in leaf_fields(root) if path.endswith(f".{parts[-1]}")]
    if len(parts) == 1 and holders:
        return f"unknown key {key!r}; expected section.key=value, such as {', '.join(holders)}"
    return f"unknown key {key!r}; known keys are {_known(owner)}"


def _known(cls: type) -> str:
    return ", ".join(sorted(field_types(cls)))


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def option(
    default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None, **kw: Any
) -> Any:
    """A config field with its command-line help (and, rarely, a flag name other than its
    own, e.g. ``--method`` for ``methods``); ``kw`` goes to :func:`dataclasses.field`."""
    metadata = {"help": help} | ({"flag": flag} if flag else {})
    return dataclasses.field(default=default, metadata=metadata, **kw)
