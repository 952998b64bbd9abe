"""What one evaluation run is asked to do: a frozen, self-checking :class:`EvalConfig`.

The command line builds one from its flags and the Python API takes one directly, so both
reject the same mistakes with the same message: an unknown task or method, an option the task
does not use (``shots`` for a zero-shot run is a mistake, not something to ignore), shots that
are not positive integers, head options that contradict each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..data.evalsets import EvalOptions
from ..precision import check_precision

TASKS: tuple[str, ...] = ("zeroshot", "retrieval", "linear-probe", "fewshot", "robustness")
METHODS: tuple[str, ...] = ("tip", "tip-f", "gda", "coop", "linear")
DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 4, 8, 16)

_HEAD_TASKS = ("zeroshot", "fewshot", "robustness")  # tasks that build a zero-shot head
# Options that only some tasks take; setting one away from its default for another task fails.
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "train_split": ("linear-probe", "fewshot"),
    "val_split": ("linear-probe", "fewshot", "robustness"),
    "methods": ("fewshot",),
    "shots": ("fewshot",),
    "templates": _HEAD_TASKS,
    "classnames": _HEAD_TASKS,
    "descriptors": _HEAD_TASKS,
    "cupl": _HEAD_TASKS,
    "waffle": _HEAD_TASKS,
    "language": _HEAD_TASKS,
    "ood_dataset": ("robustness",),
}
_PROMPT_SOURCES = ("templates", "descriptors", "cupl", "waffle")  # at most one of these


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """One evaluation: the task, the data, the model, and how to run it.

    Data: ``dataset`` is a registry name (``shapes/heldout``) or a path
    (:func:`clipforge.data.evalsets.open_evalset`); ``split`` the test split (the layout's
    default when None); ``train_split``/``val_split`` the splits few-shot and linear-probe
    fit and tune on (see :mod:`clipforge.evaluate.splits` for ``name[start:stop]`` ranges
    and the defaults). ``dataset_options`` carries layout settings (table columns, shapes
    sizes). Model: ``model`` (name, config JSON or checkpoint) and ``pretrained`` weights, as
    :func:`clipforge.create_model` takes them. Head (zero-shot, few-shot, robustness):
    ``templates`` (file or packaged name), ``classnames`` (file), ``descriptors`` (DCLIP
    JSON), ``cupl`` (CuPL JSON), ``waffle``, ``language``. Few-shot: ``methods`` (default:
    all of :data:`METHODS`), ``shots`` (default :data:`DEFAULT_SHOTS`), ``seed``.
    Robustness: ``ood_dataset``. Running: ``batch_size``, ``workers``, ``device`` (None:
    CUDA if available), ``precision``, ``cache_dir`` (feature cache; None: no cache),
    ``max_skip_rate``, ``progress``; ``out`` is where :func:`run_eval` writes the result.
    """

    task: str
    dataset: str
    model: str | None = None
    pretrained: str | None = None
    split: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    dataset_options: EvalOptions = field(default_factory=EvalOptions)
    methods: tuple[str, ...] | None = None
    shots: tuple[int, ...] | None = None
    seed: int = 0
    templates: str | None = None
    classnames: str | None = None
    descriptors: str | None = None
    cupl: str | None = None
    waffle: bool = False
    language: str = "en"
    ood_dataset: str | None = None
    batch_size: int = 256
    workers: int = 0
    device: str | None = None
    precision: str = "fp32"
    cache_dir: str | None = None
    max_skip_rate: float = 0.1
    progress: bool = True
    out: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must name an evaluation set, got {self.dataset!r}")
        if self.model is None and self.pretrained is None:
            raise ValueError("give a model (name, config or checkpoint) or pretrained weights")
        for name, tasks in TASK_OPTIONS.items():
            value = getattr(self, name)
            if value != _default(name) and self.task not in tasks:
                raise ValueError(
                    f"{name}={_shown(value)} does not apply to task {self.task!r} "
                    f"(only to {', '.join(tasks)})"
                )
        if self.methods is not None:
            object.__setattr__(self, "methods", _checked_methods(self.methods))
        if self.shots is not None:
            object.__setattr__(self, "shots", _checked_shots(self.shots))
        given = [name for name in _PROMPT_SOURCES if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"choose one prompt source, not {' and '.join(given)}")
        if (
            self.language != "en"
            and self.classnames is None
            and given in (["descriptors"], ["cupl"], ["waffle"])
        ):
            raise ValueError(
                f"language={self.language!r} has nothing to translate with {given[0]}: it picks "
                "template and class-name files; give classnames in that language"
            )
        _check_int(self.seed, "seed", minimum=None)
        _check_int(self.batch_size, "batch_size", minimum=1)
        _check_int(self.workers, "workers", minimum=0)
        check_precision(self.precision)
        if not 0.0 <= self.max_skip_rate <= 1.0:
            raise ValueError(f"max_skip_rate={self.max_skip_rate!r} must lie in [0, 1]")
        if not isinstance(self.dataset_options, EvalOptions):
            raise TypeError(
                f"dataset_options must be an EvalOptions, got {type(self.dataset_options)}"
            )

    @property
    def method_list(self) -> tuple[str, ...]:
        """The few-shot methods to run (all of them unless chosen)."""
        return METHODS if self.methods is None else self.methods

    @property
    def shot_list(self) -> tuple[int, ...]:
        """The shot counts to run (:data:`DEFAULT_SHOTS` unless chosen)."""
        return DEFAULT_SHOTS if self.shots is None else self.shots

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, recorded in every result."""
        return dataclasses.asdict(self)


def _default(name: str) -> Any:
    spec = EvalConfig.__dataclass_fields__[name]
    return spec.default


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return repr(value)


def _checked_methods(methods: Any) -> tuple[str, ...]:
    items = (methods,) if isinstance(methods, str) else tuple(methods)
    if not items:
        raise ValueError(f"methods is empty; choose from {', '.join(METHODS)}")
    for method in items:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if len(set(items)) != len(items):
        raise ValueError(f"methods {','.join(items)} name a method twice")
    return items


def _checked_shots(shots: Any) -> tuple[int, ...]:
    items = tuple(shots)
    if not items:
        raise ValueError("shots is empty; give positive integers such as 1,2,4,8,16")
    for k in items:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"shots must be positive integers, got {k!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"shots {','.join(map(str, items))} name a count twice")
    return tuple(sorted(items))


def _check_int(value: Any, name: str, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
