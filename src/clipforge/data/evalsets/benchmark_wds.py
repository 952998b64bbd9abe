"""Evaluation sets in CLIP_benchmark's webdataset layout (the ``clip-benchmark/wds_*`` sets).

The layout::

    root/
        classnames.txt                          one class name per line, in label order
        zeroshot_classification_templates.txt   one template per line, "{c}" for the name
        dataset_type.txt                        optional: classification | multilabel | retrieval
        test/                                   one folder per split
            nshards.txt                         the number of shards, n
            0.tar  1.tar  ...  {n-1}.tar

Each sample is an image member (``.webp``, ``.png``, ``.jpg`` or ``.jpeg``) plus ``.cls`` (the
class index as text), ``.npy`` (multi-label: a ``(C,)`` 0/1 array saved with ``np.save``) or
``.txt`` (retrieval: one caption per line). A missing ``dataset_type.txt`` means classification.

The shards are indexed once (member offsets, read without decompressing anything) and the small
label/caption members read then, so the set is map-style: ``set[i]`` seeks straight to image
``i``. This needs uncompressed tars, which is what the layout uses.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipforge.data.conventions import image_member
from clipforge.data.evalsets.base import (
    ClassificationSet,
    ImageTransform,
    MemberRef,
    RetrievalSet,
    read_lines,
)
from clipforge.data.evalsets.classification import CLASSNAMES_FILE, normalize_templates
from clipforge.data.skips import DataError
from clipforge.data.wds import parse_captions, split_member_name

NSHARDS_FILE = "nshards.txt"
TYPE_FILE = "dataset_type.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
DATASET_TYPES: tuple[str, ...] = ("classification", "multilabel", "retrieval")
METADATA_EXTENSIONS: tuple[str, ...] = ("cls", "npy", "txt")  # labels and captions


@dataclass(frozen=True)
class ShardSample:
    """One sample of a shard: its key, where each of its members lies (by extension), and
    the bytes of the small metadata members read while indexing."""

    shard: str
    key: str
    members: dict[str, MemberRef]
    data: dict[str, bytes]

    def error(self, problem: str) -> DataError:
        """A :class:`DataError` naming this sample (its shard path and key)."""
        return DataError(f"sample {self.shard}:{self.key}: {problem}")


def index_shard(shard: str | os.PathLike[str]) -> list[ShardSample]:
    """The samples of an uncompressed tar in order of their first member, each with the
    offsets of its regular members (links and folders are not data and are left out) and the
    bytes of its label and caption members (:data:`METADATA_EXTENSIONS`).

    Only headers and those small members are read (tarfile seeks over the rest), so indexing
    is fast even for large shards. A shard that is not an uncompressed tar, breaks off, or
    holds one member twice raises :class:`DataError` naming it.
    """
    path = str(shard)
    samples: dict[str, ShardSample] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                key, extension = split_member_name(member.name)
                sample = samples.setdefault(key, ShardSample(path, key, {}, {}))
                if extension in sample.members:
                    raise DataError(f"shard {path!r}: member {member.name!r} appears twice")
                sample.members[extension] = MemberRef(path, member.offset_data, member.size)
                if extension in METADATA_EXTENSIONS:
                    handle = tar.extractfile(member)
                    sample.data[extension] = b"" if handle is None else handle.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(
            f"shard {path!r}: cannot index it: not an uncompressed tar, or truncated "
            f"({type(err).__name__}: {err})"
        ) from err
    return list(samples.values())


def split_shards(root: Path, split: str) -> list[Path]:
    """The shards ``0.tar .. {n-1}.tar`` of ``root/split``, checked against ``nshards.txt``."""
    folder = root / split
    if not folder.is_dir():
        present = sorted(entry.name for entry in root.iterdir() if (entry / NSHARDS_FILE).is_file())
        raise FileNotFoundError(
            f"benchmark dataset {str(root)!r} has no split folder {split!r} (splits: {present})"
        )
    nshards_path = folder / NSHARDS_FILE
    if not nshards_path.is_file():
        raise FileNotFoundError(f"{str(nshards_path)!r} not found: it gives the number of shards")
    text = nshards_path.read_text(encoding="utf-8").strip()
    if not text.isdigit() or int(text) == 0:
        raise DataError(f"{str(nshards_path)!r} holds {text!r}, not a positive number of shards")
    count = int(text)
    present = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".tar"))
    expected = [f"{index}.tar" for index in range(count)]
    if present != sorted(expected):
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected))
        raise DataError(
            f"{str(nshards_path)!r} says {count} shards (0.tar..{count - 1}.tar) but "
            f"{str(folder)!r} holds {len(present)}: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    return [folder / name for name in expected]


def dataset_type(root: Path) -> str:
    """The set's type from ``dataset_type.txt``, ``"classification"`` without the file."""
    path = root / TYPE_FILE
    if not path.is_file():
        return "classification"
    value = path.read_text(encoding="utf-8").strip().lower()
    if value not in DATASET_TYPES:
        raise DataError(f"{str(path)!r} holds {value!r}; expected one of {list(DATASET_TYPES)}")
    return value


def is_benchmark_wds(path: Path) -> bool:
    """Whether ``path`` looks like a dataset in this layout: a type file, or a split folder
    with ``nshards.txt``."""
    return path.is_dir() and (
        (path / TYPE_FILE).is_file()
        or any((entry / NSHARDS_FILE).is_file() for entry in path.iterdir() if entry.is_dir())
    )


def _member(sample: ShardSample, extension: str, what: str) -> bytes:
    if extension not in sample.data:
        raise DataError(f"sample {sample.shard}:{sample.key} has no .{extension} member ({what})")
    return sample.data[extension]


def _class_index(sample: ShardSample, classes: int) -> int:
    text = _member(sample, "cls", "the class index").decode("utf-8", errors="replace").strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise sample.error(f".cls holds {text!r}, not a class index")
    if not 0 <= int(text) < classes:
        raise sample.error(f"class index {int(text)} is outside [0, {classes})")
    return int(text)


def _multi_hot(sample: ShardSample, classes: int) -> np.ndarray:
    data = _member(sample, "npy", "the multi-label vector")
    try:
        vector = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as err:
        raise sample.error(f".npy does not load ({err})") from err
    if vector.shape != (classes,) or not np.isin(vector, (0, 1)).all():
        raise sample.error(
            f".npy has shape {vector.shape}; expected ({classes},) of 0/1 for the {classes} classes"
        )
    return vector.astype(np.uint8)


def _captions(sample: ShardSample) -> list[str]:
    try:
        captions = parse_captions({"txt": _member(sample, "txt", "the captions")}, None)
    except ValueError as err:
        raise sample.error(str(err)) from err
    if not captions:
        raise sample.error(".txt holds no caption")
    return list(captions)


def benchmark_wds(
    root: str | os.PathLike[str],
    *,
    split: str | None = None,
    transform: ImageTransform | None = None,
) -> ClassificationSet | RetrievalSet:
    """Split ``split`` (default "test") of a CLIP_benchmark webdataset folder, keyed
    ``<N>.tar:<key>``: a :class:`ClassificationSet` (single- or multi-label, with ``classnames``
    and ``templates``) or a :class:`RetrievalSet`, by ``dataset_type.txt``."""
    split = "test" if split is None else split
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"benchmark dataset folder {str(base)!r} not found")
    kind = dataset_type(base)
    samples = [sample for shard in split_shards(base, split) for sample in index_shard(shard)]
    name = str(base / split)
    if not samples:
        raise DataError(f"split {name!r} is empty: its shards hold no sample")
    keys = [f"{Path(sample.shard).name}:{sample.key}" for sample in samples]  # unique in a split
    images = [image_member(sample.members) for sample in samples]
    if kind == "retrieval":
        captions = [_captions(sample) for sample in samples]
        return RetrievalSet(
            name=name, keys=keys, images=images, captions=captions, transform=transform
        )
    classnames = read_lines(base / CLASSNAMES_FILE, "class names")
    templates_path = base / TEMPLATES_FILE
    templates = (
        normalize_templates(read_lines(templates_path, "templates"), repr(str(templates_path)))
        if templates_path.is_file()
        else None
    )
    if kind == "multilabel":
        labels = np.stack([_multi_hot(sample, len(classnames)) for sample in samples])
    else:
        labels = np.asarray([_class_index(s, len(classnames)) for s in samples], dtype=np.int64)
    return ClassificationSet(
        name=name,
        keys=keys,
        images=images,
        labels=labels,
        classnames=classnames,
        templates=templates,
        transform=transform,
    )
