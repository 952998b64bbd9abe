"""Command-line commands generated from config dataclasses.

A command's options are a mechanical view of its config (:class:`~.typed_config.TypedConfig`):
each leaf field is a flag named after it (``batch_size`` -> ``--batch-size``; a name a
shallower field already took gets its section path, ``--data-options-seed``), typed after it
(booleans are ``--x/--no-x``, tuples comma lists such as ``--shots 1,2,4``) and helped by its
``option(help=...)``. Every command also takes ``--config FILE`` (a YAML recipe), ``--set
key=value`` for any field, and ``--print-config``, which prints the effective config as YAML
and exits without running. Flags win over the recipe, ``--set`` over both. Typer reads the
generated signature, so no flag is written by hand and none can drift from its field.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from .typed_config import leaf_fields, value_types

_OWN = ("config", "set", "print-config", "help")  # options every config command has


@dataclass(frozen=True)
class Flag:
    """One generated option: the field it sets (dotted ``key``) and how typer sees it."""

    key: str
    option: str
    annotation: Any
    help: str
    default: Any


def config_flags(cls: type, arguments: tuple[str, ...] = ()) -> list[Flag]:
    """The flags of ``cls``'s leaf fields, shallow fields first (they win the bare names);
    fields named in ``arguments`` are positional and fields of other types only reachable
    through ``--set`` and recipes."""
    leaves = sorted(leaf_fields(cls), key=lambda leaf: leaf[0].count("."))
    taken, flags = set(_OWN), []
    for key, annotation, spec in leaves:
        if key in arguments or _option_type(annotation) is None:
            continue
        name = spec.metadata.get("flag", spec.name).replace("_", "-")
        if name in taken:
            name = key.replace(".", "-").replace("_", "-")
        taken.add(name)
        flags.append(Flag(key=key, option=name, annotation=_option_type(annotation),
                          help=spec.metadata.get("help", ""), default=spec.default))  # fmt: skip
    return flags


def config_command(
    cls: Any,
    run: Callable[..., None],
    *,
    doc: str,
    arguments: tuple[str, ...] = (),
    recipe: Callable[[str], Path] | None = None,
    flags: bool = True,
    extra: tuple[inspect.Parameter, ...] = (),
    defaults: Mapping[str, Any] | None = None,
) -> Callable[..., None]:
    """A typer command that loads a ``cls`` and calls ``run(config, **extra values)``.

    ``arguments`` are fields taken as positional arguments, helped by their ``option``. The
    recipe is an optional ``--config FILE``, or with ``recipe`` a required ``CONFIG`` argument
    that ``recipe`` turns into a file (a shipped recipe name, for train).
    ``flags=False`` leaves fields to ``--set`` (a config of many sections would otherwise get
    a flag wall). ``defaults`` are the command's own defaults where they differ from the
    library's (dotted keys), applied below the recipe.
    """
    generated = config_flags(cls, arguments) if flags else []
    leaves = {key: (annotation, spec) for key, annotation, spec in leaf_fields(cls)}

    def command(**values: Any) -> None:
        given = values.pop("config")
        data = {**(defaults or {})}
        for key in [*arguments, *(flag.key for flag in generated)]:
            if values.get(_param(key)) not in (None, []):
                data[key] = values[_param(key)]
        path = None if given is None else (recipe or Path)(given)
        config = cls.load(path, values.pop("set_") or [], values=data)
        if values.pop("print_config"):
            typer.echo(config.to_yaml().rstrip("\n"))
            return
        run(config, **{p.name: values[p.name] for p in extra})

    params = [_recipe_param(required=recipe is not None)]
    params += [_argument(key, *leaves[key]) for key in arguments]
    params += [_flag_param(flag) for flag in generated] + list(extra)
    params += [
        keyword_param("set_", list[str] | None, typer.Option(
            "--set", help="Override any field, e.g. run.batch_size=64 (repeatable)."), None),
        keyword_param("print_config", bool, typer.Option(
            "--print-config", help="Print the effective config as YAML and exit."), False),
    ]  # fmt: skip
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command


def _option_type(annotation: Any) -> Any:
    """The type typer parses a field's flag as (None: the field has no flag)."""
    options = value_types(annotation)
    if len(options) != 1:
        return None
    kind = options[0]
    if typing.get_origin(kind) is tuple:
        return str  # a comma list, split by the config
    return kind if kind in (bool, int, float, str) else None


def _flag_param(flag: Flag) -> inspect.Parameter:
    decls = f"--{flag.option}/--no-{flag.option}" if flag.annotation is bool else f"--{flag.option}"
    shown = flag.default if flag.default is not dataclasses.MISSING else None
    if isinstance(shown, tuple):
        shown = ",".join(map(str, shown))
    info = typer.Option(decls, help=flag.help or f"Sets {flag.key}.",
                        show_default=False if shown is None else str(shown))  # fmt: skip
    return keyword_param(_param(flag.key), flag.annotation | None, info, None)


def _argument(key: str, annotation: Any, spec: dataclasses.Field) -> inspect.Parameter:
    tuples = any(typing.get_origin(kind) is tuple for kind in value_types(annotation))
    kind = list[str] if tuples else str
    info = typer.Argument(help=spec.metadata["help"], show_default=False, metavar=key.upper())
    return keyword_param(_param(key), kind | None, info, None)


def _recipe_param(*, required: bool) -> inspect.Parameter:
    if required:
        info = typer.Argument(
            help="YAML recipe: a file or a shipped recipe name.",
            show_default=False,
            metavar="CONFIG",
        )
        return keyword_param("config", str, info, inspect.Parameter.empty)
    info = typer.Option("--config", help="YAML recipe of this command's config.")
    return keyword_param("config", str | None, info, None)


def keyword_param(name: str, annotation: Any, info: Any, default: Any) -> inspect.Parameter:
    """A keyword-only parameter that typer reads through ``info`` (an Option or Argument)."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[annotation, info],
        default=default,
    )  # fmt: skip


def _param(key: str) -> str:
    """The Python name of the parameter that takes ``key`` (a positional argument or a flag)."""
    return "a_" + key.replace(".", "__")
