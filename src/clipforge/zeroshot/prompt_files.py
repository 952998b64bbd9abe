"""Template and class-name files: packaged or on disk, keyed by dataset, chosen by language.

A *source* is a packaged name (:func:`packaged_sources`: ``"openai_imagenet"`` holds OpenAI's
80 ImageNet templates, ``"openai_imagenet_short"`` the 7 they selected from those,
``"dataset_templates"``/``"dataset_classnames"`` per-dataset lists in CLIP_benchmark's
layout) or a path: ``dir/name.txt`` or ``dir/name.json`` names one file, ``dir/name`` (a
separator, no suffix) a stem whose language variants are looked up.

File shapes. ``.txt``: one entry per line, surrounding whitespace stripped, blank lines
skipped. ``.json``: a list of strings; or an object keyed by dataset name (pass
``dataset=``) whose values are lists or objects keyed by language; or an object keyed by
language code.

Languages. ``<stem>.<lang>.txt`` / ``<stem>.<lang>.json`` hold language ``<lang>`` and win
over ``<stem>.txt`` / ``<stem>.json``, which hold English (``"en"``) when they are lists and
the languages they are keyed by otherwise. A named file (``name.txt``) is read as given for
English; for another language its ``name.<lang>.*`` siblings are looked up.

Templates hold exactly one ``{}`` where the class name goes (CLIP_benchmark's ``{c}`` is read
as ``{}``) and no other braces, so ``template.format(name)`` is safe. Class names are
non-empty. Duplicates of either are errors: a repeated template would silently weigh double
and a repeated class name makes one class impossible to predict (its weights tie with the
other's). Every error names the file and the line (text) or the key path and entry (JSON).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_LANGUAGE = "en"
PACKAGE_DIR = Path(__file__).with_name("templates")
SUFFIXES = (".txt", ".json")
_LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")

Source = str | os.PathLike


@dataclass(frozen=True)
class Entry:
    """One string read from a file and where it was: ``path:line`` or ``path ["key"][i]``."""

    text: str
    where: str


def packaged_sources() -> list[str]:
    """Names of the template and class-name files shipped with clipforge."""
    return sorted(
        {path.name.split(".")[0] for path in PACKAGE_DIR.iterdir() if path.suffix in SUFFIXES}
    )


def load_templates(
    source: Source = "dataset_templates",
    *,
    dataset: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> list[str]:
    """Prompt templates, each with one ``{}`` for the class name, in file order.

    ``load_templates("openai_imagenet")`` gives OpenAI's 80; ``load_templates(dataset="cars")``
    the packaged per-dataset list; ``load_templates("my.txt", language="de")`` reads
    ``my.de.txt`` (or ``my.de.json``).
    """
    entries = read_entries(source, "templates", dataset=dataset, language=language)
    return _unique(entries, _checked_template, "template")


def load_classnames(
    source: Source = "dataset_classnames",
    *,
    dataset: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> list[str]:
    """Class names in label order (entry ``i`` names label ``i``)."""
    entries = read_entries(source, "class names", dataset=dataset, language=language)
    return _unique(entries, _checked_classname, "class name")


def _unique(entries: list[Entry], clean: Callable[[Entry], str], what: str) -> list[str]:
    """``clean(entry)`` of each entry in order; a repeat is an error naming both places."""
    first: dict[str, str] = {}  # text -> where it first occurs
    for entry in entries:
        text = clean(entry)
        if text in first:
            raise ValueError(f"{entry.where}: duplicate {what} {text!r} (first at {first[text]})")
        first[text] = entry.where
    return list(first)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None


def read_entries(source: Source, kind: str, *, dataset: str | None, language: str) -> list[Entry]:
    """The raw strings of ``source`` for ``dataset`` and ``language`` (see module docstring)."""
    if not isinstance(language, str) or not _LANGUAGE_CODE.fullmatch(language):
        raise ValueError(f"language must be a code such as 'en' or 'pt-br', got {language!r}")
    base, named = _base_and_named(source)
    path, specific = _resolve(base, named, kind, language, source)
    if path.suffix == ".txt":
        if dataset is not None:
            raise ValueError(
                f"{path}: a text file is not keyed by dataset; drop dataset={dataset!r}"
            )
        if not specific:
            _check_default_language(path, base, language)
        entries = _text_entries(path)
    else:
        entries = _json_entries(path, base, dataset, language, specific)
    if not entries:
        raise ValueError(f"{path}: no {kind} in the file")
    return entries


def _base_and_named(source: Source) -> tuple[Path, Path | None]:
    """``(base, named)``: the stem path to add language parts to, and the file named if any."""
    text = os.fspath(source)
    path = Path(text)
    if path.suffix in SUFFIXES:
        return path.with_suffix(""), path
    if "/" in text or os.sep in text:
        return path, None
    return PACKAGE_DIR / text, None


def _resolve(
    base: Path, named: Path | None, kind: str, language: str, source: Source
) -> tuple[Path, bool]:
    """The file to read, and whether it is the file of ``language`` (``<stem>.<lang>.*``)."""
    if named is not None and language == DEFAULT_LANGUAGE:
        if not named.is_file():
            raise FileNotFoundError(f"no {kind} file {named}")
        return named, False
    for suffix in SUFFIXES:
        specific = base.with_name(f"{base.name}.{language}{suffix}")
        if specific.is_file():
            return specific, True
    defaults = [named] if named is not None else [base.with_name(base.name + s) for s in SUFFIXES]
    for default in defaults:
        if default.is_file():
            return default, False
    languages = _file_languages(base)
    if languages:
        raise ValueError(
            f"no {kind} in language {language!r} for {os.fspath(source)!r}; "
            f"available: {sorted(languages)}"
        )
    if named is None and base.parent == PACKAGE_DIR:
        raise ValueError(
            f"unknown {kind} source {os.fspath(source)!r}: not a packaged name "
            f"({', '.join(packaged_sources())}) and not a path (give a .txt or .json file)"
        )
    tried = ", ".join(str(path) for path in defaults)
    raise FileNotFoundError(f"no {kind} file for {os.fspath(source)!r} (looked for {tried})")


def _file_languages(base: Path) -> set[str]:
    """Languages that have their own ``<stem>.<lang>.txt|json`` file beside ``base``."""
    found = set()
    for path in base.parent.glob(f"{glob.escape(base.name)}.*"):
        language, _, suffix = path.name[len(base.name) + 1 :].rpartition(".")
        if f".{suffix}" in SUFFIXES and _LANGUAGE_CODE.fullmatch(language):
            found.add(language)
    return found


def _check_default_language(where: str | Path, base: Path, language: str) -> None:
    """A file without a language part (and not keyed by language) holds English only."""
    if language != DEFAULT_LANGUAGE:
        available = sorted(_file_languages(base) | {DEFAULT_LANGUAGE})
        raise ValueError(f"{where}: no language {language!r}; available: {available}")


def _text_entries(path: Path) -> list[Entry]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        Entry(line.strip(), f"{path}:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


def _json_entries(
    path: Path, base: Path, dataset: str | None, language: str, specific: bool
) -> list[Entry]:
    """Walk the dataset key, then the language key (when the node is an object), to a list."""
    node = read_json(path)
    keys = ""
    if dataset is not None:
        node, keys = _pick(node, dataset, path, keys, "dataset")
    if isinstance(node, dict):
        if language not in node:
            hint = " (if the file is keyed by dataset, pass dataset=)" if dataset is None else ""
            available = sorted(set(node) | _file_languages(base))
            raise ValueError(
                f"{_at(path, keys)}: no language {language!r}; keys: {available}{hint}"
            )
        node, keys = _pick(node, language, path, keys, "language")
    elif not specific:
        _check_default_language(_at(path, keys), base, language)
    if not isinstance(node, list):
        raise ValueError(
            f"{_at(path, keys)}: expected a list of strings, got {type(node).__name__}"
        )
    entries = []
    for index, item in enumerate(node):
        where = _at(path, f"{keys}[{index}]")
        if not isinstance(item, str):
            raise ValueError(f"{where}: expected a string, got {type(item).__name__}")
        entries.append(Entry(item, where))
    return entries


def _pick(node: Any, key: str, path: Path, keys: str, what: str) -> tuple[Any, str]:
    """``node[key]`` and the key path that leads to it, or an error listing the keys."""
    if not isinstance(node, dict):
        raise ValueError(
            f"{_at(path, keys)}: expected an object keyed by {what}, got {type(node).__name__}"
        )
    if key not in node:
        raise ValueError(f"{_at(path, keys)}: no {what} {key!r}; available: {sorted(node)}")
    return node[key], f"{keys}[{json.dumps(key)}]"


def _at(path: Path, keys: str) -> str:
    return f"{path} {keys}" if keys else str(path)


def _checked_classname(entry: Entry) -> str:
    name = entry.text.strip()
    if not name:
        raise ValueError(f"{entry.where}: empty class name")
    return name


def _checked_template(entry: Entry) -> str:
    """``entry`` with ``{c}`` read as ``{}``, after checking it holds exactly one placeholder."""
    template = entry.text.strip().replace("{c}", "{}")
    rest = template.replace("{}", "", 1)
    if template.count("{}") != 1 or "{" in rest or "}" in rest:
        raise ValueError(
            f"{entry.where}: template {entry.text!r} must hold exactly one '{{}}' (or '{{c}}') "
            "for the class name and no other braces"
        )
    return template
