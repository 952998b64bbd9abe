"""The on-disk layout of an embedded collection, shared by ``embed``, ``index`` and ``serve``.

::

    EMB_DIR/
      embed_info.json                    written first: model, pretrained, dim, inputs,
                                         image_roots (absolute), clipforge_version, created
      img_emb/img_emb_00000.npy          float16 (n, D), L2-normalised
      text_emb/text_emb_00000.npy        float16 (n, D), present when the collection has captions;
                                         a row of zeros where that sample has none
      metadata/metadata_00000.parquet    n rows: key (str), path (image file, or the tar shard for
                                         webdataset input), member (tar member name or null),
                                         caption (str or null), json (the sample's JSON fields as
                                         text, or null)
      stats/stats_00000.json             counts, skipped keys with reasons, seconds; written LAST

Row i of every file of partition N describes the same sample. A partition is complete exactly
when its stats file exists, because every file is written atomically and the stats file goes
last; a restarted run redoes any partition without one. Global ids number the rows of the
complete partitions in partition order, so ``id = offset(N) + row``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

INFO_FILE = "embed_info.json"
IMG_DIR = "img_emb"
TEXT_DIR = "text_emb"
META_DIR = "metadata"
STATS_DIR = "stats"
METADATA_TYPES = dict.fromkeys(("key", "path", "member", "caption", "json"), "string")

_STATS_FILE = re.compile(r"stats_(\d{5,})\.json$")


def _name(kind: str, partition: int, suffix: str) -> str:
    return f"{kind}_{partition:05d}.{suffix}"


def emb_path(root: str | os.PathLike, partition: int, modality: str) -> Path:
    """The image embeddings of a partition, or its caption (``"text"``) embeddings."""
    kind = IMG_DIR if modality == "image" else TEXT_DIR  # the folder names the files too
    return Path(root) / kind / _name(kind, partition, "npy")


def metadata_path(root: str | os.PathLike, partition: int) -> Path:
    return Path(root) / META_DIR / _name("metadata", partition, "parquet")


def stats_path(root: str | os.PathLike, partition: int) -> Path:
    return Path(root) / STATS_DIR / _name("stats", partition, "json")


def complete_partitions(root: str | os.PathLike) -> list[int]:
    """Numbers of the partitions whose stats file exists (so all their files do), ascending."""
    stats_dir = Path(root) / STATS_DIR
    if not stats_dir.is_dir():
        return []
    found = (_STATS_FILE.match(p.name) for p in stats_dir.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def read_info(root: str | os.PathLike) -> dict[str, Any]:
    """The collection's ``embed_info.json``; a clear error when ``root`` is not a collection."""
    missing = f"{root} is not an embedded collection: {INFO_FILE} is missing "
    return read_json(Path(root) / INFO_FILE, missing + "(create one with `clipforge embed`)")


def read_json(path: Path, missing: str) -> Any:
    """The JSON document at ``path`` (an embed or index info file); FileNotFoundError(missing)
    when there is none, a ValueError naming the path when it does not parse."""
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
