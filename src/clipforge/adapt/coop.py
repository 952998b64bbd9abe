"""CoOp (Zhou et al., IJCV 2022): learn the prompt's context words, keep CLIP frozen.

The prompt of class ``c`` is ``[SOT] v_1 .. v_n {name_c} . [EOT]`` where the ``v_j`` (width W)
are learned vectors in place of the token embeddings of words such as "a photo of a". They are
shared by all classes (unified context) or one set per class (class-specific), and the class
name goes at the end, the middle or the front. Only the vectors train: cross-entropy of
``logit_scale · f t_c^T`` over the few-shot image features ``f``, with ``t_c`` the normalised
text features of the prompts. The image tower is frozen and unaugmented, so features can be
computed once. Defaults follow the paper: 16 vectors, SGD (lr 2e-3, momentum 0.9, weight
decay 5e-4), cosine schedule, batch 32 (the paper's one-epoch warm-up is left out).

A :class:`PromptLearner` holds only its context (one parameter) and its prompts' token ids; the
frozen model is passed to each call, so its file holds kilobytes, not the model. The file
records the class names, settings, model config and a fingerprint of the text tower's weights,
so loading it for another model is an error, not a silently wrong head. The learned vectors
enter the tower after the embedding lookup, through ``CLIP.encode_text_embeddings``: ids
embedded here give exactly the features ``encode_text`` gives on those ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import CLIP
from ..tokenizer import EOT_TOKEN_ID, PAD_TOKEN_ID, SOT_TOKEN_ID, Tokenizer
from .common import (
    accuracy,
    check_features,
    check_splits,
    frozen,
    load_head,
    minibatch_epochs,
    save_head,
)

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 16
POSITIONS = ("end", "middle", "front")
_CTX = -1  # placeholder id for a context slot while a prompt is assembled
PROMPT_KEYS = ("n_ctx", "ctx_init", "class_specific", "position")
META_KEYS = ("classnames", *PROMPT_KEYS, "model_config", "model_fingerprint", "hparams")


class PromptLearner(nn.Module):
    """Learned context vectors (n_ctx, W), or (C, n_ctx, W) if class-specific, for a model.

    ``ctx_init`` (e.g. ``"a photo of a"``) starts the context at those words' token
    embeddings and sets ``n_ctx`` to their number; otherwise vectors start at N(0, 0.02²).
    """

    def __init__(
        self,
        model: CLIP,
        tokenizer: Tokenizer,
        classnames: Sequence[str],
        *,
        n_ctx: int | None = None,
        ctx_init: str | None = None,
        class_specific: bool = False,
        position: str = "end",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not classnames:
            raise ValueError("a prompt learner needs at least one class name")
        width = model.token_embedding.embedding_dim
        weight = model.token_embedding.weight
        if ctx_init is not None:
            init_ids = tokenizer.encode(ctx_init)
            if not init_ids or (n_ctx is not None and n_ctx != len(init_ids)):
                raise ValueError(
                    f"ctx_init {ctx_init!r} has {len(init_ids)} tokens but n_ctx={n_ctx}"
                )
            ctx = weight[init_ids].detach().float().clone()  # (n_ctx, W)
        else:
            n_ctx = DEFAULT_N_CTX if n_ctx is None else n_ctx
            if n_ctx < 1:
                raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
            generator = torch.Generator().manual_seed(seed)
            ctx = (torch.randn(n_ctx, width, generator=generator) * 0.02).to(weight.device)
        if class_specific:
            ctx = ctx.expand(len(classnames), -1, -1).clone()  # (C, n_ctx, W)
        self.ctx = nn.Parameter(ctx)
        ids, slots, eot = build_prompt_ids(
            tokenizer, classnames, ctx.shape[-2], position, model.context_length
        )
        self.register_buffer("token_ids", ids.to(weight.device), persistent=False)  # (C, L)
        self.register_buffer("ctx_slots", slots.to(weight.device), persistent=False)  # (C, n)
        self.register_buffer("eot_index", eot.to(weight.device), persistent=False)  # (C,)
        self.classnames = list(classnames)
        self.n_ctx = ctx.shape[-2]
        self.ctx_init = ctx_init
        self.class_specific = class_specific
        self.position = position
        self.model_config = model.config.to_dict()
        self.model_fingerprint = text_tower_fingerprint(model)
        self.hparams: dict[str, Any] = {}  # how it was trained; saved with it

    @property
    def settings(self) -> dict[str, Any]:
        """How the prompts are built (with ``classnames``): recorded in hparams and files."""
        return {key: getattr(self, key) for key in PROMPT_KEYS}

    def prompt_embeddings(self, model: CLIP) -> torch.Tensor:
        """Token embeddings (C, L, W) of the prompts with the context vectors in their slots."""
        x = model.token_embedding(self.token_ids)  # (C, L, W)
        ctx = self.ctx if self.class_specific else self.ctx.expand(len(self.classnames), -1, -1)
        index = self.ctx_slots[..., None].expand(-1, -1, x.shape[-1])  # (C, n_ctx, W)
        return x.scatter(1, index, ctx.to(x.dtype))

    def class_embeddings(self, model: CLIP) -> torch.Tensor:
        """Normalised class embeddings (C, D): the zero-shot-style head of the learned prompts."""
        features = encode_prompt_embeddings(model, self.prompt_embeddings(model), self.eot_index)
        return F.normalize(features.float(), dim=-1)

    def save(self, path: str | os.PathLike) -> None:
        """Write the context and what rebuilds the prompts (one safetensors file)."""
        meta = {key: getattr(self, key) for key in META_KEYS}
        save_head(path, "coop", {"ctx": self.ctx}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, model: CLIP, tokenizer: Tokenizer) -> PromptLearner:
        """Read a learner saved by :meth:`save` for ``model``; another model is an error."""
        tensors, meta = load_head(path, "coop", ("ctx",), META_KEYS)
        config = json.loads(json.dumps(model.config.to_dict()))
        if meta["model_config"] != config:
            changed = sorted(k for k in config if config[k] != meta["model_config"].get(k))
            raise ValueError(f"{path}: trained for another model config (differs in {changed})")
        if meta["model_fingerprint"] != text_tower_fingerprint(model):
            raise ValueError(
                f"{path}: trained for other text-tower weights (fingerprint "
                f"{meta['model_fingerprint']} vs {text_tower_fingerprint(model)})"
            )
        learner = cls(model, tokenizer, meta["classnames"], **{k: meta[k] for k in PROMPT_KEYS})
        if tensors["ctx"].shape != learner.ctx.shape:
            raise ValueError(f"{path}: ctx {tuple(tensors['ctx'].shape)} does not match metadata")
        with torch.no_grad():
            learner.ctx.copy_(tensors["ctx"])
        learner.hparams = meta["hparams"]
        return learner


def encode_prompt_embeddings(
    model: CLIP, embeddings: torch.Tensor, eot_index: torch.Tensor
) -> torch.Tensor:
    """Unnormalised text features (B, D) of token embeddings (B, L, W) pooled at ``eot_index``."""
    batch, length, width = embeddings.shape
    if length > model.context_length or width != model.token_embedding.embedding_dim:
        raise ValueError(
            f"prompt embeddings {tuple(embeddings.shape)} do not fit the text tower "
            f"(context length {model.context_length}, width {model.token_embedding.embedding_dim})"
        )
    if eot_index.shape != (batch,) or int(eot_index.max()) >= length:
        raise ValueError(f"eot_index {tuple(eot_index.shape)} must be (B,) positions < {length}")
    return model.encode_text_embeddings(embeddings, eot_index)


def build_prompt_ids(
    tokenizer: Tokenizer,
    classnames: Sequence[str],
    n_ctx: int,
    position: str,
    context_length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids (C, L) with context slots, their positions (C, n_ctx), end-of-text index (C,).

    Rows are ``[SOT] ctx.. name . [EOT]`` (``end``), ``[SOT] ctx[:n/2] name ctx[n/2:] .``
    (``middle``) or ``[SOT] name ctx.. .`` (``front``), padded; slots hold the pad id until
    the context vectors are scattered in. For ``end`` the tail is tokenised as the one word
    ``"{name}."``, exactly as in the sentence ``"... {name}."``.
    """
    if position not in POSITIONS:
        raise ValueError(f"unknown class-token position {position!r}; choose from {POSITIONS}")
    ids = torch.full((len(classnames), context_length), PAD_TOKEN_ID, dtype=torch.int64)
    slots = torch.zeros(len(classnames), n_ctx, dtype=torch.int64)
    eot = torch.zeros(len(classnames), dtype=torch.int64)
    for c, name in enumerate(classnames):
        name_ids = tokenizer.encode(name)
        if not name_ids:
            raise ValueError(f"class {c} has an empty name {name!r}")
        if position == "end":
            body = [_CTX] * n_ctx + tokenizer.encode(f"{name}.")
        elif position == "front":
            body = name_ids + [_CTX] * n_ctx + tokenizer.encode(".")
        else:
            half = n_ctx // 2
            body = [_CTX] * half + name_ids + [_CTX] * (n_ctx - half) + tokenizer.encode(".")
        row = [SOT_TOKEN_ID, *body, EOT_TOKEN_ID]
        if len(row) > context_length:
            raise ValueError(
                f"class {c} ({name!r}): the prompt needs {len(row)} tokens with n_ctx={n_ctx}, "
                f"more than the context length {context_length}"
            )
        row_t = torch.tensor(row)
        slots[c] = torch.nonzero(row_t == _CTX).flatten()
        ids[c, : len(row)] = torch.where(row_t == _CTX, PAD_TOKEN_ID, row_t)
        eot[c] = len(row) - 1
    return ids, slots, eot


def text_tower_fingerprint(model: CLIP) -> str:
    """A short hash of the text tower's small tensors, to tell apart checkpoints of one config.

    A learned context is only meaningful for the weights it was trained with; the hash of the
    positional embedding, final norm and projection changes with any other checkpoint.
    """
    digest = hashlib.sha256()
    for tensor in (
        model.positional_embedding,
        model.ln_final.weight,
        model.ln_final.bias,
        model.text_projection,
    ):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class CoOpHead:
    """Trained prompts as a classifier: ``logits = logit_scale · f W^T``, ``W`` (C, D)."""

    learner: PromptLearner
    weights: torch.Tensor  # (C, D), normalised class embeddings
    logit_scale: float

    @property
    def hparams(self) -> dict[str, Any]:
        """The learner's record (settings, loss history): saved with it, shown in results."""
        return self.learner.hparams

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) for features (N, D)."""
        check_features(features, "features", self.weights.shape[1])
        return self.logit_scale * F.normalize(features.float(), dim=-1) @ self.weights.T


def fit_coop(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    *,
    model: CLIP,
    tokenizer: Tokenizer,
    classnames: Sequence[str],
    epochs: int = 50,
    lr: float = 2e-3,
    batch_size: int = 32,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    **prompt_options: Any,
) -> CoOpHead:
    """Train a prompt learner's context on image features (N, D), the model frozen.

    ``prompt_options`` (``n_ctx``, ``ctx_init``, ``class_specific``, ``position``) go to
    :class:`PromptLearner`, which checks them. CoOp has no hyperparameter search: every
    setting, the per-epoch train loss and the validation accuracy go to ``hparams``.
    """
    dim = model.text_projection.shape[1]
    _, has_val = check_splits(
        train_features, train_labels, val_features, val_labels, num_classes=len(classnames), dim=dim
    )
    learner = PromptLearner(model, tokenizer, classnames, seed=seed, **prompt_options)
    scale = float(model.logit_scale.detach().exp())
    x = F.normalize(train_features.float(), dim=-1).to(learner.ctx.device)  # (N, D)
    y = train_labels.to(learner.ctx.device)
    optimizer = torch.optim.SGD(
        learner.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        logits = scale * x[batch] @ learner.class_embeddings(model).T  # (B, C)
        return F.cross_entropy(logits, y[batch])

    with frozen(model):  # SGD on the context alone
        epochs_run = minibatch_epochs(
            optimizer, batch_loss, x.shape[0], epochs=epochs, batch_size=batch_size, seed=seed
        )
        history = [
            {"epoch": epoch, "train_loss": sum(losses) / len(losses)}
            for epoch, losses in enumerate(epochs_run, start=1)
        ]
    log.info("coop: train loss %.4f -> %.4f", history[0]["train_loss"], history[-1]["train_loss"])
    head = coop_head(learner, model)
    schedule = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "momentum": momentum}
    schedule.update(weight_decay=weight_decay, seed=seed)
    learner.hparams = {"method": "coop", **learner.settings, **schedule}
    learner.hparams.update(logit_scale=head.logit_scale, history=history)
    if has_val:
        head.hparams["val_accuracy"] = accuracy(head.logits(val_features), val_labels)
    return head


def coop_head(learner: PromptLearner, model: CLIP) -> CoOpHead:
    """The classifier of a (trained or loaded) learner, with the model's logit scale."""
    with torch.no_grad():
        weights = learner.class_embeddings(model).cpu()  # (C, D)
    return CoOpHead(learner, weights, float(model.logit_scale.detach().exp()))
