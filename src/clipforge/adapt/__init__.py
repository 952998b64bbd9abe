"""Few-shot adaptation of a frozen CLIP: linear probe, Tip-Adapter, GDA, CoOp, WiSE-FT.

Every method fits on frozen features (train split, plus a validation split for its search)
and returns a head with ``logits(features) -> (N, C)`` and ``hparams`` for the results file.
"""

from .common import FewShotHead, accuracy
from .coop import (
    CoOpHead,
    PromptLearner,
    coop_head,
    encode_prompt_embeddings,
    fit_coop,
)
from .gda import GDAHead, fit_gda, gda_classifier, ledoit_wolf_shrinkage
from .linear_probe import LinearProbe, fit_linear_probe, fit_logistic, logistic_objective
from .shots import sample_few_shot
from .tip_adapter import TipAdapter, fit_tip_adapter, tip_logits
from .wise_ft import evaluate_path, interpolate_weights

__all__ = [
    "CoOpHead",
    "FewShotHead",
    "GDAHead",
    "LinearProbe",
    "PromptLearner",
    "TipAdapter",
    "accuracy",
    "coop_head",
    "encode_prompt_embeddings",
    "evaluate_path",
    "fit_coop",
    "fit_gda",
    "fit_linear_probe",
    "fit_logistic",
    "fit_tip_adapter",
    "gda_classifier",
    "interpolate_weights",
    "ledoit_wolf_shrinkage",
    "logistic_objective",
    "sample_few_shot",
    "tip_logits",
]
