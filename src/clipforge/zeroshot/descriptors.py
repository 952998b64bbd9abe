"""Per-class text lists: DCLIP descriptors and CuPL prompts, read from JSON and turned into prompts.

Both files are one JSON object ``{class name: [string, ...]}``. DCLIP (Menon & Vondrick,
"Visual Classification via Description from Large Language Models", ICLR 2023) holds
*descriptors* ("a long tail", "has webbed feet"), each turned into one prompt per class; CuPL
(Pratt et al., ICCV 2023) holds whole *prompts* ("A tench is a fish with olive skin.").

DCLIP's prompt for class ``c`` and descriptor ``d``, as in the authors' release
(``sachit-menon/classify_by_description_release``, ``load.py`` and ``loading_helpers.py``):
``f"{c}, {descriptor_sentence(d)}"``: the class name, ``", "``, the rewritten descriptor and
no final period (their ``after_text`` default is ``""``). The rewrite, tested on the raw
string in this order:

1. starts with ``"a"`` (so also ``"an"``) -> ``"which is " + d``;
2. starts with ``"has"``, ``"often"``, ``"typically"``, ``"may"`` or ``"can"`` ->
   ``"which " + d``;
3. starts with ``"used"`` -> ``"which is " + d``;
4. otherwise -> ``"which has " + d``.

The tests are plain string prefixes, as in the release, so "antennae" also becomes "which is
antennae" and "canine teeth" becomes "which canine teeth"; we keep these quirks so that scores
match the published ones. Unlike the release, an empty descriptor list is an error (it
silently used one empty descriptor).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .prompt_files import read_json

DCLIP_FORMAT = "{classname}, {descriptor}"
# Rules 1 and 3 give the same rewrite, and no string matches both them and rule 2 (the first
# letters differ), so they are tested together.
_WHICH_IS = ("a", "used")
_WHICH = ("has", "often", "typically", "may", "can")


def descriptor_sentence(descriptor: str) -> str:
    """DCLIP's "which is/has" rewrite of one descriptor (rules in the module docstring)."""
    if descriptor.startswith(_WHICH_IS):
        return f"which is {descriptor}"
    if descriptor.startswith(_WHICH):
        return f"which {descriptor}"
    return f"which has {descriptor}"


def load_descriptors(path: str | os.PathLike) -> dict[str, list[str]]:
    """DCLIP descriptors ``{class name: [descriptor, ...]}`` from a JSON file."""
    return _load_class_lists(Path(path), "descriptor")


def load_class_prompts(path: str | os.PathLike) -> dict[str, list[str]]:
    """CuPL prompts ``{class name: [prompt, ...]}`` from a JSON file."""
    return _load_class_lists(Path(path), "prompt")


def lists_for_classes(
    classnames: Sequence[str], lists: Mapping[str, Sequence[str]], what: str, source: str
) -> list[list[str]]:
    """``lists[name]`` for each class name in order; a missing or empty one is an error.

    Names in ``lists`` that are not classes are ignored (a descriptor file may cover more
    classes than a dataset's subset).
    """
    missing = [name for name in classnames if name not in lists]
    if missing:
        raise ValueError(
            f"{source}: no {what}s for class {missing[0]!r}"
            + (f" (and {len(missing) - 1} more classes)" if len(missing) > 1 else "")
        )
    empty = [name for name in classnames if not lists[name]]
    if empty:
        raise ValueError(f"{source}: class {empty[0]!r} has an empty {what} list")
    return [list(lists[name]) for name in classnames]


def descriptor_prompts(
    classnames: Sequence[str],
    descriptors: Mapping[str, Sequence[str]],
    *,
    prompt_format: str = DCLIP_FORMAT,
    rewrite: bool = True,
    source: str = "descriptors",
) -> list[list[str]]:
    """One prompt per (class, descriptor): ``prompt_format.format(classname=, descriptor=)``.

    ``descriptor`` is :func:`descriptor_sentence` of the raw descriptor when ``rewrite`` (the
    DCLIP default), the raw descriptor otherwise. ``source`` names the descriptors in errors.
    """
    try:
        prompt_format.format(classname="", descriptor="")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"prompt format {prompt_format!r} may only use {{classname}} and {{descriptor}} ({err!r})"
        ) from None
    for field in ("{classname}", "{descriptor}"):
        if field not in prompt_format:
            raise ValueError(f"prompt format {prompt_format!r} lacks {field}")
    per_class = lists_for_classes(classnames, descriptors, "descriptor", source)
    return [
        [
            prompt_format.format(
                classname=name, descriptor=descriptor_sentence(item) if rewrite else item
            )
            for item in items
        ]
        for name, items in zip(classnames, per_class, strict=True)
    ]


def _load_class_lists(path: Path, what: str) -> dict[str, list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file {path}")
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty object {{class name: [{what}, ...]}}")
    out = {}
    for name, items in data.items():
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError(f'{path} ["{name}"]: expected a list of {what} strings')
        if not items:
            raise ValueError(f'{path} ["{name}"]: empty {what} list')
        out[name] = items
    return out
