"""``hf-hub:org/name[@revision]``: fetch a CLIP repository, or say how to do without the network.

Two repository layouts hold CLIP weights on the hub: OpenCLIP's (``open_clip_config.json``) and
transformers' (``config.json``). Both are tried, in that order, and the snapshot directory is
returned for :func:`~clipforge.models.formats.read_checkpoint` to read like any local directory.
"""

from __future__ import annotations

from pathlib import Path

HF_HUB_PREFIX = "hf-hub:"
# (config file, weight files in order of preference) of each directory layout read, in the
# order tried; a hub repository is fetched in the same layouts.
DIRECTORY_LAYOUTS = [
    ("open_clip_config.json", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]),
    ("config.json", ["model.safetensors", "pytorch_model.bin"]),
]


class PretrainedNotAvailableError(RuntimeError):
    """Pretrained weights could not be fetched (offline, or no such repository)."""


def download_from_hub(name: str) -> Path:
    """Fetch an OpenCLIP or transformers CLIP repository; return its local snapshot directory.

    ``name`` is what follows ``hf-hub:``. Offline, or without the weights in the local cache,
    the error says how to pass a local file instead, since that is the only way forward.
    """
    repo, _, revision = name.partition("@")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise PretrainedNotAvailableError(
            f"'hf-hub:{name}' needs huggingface_hub: pip install 'clipforge[hub]'"
        ) from None

    def fetch(filename: str) -> str | None:
        """The cached path of ``filename``, or None when the repository lacks it."""
        try:
            return hf_hub_download(repo, filename, revision=revision or None)
        except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: offline, not absent
            raise
        except EntryNotFoundError:
            return None

    try:
        for config_name, weight_names in DIRECTORY_LAYOUTS:
            config = fetch(config_name)
            if config is not None and any(fetch(w) is not None for w in weight_names):
                return Path(config).parent
    except RepositoryNotFoundError:
        raise PretrainedNotAvailableError(f"no repository 'hf-hub:{name}' on the hub") from None
    except (OSError, ConnectionError) as err:
        raise PretrainedNotAvailableError(
            f"cannot fetch 'hf-hub:{name}' (no network or not in the local cache); download its "
            "files elsewhere and pass the local file or directory instead, e.g. "
            "create_model('ViT-B-32', pretrained='/path/to/open_clip_model.safetensors') "
            f"[{type(err).__name__}]"
        ) from None
    raise PretrainedNotAvailableError(
        f"'hf-hub:{name}' holds no CLIP weights in a layout clipforge reads "
        "(open_clip_config.json + open_clip_model.safetensors, or config.json + model.safetensors)"
    )
