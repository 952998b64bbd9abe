"""A fingerprint of a model's weights, for caches and collections that must not mix models."""

from __future__ import annotations

import hashlib

import torch


def weights_digest(net: torch.nn.Module) -> str:
    """A hash of every parameter and buffer (name, dtype, shape, bytes): tells two models
    apart even when they share a name, e.g. two random initialisations."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(net.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
