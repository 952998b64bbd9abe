"""Contrastive losses: plain functions of L2-normalised features.

Every loss takes ``(image_features, text_features, logit_scale, logit_bias=None)`` with
features (B, D), row i of each forming a pair, and ``logit_scale`` already exponentiated (the
model's ``forward`` returns ``logit_scale.exp()``); it returns a scalar tensor.

``clip_loss``, ``siglip_loss``, ``infoloob_loss``, ``cloob_loss`` and ``distill_loss`` score one
batch in one process. Their ``*_distributed`` twins, and the functions :func:`create_loss`
returns, are called by every rank with its local batch and score the global batch; in one
process they equal the plain functions.

Normalisation under torch.distributed. Let L be the plain loss of the concatenated global batch
(world_size * B pairs). The distributed losses return L on every rank (CLIP with
``local_loss=False``, InfoLOOB, CLOOB, distillation) or a per-rank share whose mean over ranks
is L (CLIP with ``local_loss=True``, SigLIP): the per-rank loss is the mean over that rank's
rows. Gradients are what DDP needs: the gradient reaching a rank's features is the gradient of
the *sum* of all ranks' losses w.r.t. those rows, i.e. ``world_size`` times dL/d(rows), because
DDP then averages parameter gradients over ranks, which brings the result back to exactly
dL/d(parameters). Parameters used by every rank directly (``logit_scale``, ``logit_bias``) get
the same average. All ranks must pass batches of one size.
"""

from ._common import gather_features
from .clip import (
    CLIP_INIT_LOGIT_SCALE,
    CLIP_MAX_LOGIT_SCALE,
    clamp_logit_scale_,
    clip_loss,
    clip_loss_distributed,
)
from .cloob import (
    CLOOB_HOPFIELD_BETA,
    CLOOB_INV_TAU,
    cloob_loss,
    cloob_loss_distributed,
    hopfield_retrieve,
    infoloob_loss,
    infoloob_loss_distributed,
)
from .distill import distill_loss, distill_loss_distributed
from .factory import LossFn, create_loss, loss_names, loss_options
from .siglip import (
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    siglip_loss,
    siglip_loss_distributed,
)

__all__ = [
    "CLIP_INIT_LOGIT_SCALE",
    "CLIP_MAX_LOGIT_SCALE",
    "CLOOB_HOPFIELD_BETA",
    "CLOOB_INV_TAU",
    "SIGLIP_INIT_LOGIT_BIAS",
    "SIGLIP_INIT_LOGIT_SCALE",
    "LossFn",
    "clamp_logit_scale_",
    "clip_loss",
    "clip_loss_distributed",
    "cloob_loss",
    "cloob_loss_distributed",
    "create_loss",
    "distill_loss",
    "distill_loss_distributed",
    "gather_features",
    "hopfield_retrieve",
    "infoloob_loss",
    "infoloob_loss_distributed",
    "loss_names",
    "loss_options",
    "siglip_loss",
    "siglip_loss_distributed",
]
