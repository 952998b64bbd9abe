"""``TrainConfig``: the whole description of a training run, from YAML plus ``key=value`` overrides.

Sections are frozen dataclasses; an unknown key or a bad value fails with a message naming it
(``optim.lr=-1: must be > 0``), because a typo silently ignored wastes a training run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..losses import loss_names, loss_options
from ..precision import TRAIN_PRECISIONS, check_precision
from ..typed_config import TypedConfig, check


class TrainConfigError(ValueError):
    """A training config has an unknown key or a bad value."""


def _check(section: object, where: str, **rules: tuple[str, ...]) -> None:
    """Raise naming the first field of ``section`` that breaks its rule (see
    :data:`~clipforge.typed_config.RULES`); a field left None (a loss option that keeps the
    loss's default) has nothing to break."""
    for rule, names in rules.items():
        given = {name: value for name in names if (value := getattr(section, name)) is not None}
        check(rule, f"{where}.", TrainConfigError, **given)


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    name: str = "tiny-rn"  # registered name, config JSON or checkpoint
    pretrained: str | None = None
    grad_checkpointing: bool = False
    patch_dropout: float = 0.0
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    compile: bool = False
    init_temperature: float = 0.0  # from-scratch runs: the starting 1/logit_scale; 0: the model's

    def __post_init__(self) -> None:
        _check(self, "model", fraction=("init_temperature",))


@dataclass(frozen=True, kw_only=True)
class DataSection:
    kind: str = "shapes"  # shapes | wds | csv
    train: str = ""  # shard pattern(s) for wds ("a/{0..9}.tar::b/{0..3}.tar"), table for csv
    weights: tuple[float, ...] = ()
    image_root: str = ""
    image_key: str = "filepath"
    caption_key: str = "caption"
    resampled: bool = False
    num_samples: int = 20000  # samples per epoch (shapes world size, or resampled epoch length)
    captions_per_sample: int = 1  # shapes: captions drawn per image; each epoch pairs one
    batch_size: int = 256
    workers: int = 0
    max_skip_rate: float = 0.1
    augment: bool = False

    def __post_init__(self) -> None:
        check(("shapes", "wds", "csv"), "data.", TrainConfigError, kind=self.kind)
        if self.kind != "shapes" and not self.train:
            raise TrainConfigError(f"data.train must name the {self.kind} training data")
        positive = ("batch_size", "num_samples", "captions_per_sample")
        _check(self, "data", positive=positive, non_negative=("workers",))


@dataclass(frozen=True, kw_only=True)
class LossSection:
    """The loss and its options. Which loss takes which option is read from the losses
    themselves (:func:`loss_options`); an option left None keeps the loss's default, and one
    the chosen loss does not take is an error, because a silently ignored option trains
    something other than what the recipe says."""

    name: str = "clip"  # clip | siglip | infoloob | cloob | distill
    local_loss: bool | None = None  # clip: score only this rank's rows (large runs)
    label_smoothing: float | None = None  # clip, distill
    hopfield_beta: float | None = None  # cloob: inverse temperature of the Hopfield retrieval
    distill_weight: float | None = None  # distill: weight of the teacher term
    distill_temperature: float | None = None  # distill: softmax temperature of that term
    teacher: str = ""  # model for distill (name, config or checkpoint)
    teacher_pretrained: str = ""

    def __post_init__(self) -> None:
        check(tuple(loss_names()), "loss.", TrainConfigError, name=self.name)
        accepted = loss_options(self.name)
        for key, value in self.options().items():
            if key not in accepted:
                takes = ", ".join(f"loss.{k}" for k in accepted) or "no options"
                raise TrainConfigError(
                    f"loss.{key}={value!r} does not apply to loss.name={self.name!r} ({takes})"
                )
        positive = ("hopfield_beta", "distill_temperature")
        _check(self, "loss", fraction=("label_smoothing",), positive=positive)
        if (self.name == "distill") != bool(self.teacher):
            raise TrainConfigError(
                f"loss.teacher={self.teacher!r}: loss.name='distill' needs one; other losses none"
            )

    def options(self) -> dict[str, Any]:
        """The loss options this section sets (the fields whose default is None), as keyword
        arguments of :func:`create_loss`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.default is None and getattr(self, f.name) is not None}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class OptimSection:
    lr: float = 5e-4
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0  # 0: off
    accum_steps: int = 1
    fused: bool = True  # one fused AdamW kernel per parameter where torch has one

    def __post_init__(self) -> None:
        _check(
            self,
            "optim",
            positive=("lr", "eps", "accum_steps"),
            non_negative=("weight_decay", "warmup_steps", "grad_clip"),
            fraction=("beta1", "beta2"),
        )
        check(("cosine", "constant"), "optim.", TrainConfigError, schedule=self.schedule)


@dataclass(frozen=True, kw_only=True)
class RunSection:
    out_dir: str = "runs/train"
    steps: int = 1000
    seed: int = 0
    precision: str = "auto"  # fp32 | amp_bf16 | amp_fp16 (loss-scaled) | auto: bf16 if native
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 2
    eval_every: int = 0  # 0: off; evaluate every N steps (eval_dataset, or shapes views)
    eval_dataset: str = ""  # zero-shot on any dataset `clipforge eval` reads; "": shapes views
    tensorboard: bool = False
    progress: bool = True
    processes: int = 1  # local data-parallel processes started by fit itself (not torchrun)
    overwrite: bool = False  # replace another run found in out_dir (else that is an error)

    def __post_init__(self) -> None:
        positive = ("steps", "log_every", "keep_last", "processes")
        _check(self, "run", positive=positive, non_negative=("checkpoint_every", "eval_every"))
        check_precision(self.precision, "run.precision", TRAIN_PRECISIONS, TrainConfigError)
        check(("auto", "cpu", "cuda"), "run.", TrainConfigError, device=self.device)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TypedConfig):
    """A training run, one section per concern; loaded and overridden as every command's
    config is (:class:`clipforge.typed_config.TypedConfig`)."""

    error: ClassVar[type[Exception]] = TrainConfigError

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)


def load_train_config(path: str | Path | None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML recipe (or the defaults when ``path`` is None) and apply overrides."""
    return TrainConfig.load(path, overrides)
