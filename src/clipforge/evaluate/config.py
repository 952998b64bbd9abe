"""What one evaluation run is asked to do: a frozen, self-checking :class:`EvalConfig`, so the
command line and the Python API reject the same mistakes with the same message.

Options that only some tasks use live in one section per task (``head``, ``fewshot``,
``robustness``): a section given for a task that does not read it is an error naming its values
(``shots`` for a zero-shot run is a mistake, not something to ignore), and the section of the
chosen task is filled with its defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..data.evalsets import EvalOptions
from ..precision import check_precision
from ..typed_config import TypedConfig, check, field_types, option, section_type
from .features import default_cache_dir

TASKS: tuple[str, ...] = ("zeroshot", "retrieval", "linear-probe", "fewshot", "robustness")
METHODS: tuple[str, ...] = ("tip", "tip-f", "gda", "coop", "linear")
DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 4, 8, 16)
# The roles (splits) each task reads; clipforge.evaluate.splits.open_roles opens them.
TASK_ROLES: dict[str, tuple[str, ...]] = {
    "zeroshot": ("test",),
    "retrieval": ("test",),
    "linear-probe": ("test", "train", "val"),
    "fewshot": ("test", "train", "val"),
    "robustness": ("test", "val"),
}


@dataclass(frozen=True, kw_only=True)
class HeadSection:
    """The zero-shot head's prompts; at most one of templates, descriptors, cupl, waffle."""

    TASKS: ClassVar[tuple[str, ...]] = ("zeroshot", "fewshot", "robustness")

    templates: str | None = option(None, help="Template file or packaged name.")
    classnames: str | None = option(None, help="Class-name file (one per line).")
    descriptors: str | None = option(None, help="DCLIP descriptor JSON.")
    cupl: str | None = option(None, help="CuPL prompt JSON.")
    waffle: bool = option(False, help="WaffleCLIP random descriptors.")
    language: str = option("en", help="Language of templates and class names.")

    def __post_init__(self) -> None:
        given = [name for name in ("templates", "descriptors", "cupl", "waffle")
                 if getattr(self, name)]  # fmt: skip
        if len(given) > 1:
            raise ValueError(f"choose one prompt source, not {' and '.join(given)}")
        if self.language != "en" and self.classnames is None and given not in ([], ["templates"]):
            raise ValueError(
                f"language={self.language!r} has nothing to translate with {given[0]}: it picks "
                "template and class-name files; give classnames in that language"
            )


@dataclass(frozen=True, kw_only=True)
class FewshotSection:
    """Which adaptation methods run, at which shot counts."""

    TASKS: ClassVar[tuple[str, ...]] = ("fewshot",)

    methods: tuple[str, ...] = option(
        METHODS, flag="method", help=f"Few-shot methods, comma list of {','.join(METHODS)}."
    )
    shots: tuple[int, ...] = option(DEFAULT_SHOTS, help="Few-shot counts, e.g. 1,2,4,8,16.")

    def __post_init__(self) -> None:
        methods, shots = tuple(self.methods), tuple(self.shots)
        if not methods:
            raise ValueError(f"fewshot.methods is empty; choose from {', '.join(METHODS)}")
        for method in methods:
            if method not in METHODS:
                raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        if len(set(methods)) != len(methods):
            raise ValueError(f"fewshot.methods {','.join(methods)} name a method twice")
        if not shots:
            raise ValueError("fewshot.shots is empty; give positive integers such as 1,2,4,8,16")
        for k in shots:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"fewshot.shots must be positive integers, got {k!r}")
        if len(set(shots)) != len(shots):
            raise ValueError(f"fewshot.shots {','.join(map(str, shots))} name a count twice")
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "shots", tuple(sorted(shots)))


@dataclass(frozen=True, kw_only=True)
class RobustnessSection:
    """The out-of-distribution set MCM scores against the test set."""

    TASKS: ClassVar[tuple[str, ...]] = ("robustness",)

    ood_dataset: str | None = option(None, help="OOD set for robustness (MCM).")


@dataclass(frozen=True, kw_only=True)
class DataSection:
    """How the evaluation sets are read: layout options and the tolerated undecodable share."""

    options: EvalOptions = field(default_factory=EvalOptions)
    max_skip_rate: float = option(0.1, help="Share of undecodable samples tolerated, in [0, 1].")

    def __post_init__(self) -> None:
        check("share", "data.", max_skip_rate=self.max_skip_rate)


@dataclass(frozen=True, kw_only=True)
class RunSection:
    """How features are computed: batching, device, precision, feature cache, progress."""

    batch_size: int = option(256, help="Images per batch.")
    workers: int = option(0, help="DataLoader worker processes.")
    device: str | None = option(None, help="cpu, cuda, cuda:1 (default: CUDA if any).")
    precision: str = option("fp32", help="fp32, bf16, fp16, amp_bf16, amp_fp16 or auto.")
    cache: bool | None = option(
        None, help="Cache features (default: only when a cache folder is given)."
    )
    cache_dir: str | None = option(None, help="Feature cache folder (default: the user cache).")
    progress: bool = option(True, help="Show progress bars.")

    def __post_init__(self) -> None:
        check("integer", "run.", batch_size=self.batch_size, workers=self.workers)
        check("at_least_one", "run.", batch_size=self.batch_size)
        check("non_negative", "run.", workers=self.workers)
        check_precision(self.precision, "run.precision")
        if self.cache is False and self.cache_dir is not None:
            raise ValueError(
                f"run.cache=false (--no-cache) and run.cache_dir={self.cache_dir!r} contradict "
                "each other; give one"
            )

    @property
    def cache_folder(self) -> str | None:
        """Where features are cached: ``cache_dir``, else the user cache when ``cache`` is
        true (the command line's default), else nowhere (the library's default: a caller
        evaluating an in-memory model between training steps must not fill the user cache)."""
        if self.cache_dir is not None or not self.cache:
            return self.cache_dir
        return str(default_cache_dir())


@dataclass(frozen=True, kw_only=True)
class EvalConfig(TypedConfig):
    """One evaluation: the task, the data, the model, and how to run it (``dataset`` goes to
    :func:`~clipforge.data.evalsets.open_evalset`, splits are explained in :mod:`.splits`,
    ``model`` and ``pretrained`` go to :func:`clipforge.create_model`)."""

    task: str = option(help="zeroshot, retrieval, linear-probe, fewshot or robustness.")
    dataset: str = option(help="Registry name (shapes/heldout) or path.")
    model: str | None = option(None, help="Model name, config JSON or checkpoint.")
    pretrained: str | None = option(None, help="Weights file to load into MODEL.")
    split: str | None = option(None, help="Test split, NAME or NAME[START:STOP].")
    train_split: str | None = option(None, help="Train split (linear-probe, fewshot).")
    val_split: str | None = option(None, help="Val split (linear-probe, fewshot, robustness).")
    seed: int = option(0, help="Seed of the k-shot draw and of training.")
    out: str | None = option(None, help="Result JSON (default results/TASK-DATASET-MODEL.json).")
    data: DataSection = field(default_factory=DataSection)
    run: RunSection = field(default_factory=RunSection)
    head: HeadSection | None = None
    fewshot: FewshotSection | None = None
    robustness: RobustnessSection | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must name an evaluation set, got {self.dataset!r}")
        if self.model is None and self.pretrained is None:
            raise ValueError("give a model (name, config or checkpoint) or pretrained weights")
        check("integer", seed=self.seed)
        for role in ("train", "val"):
            value = getattr(self, f"{role}_split")
            if value is not None and role not in TASK_ROLES[self.task]:
                raise ValueError(
                    f"{role}_split={value!r} does not apply to task {self.task!r} "
                    f"(it reads {', '.join(TASK_ROLES[self.task])})"
                )
        for name, annotation in field_types(type(self)).items():
            section = section_type(annotation)
            if hasattr(section, "TASKS"):
                self._fill_or_reject(name, section, section.TASKS)

    def _fill_or_reject(self, name: str, section: type, tasks: tuple[str, ...]) -> None:
        """The chosen task's section gets its defaults; another task's section is an error."""
        value = getattr(self, name)
        if self.task in tasks:
            if value is None:
                object.__setattr__(self, name, section())
        elif value is not None:
            given = [f"{name}.{f.name}={_shown(getattr(value, f.name))}"
                     for f in dataclasses.fields(value)
                     if getattr(value, f.name) != f.default] or [f"section {name!r}"]  # fmt: skip
            raise ValueError(
                f"{' and '.join(given)} does not apply to task {self.task!r} "
                f"(only to {', '.join(tasks)})"
            )


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return repr(value)
