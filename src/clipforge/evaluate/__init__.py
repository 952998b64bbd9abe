"""Evaluation: metrics as CLIP_benchmark defines them, tasks, results and reports.

Run a task from Python as the ``clipforge eval`` command does::

    from clipforge.evaluate import EvalConfig, run_eval

    result = run_eval(EvalConfig(task="zeroshot", dataset="shapes/shape", model="shapes-rn",
                                 pretrained="runs/demo/checkpoints/step_140.safetensors"))
    result["metrics"]["acc1"]

Tasks: ``zeroshot``, ``retrieval``, ``linear-probe``, ``fewshot``, ``robustness`` (see
:mod:`clipforge.evaluate.tasks`); the metrics are in :mod:`clipforge.evaluate.metrics`;
features are cached on disk (:mod:`.cache`); results are JSON documents (:mod:`.results`) that
:func:`write_report` renders as markdown, HTML and plots.
"""

from .config import EvalConfig
from .features import CachedEncoder
from .report import write_report
from .results import build_result, read_result, write_result
from .run import run_eval
from .splits import SampleRange, SplitSpec, parse_split
from .tasks import TaskOutput

__all__ = [
    "CachedEncoder",
    "EvalConfig",
    "SampleRange",
    "SplitSpec",
    "TaskOutput",
    "build_result",
    "parse_split",
    "read_result",
    "run_eval",
    "write_report",
    "write_result",
]
