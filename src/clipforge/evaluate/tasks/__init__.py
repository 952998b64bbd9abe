"""One module per evaluation task; each exposes ``run_<task>(config, encoder) -> TaskOutput``."""

from collections.abc import Callable

from ..config import EvalConfig
from ..features import CachedEncoder
from .common import TaskOutput
from .fewshot import run_fewshot, run_linear_probe
from .retrieval import run_retrieval
from .robustness import run_robustness
from .zeroshot import run_zeroshot

TASK_RUNNERS: dict[str, Callable[[EvalConfig, CachedEncoder], TaskOutput]] = {
    "zeroshot": run_zeroshot,
    "retrieval": run_retrieval,
    "linear-probe": run_linear_probe,
    "fewshot": run_fewshot,
    "robustness": run_robustness,
}

__all__ = ["TASK_RUNNERS", "TaskOutput"]
