"""Evaluation: metrics as CLIP_benchmark defines them, tasks, results and reports.

``run_eval(EvalConfig(...))`` runs a task as ``clipforge eval`` does (docs/evaluation.md);
tasks are in :mod:`.tasks`, metrics in :mod:`.metrics`, the feature cache in :mod:`.features`;
results are JSON documents (:mod:`.results`) that :func:`write_report` renders.
"""

from .config import EvalConfig
from .features import CachedEncoder
from .report import write_report
from .results import build_result, read_result, write_result
from .run import run_eval
from .splits import SplitSpec, parse_split
from .tasks.common import TaskOutput

__all__ = [
    "CachedEncoder",
    "EvalConfig",
    "SplitSpec",
    "TaskOutput",
    "build_result",
    "parse_split",
    "read_result",
    "run_eval",
    "write_report",
    "write_result",
]
