"""Head files: one safetensors file per head or ensemble, self-describing, read without pickle.

Tensors: ``weights`` (C, D) and, for ``"mean_similarity"`` heads, ``prompt_embeddings``
(N, D) and ``prompt_class`` (N,); an ensemble prefixes member ``i``'s tensors with
``members.{i}.``. The safetensors string metadata holds one JSON document under
``"clipforge.zeroshot"``: ``{"format_version", "kind": "head" | "ensemble", "classnames",
"scoring", "provenance"}`` for a head, ``{"format_version", "kind", "head_weights",
"members": [head documents]}`` for an ensemble. Tensors are stored bit for bit and the JSON
parts are JSON already (heads keep their provenance as JSON), so save then load is exact.
The file layer (:func:`write_document_file`, :func:`read_document_file`) also writes and reads
:mod:`clipforge.adapt`'s head files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from .heads import TENSORS, Head, HeadEnsemble, ZeroShotHead

METADATA_KEY = "clipforge.zeroshot"
FORMAT_VERSION = 1


def save_head(head: Head, path: str | os.PathLike) -> None:
    """Write ``head`` (a :class:`ZeroShotHead` or :class:`HeadEnsemble`) to ``path`` atomically."""
    if isinstance(head, ZeroShotHead):
        tensors = _head_tensors(head, "")
        document = {"kind": "head", **_head_document(head)}
    elif isinstance(head, HeadEnsemble):
        tensors = {}
        for index, member in enumerate(head.heads):
            tensors.update(_head_tensors(member, f"members.{index}."))
        document = {
            "kind": "ensemble",
            "head_weights": None if head.head_weights is None else list(head.head_weights),
            "members": [_head_document(member) for member in head.heads],
        }
    else:
        raise TypeError(f"cannot save a {type(head).__name__}; expected a zero-shot head")
    write_document_file(path, METADATA_KEY, tensors, {"format_version": FORMAT_VERSION, **document})


def load_head(path: str | os.PathLike) -> Head:
    """Read a file written by :func:`save_head`; every error names the file."""
    tensors, document = read_document_file(path, METADATA_KEY, "zero-shot head")
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported head format {document!r:.80}")
    try:
        if document.get("kind") == "head":
            return _build_head(document, tensors, "")
        if document.get("kind") == "ensemble":
            members = [
                _build_head(member, tensors, f"members.{index}.")
                for index, member in enumerate(document["members"])
            ]
            return HeadEnsemble(tuple(members), document["head_weights"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: malformed zero-shot head ({err})") from err
    raise ValueError(f"{path}: unknown head kind {document.get('kind')!r}")


def write_document_file(
    path: str | os.PathLike, metadata_key: str, tensors: dict[str, torch.Tensor], document: Any
) -> None:
    """Write ``tensors`` and the JSON ``document`` (under ``metadata_key``) atomically.

    Tensors are stored from CPU copies: safetensors refuses tensors that share memory.
    """
    copies = {key: value.detach().cpu().contiguous().clone() for key, value in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(copies, str(tmp), metadata={metadata_key: json.dumps(document)})


def read_document_file(
    path: str | os.PathLike, metadata_key: str, what: str
) -> tuple[dict[str, torch.Tensor], Any]:
    """The tensors and JSON document of a file written by :func:`write_document_file`.

    A missing file or one that is not such a file is an error naming the file and ``what``
    it was expected to hold.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            document = json.loads((f.metadata() or {})[metadata_key])
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a clipforge {what} file ({err!r})") from err
    return tensors, document


def _head_tensors(head: ZeroShotHead, prefix: str) -> dict[str, torch.Tensor]:
    return {
        prefix + name: getattr(head, name) for name in TENSORS if getattr(head, name) is not None
    }


def _head_document(head: ZeroShotHead) -> dict[str, Any]:
    return {
        "classnames": list(head.classnames),
        "scoring": head.scoring,
        "provenance": head.provenance,
    }


def _build_head(
    document: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str
) -> ZeroShotHead:
    return ZeroShotHead(
        classnames=tuple(document["classnames"]),
        weights=tensors[prefix + "weights"],
        scoring=document["scoring"],
        prompt_embeddings=tensors.get(prefix + "prompt_embeddings"),
        prompt_class=tensors.get(prefix + "prompt_class"),
        provenance=document["provenance"],
    )
