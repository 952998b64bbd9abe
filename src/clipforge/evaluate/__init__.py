"""Evaluation: metrics as CLIP_benchmark defines them, tasks, results and reports.

Run a task from Python as the ``clipforge eval`` command does::

    from clipforge.evaluate import EvalConfig, run_eval

    result = run_eval(EvalConfig(task="zeroshot", dataset="shapes/shape", model="shapes-rn",
                                 pretrained="runs/demo/checkpoints/step_140.safetensors"))
    result["metrics"]["acc1"]

Tasks: ``zeroshot``, ``retrieval``, ``linear-probe``, ``fewshot``, ``robustness`` (see
:mod:`clipforge.evaluate.tasks`); features are cached on disk (:mod:`.cache`); results are
JSON documents (:mod:`.results`) that :func:`write_report` renders as markdown, HTML and plots.
"""

from .cache import FeatureCache, default_cache_dir, model_identity
from .config import DEFAULT_SHOTS, METHODS, TASKS, EvalConfig
from .features import CachedEncoder, EncodedSet
from .metrics import *  # noqa: F403  (the metrics' own __all__)
from .metrics import __all__ as _metrics_all
from .report import write_report
from .results import SCHEMA_VERSION, build_result, read_result, write_result
from .run import build_encoder, run_eval
from .splits import SHAPES_SPLITS, SampleRange, SplitSpec, parse_split
from .tasks import TaskOutput

__all__ = [
    *_metrics_all,
    "DEFAULT_SHOTS",
    "METHODS",
    "SCHEMA_VERSION",
    "SHAPES_SPLITS",
    "TASKS",
    "CachedEncoder",
    "EncodedSet",
    "EvalConfig",
    "FeatureCache",
    "SampleRange",
    "SplitSpec",
    "TaskOutput",
    "build_encoder",
    "build_result",
    "default_cache_dir",
    "model_identity",
    "parse_split",
    "read_result",
    "run_eval",
    "write_report",
    "write_result",
]
