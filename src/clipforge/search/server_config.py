"""The search server's configuration: which indices to serve and the limits on each request.

A YAML or JSON file, or the same structure as a dict (``docs/search.md`` shows one): ``indices``
maps each name to an :class:`IndexSpec`, then come the limits.

Relative paths in a file are relative to the file's directory, so a config travels with the
indices beside it. Like every clipforge config it is strict: an unknown key or a value of the
wrong type fails with an error naming the key, because a misspelt limit silently left at its
default is a security hole in a server.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from clipforge.typed_config import TypedConfig, build_dataclass, check, read_recipe

DEFAULT_K = 20  # results when a query does not say (at most max_k)
_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ServerConfigError(ValueError):
    """A search-server config that is malformed; the message names the key."""


@dataclass(frozen=True)
class IndexSpec:
    """One served index: its directory, and optional overrides of what it records."""

    index: str
    embeddings: str | None = None
    model: str | None = None
    pretrained: str | None = None


@dataclass(frozen=True)
class ServerConfig(TypedConfig):
    """Everything :func:`clipforge.search.server.create_app` needs; see the module docstring.

    ``dedup_threshold`` is the cosine similarity at or above which a result counts as a
    near-duplicate of a higher-ranked one when a query asks for ``dedup``. ``max_text_chars``
    bounds the text the tokenizer is asked to read (a longer text is cut to the model's context
    anyway, with a warning, but tokenizing megabytes first would let one request hold a core).
    """

    indices: dict[str, IndexSpec]
    max_upload_mb: float = 8.0
    max_k: int = 1000
    default_k: int | None = None  # results when a query does not say; None: min(DEFAULT_K, max_k)
    dedup_threshold: float = 0.98
    max_text_chars: int = 20_000
    device: str = "cpu"

    error: ClassVar[type[Exception]] = ServerConfigError

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, source: str = "config", base: Path | None = None
    ) -> ServerConfig:
        """Build from plain data; relative paths are relative to ``base`` (a config file's
        directory), by default the working directory."""
        data = dict(data)
        indices = data.get("indices")
        if not isinstance(indices, dict) or not indices:
            raise ServerConfigError(
                f"{source}.indices must be a non-empty mapping of name -> {{index: DIR, ...}}, "
                f"got {indices!r}"
            )
        data["indices"] = {
            name: _index_spec(name, spec, base or Path.cwd(), f"{source}.indices.{name}")
            for name, spec in indices.items()
        }
        config = build_dataclass(cls, data, source, ServerConfigError)
        limits = ("max_upload_mb", "max_k", "max_text_chars")
        values = {name: getattr(config, name) for name in limits}
        check("positive", f"{source}.", ServerConfigError, **values)
        if config.default_k is not None and not 1 <= config.default_k <= config.max_k:
            raise ServerConfigError(
                f"{source}.default_k={config.default_k!r} must be in [1, max_k={config.max_k}]"
            )
        if not 0 < config.dedup_threshold <= 1:
            raise ServerConfigError(
                f"{source}.dedup_threshold={config.dedup_threshold!r} must be in (0, 1]"
            )
        return config

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def resolved_default_k(self) -> int:
        """The number of results of a query that does not say: ``default_k`` when set. Derived
        here rather than stored, so that ``--set max_k=5`` alone lowers it too."""
        return min(DEFAULT_K, self.max_k) if self.default_k is None else self.default_k


def load_server_config(source: str | os.PathLike | dict[str, Any] | ServerConfig) -> ServerConfig:
    """Read and validate a config from a YAML/JSON file, a dict, or pass a ServerConfig through."""
    if isinstance(source, ServerConfig):
        return source
    if isinstance(source, dict):
        return ServerConfig.from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"server config {path} does not exist")
    return ServerConfig.from_dict(
        read_recipe(path, ServerConfigError), source=str(path), base=path.parent
    )


def _index_spec(name: Any, spec: Any, base: Path, where: str) -> IndexSpec:
    if not isinstance(name, str) or not _INDEX_NAME.match(name):
        raise ServerConfigError(
            f"{where}: index name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (it appears in URLs and metric labels)"
        )
    if isinstance(spec, str | os.PathLike):
        spec = {"index": os.fspath(spec)}
    if not isinstance(spec, dict):
        raise ServerConfigError(f"{where} must be a mapping with an 'index' key, got {spec!r}")
    if "index" not in spec:
        raise ServerConfigError(f"{where}.index is missing: the index directory to serve")
    built = build_dataclass(IndexSpec, spec, where, ServerConfigError)
    resolved = {  # base / an absolute path is that path
        key: str((base / Path(value).expanduser()).resolve())
        for key in ("index", "embeddings")
        if (value := getattr(built, key)) is not None
    }
    return dataclasses.replace(built, **resolved)
