"""Zero-shot heads: class weights, how to score with them, and where they came from.

A :class:`ZeroShotHead` holds unit-norm class weights ``W`` (C, D), the class names, a scoring
rule and a JSON provenance record (model, method, template or descriptor source). Scoring:

* ``"dot"`` (the CLIP recipe, CuPL): ``logits = f @ W.T`` for unit-norm image features f;
* ``"mean_similarity"`` (DCLIP, WaffleCLIP): the head also keeps every prompt embedding
  ``E`` (N, D) and its class, and class c scores ``mean_{n in c} f . E_n``. That mean is f
  dotted with the *unnormalised* mean of c's prompt embeddings, so it differs from ``"dot"``
  on ``W = normalise(mean)`` by a per-class factor ``|mean_c|``; it is computed literally
  here. ``W`` is still the normalised mean (what weight averaging and adapters use).

Logits are cosine similarities, in [-1, 1]; multiply by ``model.logit_scale.exp()`` for CLIP's
softmax temperature (argmax and accuracy do not change).

Ensembles: :class:`HeadEnsemble` averages the members' logits (each keeps its own scoring;
heads of different models take one feature tensor each); :func:`average_weights` averages
the members' normalised weights into one ``"dot"`` head (one model only). Both need the same
class names in the same order.

Files (:func:`save_head`, :func:`load_head`): one safetensors file per head or ensemble, read
without pickle. Tensors: ``weights`` and, for ``"mean_similarity"``, ``prompt_embeddings`` and
``prompt_class``; an ensemble prefixes member ``i``'s with ``members.{i}.``. The string
metadata holds one JSON document under ``"clipforge.zeroshot"``: ``{"format_version", "kind":
"head", "classnames", "scoring", "provenance"}``, or ``{"format_version", "kind": "ensemble",
"head_weights", "members": [head documents]}``. Tensors are stored bit for bit and provenance
is JSON already, so save then load is exact. The file layer (:func:`write_document_file`,
:func:`read_document_file`) also writes and reads :mod:`clipforge.adapt`'s head files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path

SCORINGS = ("dot", "mean_similarity")
TENSORS = ("weights", "prompt_embeddings", "prompt_class")  # the fields that are tensors
_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class ZeroShotHead:
    """Class weights (C, D) plus scoring rule, class names and provenance (module docstring).

    ``prompt_embeddings`` (N, D, unit-norm) and ``prompt_class`` (N,) long are given exactly
    when ``scoring == "mean_similarity"``; every class needs at least one prompt.
    """

    classnames: tuple[str, ...]
    weights: torch.Tensor
    scoring: str = "dot"
    prompt_embeddings: torch.Tensor | None = None
    prompt_class: torch.Tensor | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classnames", checked_classnames(self.classnames))
        object.__setattr__(self, "provenance", _json_copy(self.provenance, "provenance"))
        _check_unit_rows(self.weights, "weights")
        if self.weights.shape[0] != len(self.classnames):
            raise ValueError(
                f"weights have {self.weights.shape[0]} rows for {len(self.classnames)} class names"
            )
        if self.scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {self.scoring!r}; choose from {SCORINGS}")
        given = {self.prompt_embeddings is not None, self.prompt_class is not None}
        if given != {self.scoring == "mean_similarity"}:
            raise ValueError(
                "prompt_embeddings and prompt_class go with scoring='mean_similarity' only "
                f"(scoring={self.scoring!r})"
            )
        if self.scoring == "mean_similarity":
            self._check_prompts()

    def _check_prompts(self) -> None:
        embeddings, index = self.prompt_embeddings, self.prompt_class
        _check_unit_rows(embeddings, "prompt_embeddings")
        if embeddings.shape[1] != self.dim or embeddings.dtype != self.weights.dtype:
            raise ValueError(
                f"prompt_embeddings are {embeddings.shape[1]}-d {embeddings.dtype}, "
                f"weights {self.dim}-d {self.weights.dtype}"
            )
        if index.dtype != torch.int64 or index.shape != (embeddings.shape[0],):
            raise ValueError(
                f"prompt_class must be a long tensor of shape ({embeddings.shape[0]},), "
                f"got {tuple(index.shape)} {index.dtype}"
            )
        if index.min() < 0 or index.max() >= self.num_classes:
            raise ValueError(f"prompt_class values must lie in [0, {self.num_classes})")
        empty = (torch.bincount(index, minlength=self.num_classes) == 0).nonzero().flatten()
        if len(empty):
            raise ValueError(f"class {self.classnames[int(empty[0])]!r} has no prompt embeddings")

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    @property
    def dim(self) -> int:
        return self.weights.shape[1]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine-similarity logits (B, C) for image features (B, D), normalised here."""
        _check_matrix(features, "image features", "(B, D)")
        if features.shape[1] != self.dim:
            raise ValueError(
                f"image features have dimension {features.shape[1]}, the head {self.dim}"
            )
        f = F.normalize(features, dim=-1).to(self.weights.dtype)  # (B, D)
        if self.scoring == "dot":
            return f @ self.weights.T  # (B, C)
        similarities = f @ self.prompt_embeddings.T  # (B, N)
        return class_means(similarities.T, self.prompt_class, self.num_classes).T  # (B, C)

    def to(self, device: str | torch.device) -> ZeroShotHead:
        """The same head with its tensors on ``device``."""
        moved = {name: tensor.to(device) for name, tensor in _head_tensors(self, "").items()}
        return dataclasses.replace(self, **moved)


@dataclass(frozen=True, eq=False)
class HeadEnsemble:
    """Average of the members' logits, weighted by ``head_weights`` (equal when None).

    ``head_weights`` are kept as given and normalised to sum 1 when scoring.
    """

    heads: tuple[ZeroShotHead, ...]
    head_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))
        if not self.heads:
            raise ValueError("an ensemble needs at least one head")
        for index, head in enumerate(self.heads):
            if not isinstance(head, ZeroShotHead):
                raise TypeError(
                    f"ensemble member {index} is a {type(head).__name__}, not a ZeroShotHead"
                )
            if head.classnames != self.heads[0].classnames:
                difference = _first_difference(self.heads[0], head)
                raise ValueError(f"head {index} classes differ from head 0: {difference}")
        if self.head_weights is not None:
            object.__setattr__(self, "head_weights", tuple(float(w) for w in self.head_weights))
            if len(self.head_weights) != len(self.heads):
                raise ValueError(
                    f"{len(self.head_weights)} head weights for {len(self.heads)} heads"
                )
            bad = [w for w in self.head_weights if not (math.isfinite(w) and w > 0)]
            if bad:
                raise ValueError(f"head weights must be positive and finite, got {bad}")

    @property
    def classnames(self) -> tuple[str, ...]:
        return self.heads[0].classnames

    @property
    def provenance(self) -> dict[str, Any]:
        return {
            "method": "logit_ensemble",
            "head_weights": None if self.head_weights is None else list(self.head_weights),
            "members": [head.provenance for head in self.heads],
        }

    def logits(self, features: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Weighted mean (B, C) of member logits; one feature tensor, or one per member.

        One tensor is only accepted when the members record the same model (or none).
        """
        if isinstance(features, torch.Tensor):
            models = _recorded_models(self.heads)
            if len(models) > 1:
                raise ValueError(
                    f"the heads come from different models {sorted(models)}; "
                    "pass one image-feature tensor per head"
                )
            features = [features] * len(self.heads)
        if len(features) != len(self.heads):
            raise ValueError(f"{len(features)} feature tensors for {len(self.heads)} heads")
        weights = _normalised(self.head_weights, len(self.heads))
        return sum(
            w * head.logits(f) for w, head, f in zip(weights, self.heads, features, strict=True)
        )


Head = ZeroShotHead | HeadEnsemble


def average_weights(
    heads: Sequence[ZeroShotHead], head_weights: Sequence[float] | None = None
) -> ZeroShotHead:
    """One ``"dot"`` head whose weights are ``normalise(sum_i w_i W_i)`` (w sums to 1).

    The members must share class names, dimension and recorded model: averaging weights from
    two embedding spaces is meaningless even when the sizes agree. A ``"mean_similarity"``
    member contributes its normalised mean prompt embeddings, so its own scoring rule is not
    kept (use :class:`HeadEnsemble` to keep it).
    """
    ensemble = HeadEnsemble(tuple(heads), head_weights)  # checks the members and weights
    dims = {head.dim for head in ensemble.heads}
    if len(dims) > 1:
        raise ValueError(f"cannot average weights of different dimensions {sorted(dims)}")
    models = _recorded_models(ensemble.heads)
    if len(models) > 1:
        raise ValueError(f"cannot average weights of different models {sorted(models)}")
    weights = _normalised(ensemble.head_weights, len(ensemble.heads))
    mixed = sum(w * head.weights for w, head in zip(weights, ensemble.heads, strict=True))  # (C, D)
    provenance = {**ensemble.provenance, "method": "weight_average"}
    provenance["model"] = next(iter(models), None)
    return ZeroShotHead(ensemble.classnames, F.normalize(mixed, dim=-1), provenance=provenance)


def class_means(rows: torch.Tensor, class_index: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean (C, K) of ``rows`` (N, K), row ``n`` in class ``class_index[n]``."""
    sums = rows.new_zeros(num_classes, rows.shape[1])
    sums.index_add_(0, class_index, rows)  # (C, K)
    counts = torch.bincount(class_index, minlength=num_classes).to(rows.dtype)  # (C,)
    return sums / counts[:, None]


def checked_classnames(classnames: Sequence[str]) -> tuple[str, ...]:
    """Class names as a tuple: non-empty, of non-empty strings, without repeats."""
    if isinstance(classnames, str):
        raise TypeError("classnames must be a sequence of strings, not one string")
    names = tuple(classnames)
    if not names:
        raise ValueError("a zero-shot head needs at least one class name")
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ValueError(f"class name {index} must be a non-empty string, got {name!r}")
        if name in seen:
            raise ValueError(f"duplicate class name {name!r} at positions {seen[name]} and {index}")
        seen[name] = index
    return names


def _first_difference(first: ZeroShotHead, other: ZeroShotHead) -> str:
    if first.num_classes != other.num_classes:
        return f"{other.num_classes} classes, not {first.num_classes}"
    index = next(
        i for i, (a, b) in enumerate(zip(first.classnames, other.classnames, strict=True)) if a != b
    )
    return f"class {index} is {other.classnames[index]!r}, not {first.classnames[index]!r}"


def _recorded_models(heads: Sequence[ZeroShotHead]) -> set[str]:
    return {head.provenance["model"] for head in heads if head.provenance.get("model") is not None}


def _normalised(head_weights: Sequence[float] | None, count: int) -> list[float]:
    if head_weights is None:
        return [1.0 / count] * count
    total = sum(head_weights)
    return [w / total for w in head_weights]


def _check_unit_rows(tensor: torch.Tensor, name: str) -> None:
    _check_matrix(tensor, name, "(rows, D)")
    if tensor.shape[0] == 0 or not torch.isfinite(tensor).all():
        raise ValueError(f"{name} is empty or holds NaN or infinite values")
    norms = tensor.float().norm(dim=-1)  # (rows,)
    deviation = (norms - 1).abs()
    if deviation.max() > _NORM_TOLERANCE:
        row = int(deviation.argmax())
        raise ValueError(
            f"{name} row {row} has norm {float(norms[row]):.4f}; rows must be unit-norm"
        )


def _check_matrix(tensor: torch.Tensor, name: str, shape: str) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2 or not tensor.is_floating_point():
        got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name} must be a float tensor {shape}, got {got}")


def _json_copy(value: dict[str, Any], name: str) -> dict[str, Any]:
    """A JSON round trip of ``value``: it must be a JSON object, and saving it is then exact."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be JSON-serialisable: {err}") from None


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
            "head_weights": head.provenance["head_weights"],
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
