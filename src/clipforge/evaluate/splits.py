"""Which samples each role (test, train, val, ood) reads, the guarantee that they never overlap,
and the sets of a task's roles opened (:func:`open_roles`, which every task goes through).

A split is a name the evaluation set knows (``"train"``, ``"val"``, ...) or a range of one,
``"name[start:stop]"``: samples ``start`` to ``stop - 1`` in the set's order. Ranges let one
split serve several roles without sharing a sample: the shapes world's held-out pairs exist in
its ``heldout`` split only, so :data:`SHAPES_SPLITS` take few-shot shots from ranges of it that
the test images do not use (docs/evaluation.md, "Splits"; a test set made larger than its
default must move the train and val ranges too). Before anything is encoded,
:func:`check_disjoint` rejects two roles that read the same samples of one split.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass
from typing import Any

from ..data.evalsets import SHAPES_NAMES, EvalOptions, EvalSet, open_evalset
from .config import TASK_ROLES, EvalConfig
from .features import CachedEncoder, path_fingerprint

SHAPES_SPLITS: dict[str, dict[str, str]] = {
    "shapes/heldout": {
        "test": "heldout",
        "train": "heldout[800:2800]",
        "val": "heldout[2800:3600]",
    },
    "shapes/shape": {"test": "val", "train": "train", "val": "val[1000:2000]"},
    "shapes/colour": {"test": "val", "train": "train", "val": "val[1000:2000]"},
}
GENERIC_SPLITS: dict[str, str | None] = {"test": None, "train": "train", "val": "val"}
_SPLIT = re.compile(r"(?P<name>[^\[\]]+)(\[(?P<start>\d*):(?P<stop>\d*)\])?")


@dataclass(frozen=True)
class SplitSpec:
    """A split name and an optional sample range ``[start, stop)`` (``stop`` None: to the end)."""

    name: str
    start: int = 0
    stop: int | None = None

    @property
    def ranged(self) -> bool:
        return self.start != 0 or self.stop is not None

    def __str__(self) -> str:
        if not self.ranged:
            return self.name
        return f"{self.name}[{self.start}:{'' if self.stop is None else self.stop}]"


def parse_split(text: str) -> SplitSpec:
    """``"val"`` or ``"val[100:200]"`` as a :class:`SplitSpec`; malformed text is an error."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"split must be a non-empty name, got {text!r}")
    match = _SPLIT.fullmatch(text)
    if match is None:
        raise ValueError(f"split {text!r} is malformed; write NAME or NAME[START:STOP]")
    start = int(match["start"] or 0)
    stop = int(match["stop"]) if match["stop"] else None
    if stop is not None and stop <= start:
        raise ValueError(f"split {text!r} is an empty range ({start} to {stop})")
    return SplitSpec(match["name"], start, stop)


def check_disjoint(roles: dict[str, tuple[SplitSpec | None, int]]) -> None:
    """Raise when two roles read common samples of one split.

    ``roles`` maps a role name (``"test"``, ``"train"``, ...) to its split and the number of
    samples its set holds, which bounds an open-ended range. A role whose split is None (the
    layout's default, name unknown) cannot be compared and is left out.
    """
    spans = {
        role: (split.name, split.start, split.start + size)
        for role, (split, size) in roles.items()
        if split is not None
    }
    for first, second in itertools.combinations(spans, 2):
        name_a, start_a, stop_a = spans[first]
        name_b, start_b, stop_b = spans[second]
        if name_a == name_b and start_a < stop_b and start_b < stop_a:
            raise ValueError(
                f"the {second} split {str(roles[second][0])!r} shares samples "
                f"{max(start_a, start_b)}-{min(stop_a, stop_b) - 1} of split {name_a!r} "
                f"with the {first} split {str(roles[first][0])!r}; give disjoint splits "
                "or ranges such as NAME[START:STOP]"
            )


_CONFIG_SPLIT = {"test": "split", "train": "train_split", "val": "val_split"}
ROLES = tuple(_CONFIG_SPLIT)


@dataclass(frozen=True)
class RoleSet:
    """One role's set: the spec and split it reads (None: the layout's default), the layout
    options it was opened with, and the opened set."""

    spec: str
    split: SplitSpec | None
    options: EvalOptions
    dataset: EvalSet

    def describe(self) -> dict[str, Any]:
        """What the feature cache key needs to tell this set's features apart (the encoder adds
        the model, the preprocessing and the sample keys)."""
        return {
            "dataset": self.spec,
            "fingerprint": path_fingerprint(self.spec),
            "split": None if self.split is None else str(self.split),
            "options": dataclasses.asdict(self.options),
        }


def role_split(config: EvalConfig, role: str) -> SplitSpec | None:
    """The split ``role`` reads: the config's, else the set's default."""
    default = SHAPES_SPLITS.get(config.dataset, GENERIC_SPLITS)[role]
    text = getattr(config, _CONFIG_SPLIT[role]) or default
    return None if text is None else parse_split(text)


def open_role(
    spec: str, split: SplitSpec | None, encoder: CachedEncoder, options: EvalOptions | None = None
) -> RoleSet:
    """Open ``spec`` at ``split`` (None: the layout's default) with the encoder's preprocessing,
    cut to the split's range; a shapes view is made as long as the range needs (``size = stop``)."""
    options = EvalOptions() if options is None else options
    ranged = split is not None and split.ranged
    layout_options = options
    if ranged and spec in SHAPES_NAMES:
        if split.stop is None:
            raise ValueError(
                f"split {str(split)!r} of {spec}: a shapes split is endless; give the stop"
            )
        layout_options = dataclasses.replace(options, size=split.stop)
    name = None if split is None else split.name
    dataset = open_evalset(spec, name, encoder.encoder.transform, layout_options)
    if ranged:
        stop = len(dataset) if split.stop is None else split.stop
        dataset = dataset.select(split.start, stop)
    return RoleSet(spec, split, options, dataset)


def open_roles(
    config: EvalConfig, encoder: CachedEncoder, tasks: tuple[str, ...]
) -> dict[str, RoleSet]:
    """Open ``config.dataset`` once per role its task reads (:data:`~.config.TASK_ROLES`);
    each must be a set of one of ``tasks`` (e.g. ``("classification",)``), and no two roles
    may share samples."""
    opened = {}
    for role in TASK_ROLES[config.task]:
        item = open_role(config.dataset, role_split(config, role), encoder, config.data.options)
        if item.dataset.task not in tasks:
            raise ValueError(
                f"task {config.task!r} needs a {' or '.join(tasks)} set; "
                f"{config.dataset} is a {item.dataset.task} set"
            )
        opened[role] = item
    check_disjoint({role: (item.split, len(item.dataset)) for role, item in opened.items()})
    return opened
