"""Pretrained weights by OpenCLIP's names: ``--model ViT-B-32 --pretrained laion2b_s34b_b79k``.

``pretrained_tags.json`` lists, for each registered architecture, OpenCLIP's tags: the hub
repository that holds the weights (read through :func:`~clipforge.models.hub.download_from_hub`,
so the hub cache serves them offline), the direct download URL and the sha256 published for it
where there is one (OpenAI's URLs carry the whole digest, OpenCLIP's release files an 8-digit
prefix), whether the weights need QuickGELU, and the preprocessing they were trained with.
``scripts/make_pretrained_tags.py`` regenerates the file from OpenCLIP's own registry.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import list_models
from .hub import PretrainedNotAvailableError

TAGS_FILE = Path(__file__).with_name("pretrained_tags.json")


@dataclass(frozen=True)
class PretrainedWeights:
    """One tag of one architecture, as OpenCLIP registers it."""

    model: str
    tag: str
    hf_hub: str
    url: str
    sha256: str
    quick_gelu: bool
    preprocess: dict[str, Any]

    @property
    def architecture(self) -> str:
        """The registered config these weights fit: weights trained with QuickGELU (OpenAI's,
        MetaCLIP's, ...) need the ``-quickgelu`` variant of the name they are listed under."""
        if self.quick_gelu and not self.model.endswith("-quickgelu"):
            return f"{self.model}-quickgelu"
        return self.model

    @property
    def source(self) -> str:
        """Where :func:`~clipforge.models.formats.read_checkpoint` reads them from."""
        return f"hf-hub:{self.hf_hub}"

    def download_hint(self) -> str:
        """The direct download, for users fetching the file by hand."""
        if not self.url:
            return ""
        digest = f" (sha256 {self.sha256})" if self.sha256 else ""
        return f"; or download {self.url}{digest} and pass that file"


@functools.cache
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads(TAGS_FILE.read_text())


def list_pretrained(model: str | None = None) -> list[PretrainedWeights]:
    """Every registered tag (of ``model`` only, when given), in the file's order."""
    table = _table()
    names = [model] if model is not None else list(table)
    return [_weights(name, tag) for name in names for tag in table.get(name, {})]


def find_pretrained(model: str, tag: str) -> PretrainedWeights | None:
    """The weights ``tag`` names for architecture ``model``, or None if it names none."""
    return _weights(model, tag) if tag in _table().get(model, {}) else None


def unknown_tag_error(model: str, tag: str) -> str:
    """Why ``tag`` is neither a file nor a tag of ``model``, with the tags it could mean."""
    tags = list(_table().get(model, {}))
    if not tags:
        known = "it has no pretrained tags" if model in list_models() else "it is not registered"
        return f"pretrained {tag!r} is not a file, and {model!r} has no tag of that name ({known})"
    close = difflib.get_close_matches(tag, tags, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f" (its tags: {', '.join(tags)})"
    return f"pretrained {tag!r} is neither a file nor a tag of {model}{hint}"


def fetch_error(weights: PretrainedWeights, err: PretrainedNotAvailableError) -> str:
    """The hub's error, said of the tag the user named."""
    return f"pretrained {weights.tag!r} of {weights.model}: {err}{weights.download_hint()}"


def _weights(model: str, tag: str) -> PretrainedWeights:
    entry = _table()[model][tag]
    preprocess = {k: entry[k] for k in ("mean", "std", "interpolation", "resize_mode")}
    return PretrainedWeights(model=model, tag=tag, hf_hub=entry["hf_hub"], url=entry["url"],
                             sha256=entry["sha256"], quick_gelu=entry["quick_gelu"],
                             preprocess=preprocess)  # fmt: skip
