"""Text features from token *embeddings*: the path prompt learning needs through the text tower.

``CLIP.encode_text`` takes token ids. Prompt learning replaces some token embeddings with
learned vectors, so it enters the tower one step later, through
``CLIP.encode_text_embeddings`` (the part of ``encode_text`` after its embedding lookup): ids
embedded here give exactly the features ``encode_text`` gives on those ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from ..models import CLIP
from ..tokenizer import EOT_TOKEN_ID, PAD_TOKEN_ID, SOT_TOKEN_ID, Tokenizer

POSITIONS = ("end", "middle", "front")
_CTX = -1  # placeholder id for a context slot while a prompt is assembled


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
