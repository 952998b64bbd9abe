"""``hf-hub:org/name[@revision]``: fetch a CLIP repository, or say how to do without the network.

Two repository layouts hold CLIP weights on the hub: OpenCLIP's (``open_clip_config.json``) and
transformers' (``config.json``). Both are tried, in that order, and the snapshot directory is
returned for :func:`~clipforge.models.formats.read_checkpoint` to read like any local directory.
"""

from __future__ import annotations

import socket
import urllib.parse
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

    ``name`` is what follows ``hf-hub:``. The local cache is read first; the network is tried
    only when the hub answers at all, so an offline machine fails at once (not after a minute
    of retries) with the file to download elsewhere and how to pass it instead.
    """
    repo, _, revision = name.partition("@")
    try:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise PretrainedNotAvailableError(
            f"'hf-hub:{name}' needs huggingface_hub: pip install 'clipforge[hub]'"
        ) from None

    def snapshot(local_only: bool) -> Path | None:
        """The snapshot directory of the first layout whose files the repository has."""

        def fetch(filename: str) -> str | None:
            try:
                return hf_hub_download(
                    repo, filename, revision=revision or None, local_files_only=local_only
                )
            except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: not cached
                raise
            except EntryNotFoundError:
                return None

        for config_name, weight_names in DIRECTORY_LAYOUTS:
            config = fetch(config_name)
            if config is not None and any(fetch(w) is not None for w in weight_names):
                return Path(config).parent
        return None

    try:
        try:
            found = snapshot(local_only=True)
        except LocalEntryNotFoundError:
            if constants.HF_HUB_OFFLINE or not _reachable(constants.ENDPOINT):
                raise
            found = snapshot(local_only=False)
    except RepositoryNotFoundError:
        raise PretrainedNotAvailableError(f"no repository 'hf-hub:{name}' on the hub") from None
    except (OSError, ConnectionError) as err:
        weights = f"{constants.ENDPOINT}/{repo}/resolve/{revision or 'main'}/{_WEIGHTS_FILE}"
        raise PretrainedNotAvailableError(
            f"cannot fetch 'hf-hub:{name}' ({constants.ENDPOINT} cannot be reached and it is "
            f"not in the local cache [{type(err).__name__}]); download {weights} elsewhere and "
            f"pass the local file instead: --pretrained /path/to/{_WEIGHTS_FILE}"
        ) from None
    if found is None:
        raise PretrainedNotAvailableError(
            f"'hf-hub:{name}' holds no CLIP weights in a layout clipforge reads "
            "(open_clip_config.json + open_clip_model.safetensors, or config.json + "
            "model.safetensors)"
        )
    return found


# The weights file of OpenCLIP's hub layout, the one named when a download must be done by hand.
_WEIGHTS_FILE = DIRECTORY_LAYOUTS[0][1][0]


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether the hub's host accepts a connection: without a network, name resolution fails
    at once, while the hub client would retry each file for half a minute."""
    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True
