"""The sets a task reads, one per role (test, train, val, ood), opened and encoded.

Every task goes through :func:`open_roles`, so the split defaults and the no-overlap check of
:mod:`clipforge.evaluate.splits` hold for all of them, and through :func:`encode_role`, so the
feature cache key always carries the same description of the set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..data.evalsets import EvalOptions, EvalSet
from .cache import path_fingerprint
from .config import TASK_ROLES, EvalConfig
from .features import CachedEncoder, EncodedSet
from .splits import SplitSpec, check_disjoint, default_split, open_split, parse_split

_CONFIG_SPLIT = {"test": "split", "train": "train_split", "val": "val_split"}
ROLES = tuple(_CONFIG_SPLIT)


@dataclass(frozen=True)
class RoleSet:
    """One role's set: the spec and split it reads (None: the layout's default), the layout
    options it was opened with, and the opened set."""

    role: str
    spec: str
    split: SplitSpec | None
    options: EvalOptions
    dataset: EvalSet

    def describe(self) -> dict[str, Any]:
        """What the cache key needs to tell this set's features apart (the encoder adds the
        model, the preprocessing and the sample keys)."""
        return {
            "dataset": self.spec,
            "fingerprint": path_fingerprint(self.spec),
            "split": None if self.split is None else str(self.split),
            "options": dataclasses.asdict(self.options),
        }


def role_split(config: EvalConfig, role: str) -> SplitSpec | None:
    """The split ``role`` reads: the config's, else :func:`~.splits.default_split`."""
    text = getattr(config, _CONFIG_SPLIT[role]) or default_split(config.dataset, role)
    return None if text is None else parse_split(text)


def open_role(
    spec: str,
    role: str,
    split: SplitSpec | None,
    encoder: CachedEncoder,
    options: EvalOptions | None = None,
) -> RoleSet:
    """Open ``spec`` at ``split`` with the encoder's preprocessing."""
    options = EvalOptions() if options is None else options
    dataset = open_split(spec, split, encoder.encoder.transform, options)
    return RoleSet(role, spec, split, options, dataset)


def open_roles(
    config: EvalConfig, encoder: CachedEncoder, tasks: tuple[str, ...]
) -> dict[str, RoleSet]:
    """Open ``config.dataset`` once per role its task reads (:data:`~.config.TASK_ROLES`);
    each must be a set of one of ``tasks`` (e.g. ``("classification",)``), and no two roles
    may share samples."""
    opened = {}
    for role in TASK_ROLES[config.task]:
        item = open_role(
            config.dataset, role, role_split(config, role), encoder, config.data.options
        )
        if item.dataset.task not in tasks:
            raise ValueError(
                f"task {config.task!r} needs a {' or '.join(tasks)} set; "
                f"{config.dataset} is a {item.dataset.task} set"
            )
        opened[role] = item
    check_disjoint({role: (item.split, len(item.dataset)) for role, item in opened.items()})
    return opened


def encode_role(encoder: CachedEncoder, item: RoleSet) -> EncodedSet:
    """The role's image features, from the cache when it holds them."""
    return encoder.images(item.dataset, item.describe())
