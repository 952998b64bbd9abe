"""Evaluation sets: every layout built tiny in ``tmp_path``, its metadata, batches and errors.

Images are solid-colour Pillow images whose colour encodes the class (or the image number),
so a test can check that pixels, labels and captions stay aligned through the loader.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from clipforge.data.evalsets import (
    CaptionBatch,
    ClassificationSet,
    EvalLoader,
    EvalOptions,
    LabelBatch,
    RetrievalSet,
    ShapesClassificationSet,
    ShapesWordOrderSet,
    benchmark_wds,
    detect_layout,
    image_folder_classification,
    json_retrieval,
    normalize_templates,
    open_evalset,
    table_classification,
    table_retrieval,
)
from clipforge.data.evalsets.benchmark_wds import index_shard
from clipforge.data.shapes import (
    COLOURS,
    SHAPES,
    ShapesWorld,
    canonical_caption,
    word_order_probe,
    write_shapes,
)
from clipforge.data.skips import DataError, SampleSkipped
from clipforge.transforms import image_transform

SIZE = 16
TRANSFORM = image_transform(SIZE)
FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def image_bytes(value: int, ext: str = "png") -> bytes:
    """A 12x10 image whose red channel is ``value`` (lossless formats keep it exactly)."""
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), (value, 40, 90)).save(
        buffer, format=FORMATS[ext.lower()], lossless=True
    )
    return buffer.getvalue()


def write_image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(value, path.suffix.lstrip(".")))
    return path


def red(pixels: torch.Tensor) -> int:
    """The red value of an image that went through TRANSFORM (undoing the normalisation)."""
    mean, std = TRANSFORM.config.mean[0], TRANSFORM.config.std[0]
    return round(float(pixels[0].mean() * std + mean) * 255)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_benchmark(
    root: Path,
    shards: list[list[tuple[str, bytes]]],
    *,
    kind: str | None = None,
    classnames: list[str] | None = ("cat", "dog", "bird"),
    templates: list[str] | None = ("a photo of a {c}.", "a drawing of a {c}."),
    split: str = "test",
    nshards: int | None = None,
) -> Path:
    """A CLIP_benchmark webdataset folder with one tar per entry of ``shards``."""
    (root / split).mkdir(parents=True, exist_ok=True)
    if kind is not None:
        (root / "dataset_type.txt").write_text(kind + "\n")
    if classnames is not None:
        (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    if templates is not None:
        (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    for index, members in enumerate(shards):
        write_tar(root / split / f"{index}.tar", members)
    count = len(shards) if nshards is None else nshards
    (root / split / "nshards.txt").write_text(f"{count}\n")
    return root


def cls_sample(key: str, value: int, label: int, ext: str = "webp") -> list[tuple[str, bytes]]:
    return [(f"{key}.{ext}", image_bytes(value, ext)), (f"{key}.cls", str(label).encode())]


def labels_of(loader: EvalLoader) -> tuple[list[int], list[int], list[int]]:
    """``(labels, red values, indices)`` over a whole pass."""
    labels, reds, indices = [], [], []
    for batch in loader:
        assert isinstance(batch, LabelBatch)
        assert batch.pixels.shape[1:] == (3, SIZE, SIZE)
        labels += batch.labels.tolist()
        reds += [red(p) for p in batch.pixels]
        indices += batch.indices.tolist()
    return labels, reds, indices


# ---------------------------------------------------------------- image folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "folder"
    write_image(root / "dog" / "d1.png", 30)
    write_image(root / "dog" / "sub" / "d2.jpg", 31)
    write_image(root / "cat" / "c1.webp", 10)
    write_image(root / "bird" / "deep" / "er" / "b1.PNG", 50)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"")
    return root


def test_image_folder_classes_sorted_recursive(folder: Path) -> None:
    data = image_folder_classification(folder, transform=TRANSFORM)
    assert data.task == "classification"
    assert data.classnames == ["bird", "cat", "dog"]
    assert len(data) == 4
    assert [data.key(i) for i in range(4)] == [
        "bird/deep/er/b1.PNG",
        "cat/c1.webp",
        "dog/d1.png",
        "dog/sub/d2.jpg",
    ]
    assert data.labels.tolist() == [0, 1, 2, 2]
    pixels, label = data[1]
    assert pixels.shape == (3, SIZE, SIZE) and label == 1 and red(pixels) == 10
    assert data.templates is None and data.sample_id(1) == f"{folder}:cat/c1.webp"


def test_image_folder_classnames_file_and_split(folder: Path, tmp_path: Path) -> None:
    (folder / "classnames.txt").write_text("a bird\na cat\na dog\n")
    assert image_folder_classification(folder).classnames == ["a bird", "a cat", "a dog"]
    (folder / "classnames.txt").write_text("a bird\na cat\n")
    with pytest.raises(DataError, match="3 class folders but 2 class names"):
        image_folder_classification(folder)
    split_root = tmp_path / "splits"
    write_image(split_root / "test" / "x" / "1.png", 1)
    write_image(split_root / "test" / "y" / "2.png", 2)
    data = image_folder_classification(split_root, split="test")
    assert data.classnames == ["x", "y"] and data.labels.tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match=r"no split folder 'val' \(folders: \['test'\]\)"):
        image_folder_classification(split_root, split="val")


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_folder_classification(tmp_path / "nowhere")
    write_image(tmp_path / "flat" / "1.png", 1)
    with pytest.raises(DataError, match="has no class folders"):
        image_folder_classification(tmp_path / "flat")
    write_image(tmp_path / "gap" / "a" / "1.png", 1)
    (tmp_path / "gap" / "b" / "sub").mkdir(parents=True)
    (tmp_path / "gap" / "b" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"class folder '.*gap/b' holds no image"):
        image_folder_classification(tmp_path / "gap")


# ---------------------------------------------------------------- classification tables


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    for value in range(6):
        write_image(root / f"{value}.png", value * 10)
    return root


def test_table_names_and_indices(images: Path, tmp_path: Path) -> None:
    table = write_csv(
        tmp_path / "names.csv",
        ["path", "label"],
        [["imgs/0.png", "dog"], ["imgs/1.png", "cat"], ["imgs/2.png", "dog"]],
    )
    data = table_classification(table, transform=TRANSFORM)
    assert data.classnames == ["cat", "dog"] and data.labels.tolist() == [1, 0, 1]
    assert data.key(2) == "3:imgs/2.png"
    pixels, label = data[1]
    assert red(pixels) == 10 and label == 0

    indexed = write_csv(
        tmp_path / "indexed.csv", ["filepath", "label"], [["0.png", 2], ["1.png", 0]]
    )
    names = tmp_path / "names.txt"
    names.write_text("zero\none\ntwo\n")
    data = table_classification(indexed, image_root=images, classnames=names)
    assert data.classnames == ["zero", "one", "two"] and data.labels.tolist() == [2, 0]
    (tmp_path / "classnames.txt").write_text("zero\none\ntwo\n")  # found beside the table
    assert table_classification(indexed, image_root=images).classnames == ["zero", "one", "two"]


def test_table_label_errors_name_the_row(images: Path, tmp_path: Path) -> None:
    table = write_csv(tmp_path / "t.csv", ["filepath", "label"], [["0.png", 0], ["1.png", 3]])
    with pytest.raises(DataError, match=r"integer labels need class names"):
        table_classification(table, image_root=images)
    with pytest.raises(DataError, match=r"row 2 \('1.png'\): class index 3 is outside \[0, 3\)"):
        table_classification(table, image_root=images, classnames=["a", "b", "c"])
    named = write_csv(tmp_path / "n.csv", ["filepath", "label"], [["0.png", "a"], ["1.png", "z"]])
    with pytest.raises(DataError, match=r"row 2 \('1.png'\): unknown class 'z'"):
        table_classification(named, image_root=images, classnames=["a", "b"])
    empty = write_csv(tmp_path / "e.csv", ["filepath", "label"], [["0.png", "a"], ["", "a"]])
    with pytest.raises(DataError, match=r"row 2 has an empty 'filepath' cell"):
        table_classification(empty, image_root=images)
    ambiguous = write_csv(tmp_path / "amb.csv", ["filepath", "label"], [["0.png", 0], ["1.png", 1]])
    with pytest.raises(DataError, match="also class names with other indices"):
        table_classification(ambiguous, image_root=images, classnames=["1", "0"])
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        table_classification(tmp_path / "missing.csv")
    both = write_csv(tmp_path / "both.csv", ["path", "image", "label"], [["0.png", "0.png", "a"]])
    with pytest.raises(DataError, match=r"several \(\['path', 'image'\]\) image column"):
        table_classification(both, image_root=images)
    with pytest.raises(DataError, match=r"no column \['target'\]"):
        table_classification(named, image_root=images, label_column="target")


def test_table_parquet_split_column(images: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "image": ["0.png", "1.png", "2.png", "3.png"],
                "label": [1, 0, 1, 1],
                "split": ["test", "train", "test", "train"],
            }
        ),
        table,
    )
    data = table_classification(table, image_root=images, classnames=["a", "b"], split="test")
    assert len(data) == 2 and data.labels.tolist() == [1, 1]
    assert [data.key(i) for i in range(2)] == ["1:0.png", "3:2.png"]
    with pytest.raises(DataError, match=r"no row of split 'val' \(splits: \['test', 'train'\]\)"):
        table_classification(table, image_root=images, classnames=["a", "b"], split="val")
    no_split = write_csv(tmp_path / "s.csv", ["filepath", "label"], [["0.png", "a"]])
    with pytest.raises(DataError, match="no 'split' column to select split 'test'"):
        table_classification(no_split, image_root=images, split="test")


def test_multilabel_tables(images: Path, tmp_path: Path) -> None:
    table = write_csv(
        tmp_path / "m.csv",
        ["filepath", "label"],
        [["0.png", "cat|dog"], ["1.png", ""], ["2.png", "bird"]],
    )
    data = table_classification(table, image_root=images, multilabel=True, transform=TRANSFORM)
    assert data.task == "multilabel" and data.classnames == ["bird", "cat", "dog"]
    assert data.labels.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]
    pixels, target = data[0]
    assert target.dtype == torch.float32 and target.tolist() == [0.0, 1.0, 1.0]

    parquet = tmp_path / "m.parquet"
    pq.write_table(pa.table({"filepath": ["0.png", "1.png"], "label": [[2, 0], [1]]}), parquet)
    data = table_classification(parquet, image_root=images, multilabel=True, classnames=list("abc"))
    assert data.labels.tolist() == [[1, 0, 1], [0, 1, 0]]

    npy = tmp_path / "labels.npy"
    np.save(npy, np.array([[1, 0], [1, 1], [0, 0]]))
    plain = write_csv(tmp_path / "p.csv", ["filepath"], [["0.png"], ["1.png"], ["2.png"]])
    data = table_classification(plain, image_root=images, labels_npy=npy, classnames=["x", "y"])
    assert data.task == "multilabel" and data.labels.tolist() == [[1, 0], [1, 1], [0, 0]]
    with pytest.raises(DataError, match="2 classes but 3 class names"):
        table_classification(plain, image_root=images, labels_npy=npy, classnames=list("xyz"))
    np.save(npy, np.array([[1, 0], [1, 2], [0, 0]]))
    with pytest.raises(DataError, match="row 2 holds 2; labels must be 0/1"):
        table_classification(plain, image_root=images, labels_npy=npy, classnames=["x", "y"])
    np.save(npy, np.ones((2, 2)))
    with pytest.raises(DataError, match=r"shape \(2, 2\).*has 3 rows"):
        table_classification(plain, image_root=images, labels_npy=npy, classnames=["x", "y"])


# ---------------------------------------------------------------- CLIP_benchmark webdataset


def test_benchmark_wds_classification(tmp_path: Path) -> None:
    root = write_benchmark(
        tmp_path / "wds_toy",
        [
            cls_sample("s0000000", 10, 2) + cls_sample("s0000001", 20, 0, "png"),
            cls_sample("s0000002", 30, 1, "jpg"),
        ],
    )
    data = benchmark_wds(root, transform=TRANSFORM)
    assert isinstance(data, ClassificationSet) and data.task == "classification"
    assert data.classnames == ["cat", "dog", "bird"]
    assert data.templates == ["a photo of a {}.", "a drawing of a {}."]
    assert data.labels.tolist() == [2, 0, 1]
    assert [data.key(i) for i in range(3)] == ["0.tar:s0000000", "0.tar:s0000001", "1.tar:s0000002"]
    labels, reds, indices = labels_of(EvalLoader(data, batch_size=2))
    assert labels == [2, 0, 1] and reds[:2] == [10, 20] and indices == [0, 1, 2]
    assert abs(reds[2] - 30) <= 3  # JPEG is lossy
    assert detect_layout(root) == "benchmark_wds"
    assert open_evalset(root).labels.tolist() == [2, 0, 1]


def test_benchmark_wds_errors(tmp_path: Path) -> None:
    shard = [cls_sample("a", 1, 0)]
    root = write_benchmark(tmp_path / "three", shard * 2, nshards=3)
    with pytest.raises(DataError, match=r"says 3 shards .* holds 2: missing \['2.tar'\]"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "extra", shard * 3, nshards=2)
    with pytest.raises(DataError, match=r"unexpected \['2.tar'\]"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "empty", [[]])
    with pytest.raises(DataError, match=r"split '.*empty/test' is empty"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "range", [cls_sample("a", 1, 0) + cls_sample("b", 2, 3)])
    with pytest.raises(DataError, match=r"sample .*0.tar:b: class index 3 is outside \[0, 3\)"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "text", [[("a.webp", image_bytes(1)), ("a.cls", b"cat")]])
    with pytest.raises(DataError, match=r"0.tar:a: .cls holds 'cat', not a class index"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "nolabel", [[("a.webp", image_bytes(1))]])
    with pytest.raises(DataError, match=r"0.tar:a has no .cls member"):
        benchmark_wds(root)
    with pytest.raises(FileNotFoundError, match=r"no split folder 'train' \(splits: \['test'\]\)"):
        benchmark_wds(root, split="train")
    (root / "test" / "nshards.txt").unlink()
    with pytest.raises(FileNotFoundError, match="nshards.txt"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "nonames", shard, classnames=None)
    with pytest.raises(FileNotFoundError, match="classnames.txt"):
        benchmark_wds(root)
    root = write_benchmark(tmp_path / "badtpl", shard, templates=["a photo."])
    with pytest.raises(DataError, match=r"entry 1 'a photo.' needs exactly one"):
        benchmark_wds(root)
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "0.tar").write_bytes(b"\x1f\x8b not a tar")
    with pytest.raises(DataError, match="cannot index it: not an uncompressed tar"):
        index_shard(tmp_path / "gz" / "0.tar")


def test_benchmark_wds_multilabel_and_retrieval(tmp_path: Path) -> None:
    def npy(vector: list[int]) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, np.array(vector, dtype=np.float32))
        return buffer.getvalue()

    members = [("a.jpg", image_bytes(1, "jpg")), ("a.npy", npy([1, 0, 1]))]
    members += [("b.jpg", image_bytes(2, "jpg")), ("b.npy", npy([0, 1, 0]))]
    root = write_benchmark(tmp_path / "voc", [members], kind="multilabel")
    data = benchmark_wds(root, transform=TRANSFORM)
    assert data.task == "multilabel" and data.labels.tolist() == [[1, 0, 1], [0, 1, 0]]
    batch = next(iter(EvalLoader(data, batch_size=4)))
    assert batch.labels.dtype == torch.float32 and batch.labels.shape == (2, 3)
    bad = write_benchmark(tmp_path / "voc2", [[("a.jpg", image_bytes(1, "jpg")), ("a.npy", npy([1, 0]))]], kind="multilabel")  # fmt: skip
    with pytest.raises(DataError, match=r"0.tar:a: .npy has shape \(2,\); expected \(3,\)"):
        benchmark_wds(bad)

    members = [("x.webp", image_bytes(5)), ("x.txt", b"a red thing\n\na crimson thing\n")]
    members += [("y.webp", image_bytes(6)), ("y.txt", b"a blue thing")]
    root = write_benchmark(tmp_path / "flickr", [members], kind="retrieval", classnames=None)
    data = benchmark_wds(root, transform=TRANSFORM)
    assert isinstance(data, RetrievalSet)
    assert data.captions == [["a red thing", "a crimson thing"], ["a blue thing"]]
    assert open_evalset(root).captions == data.captions


# ---------------------------------------------------------------- retrieval


def test_table_retrieval_groups_rows(images: Path, tmp_path: Path) -> None:
    table = write_csv(
        tmp_path / "caps.csv",
        ["filepath", "caption"],
        [
            ["2.png", "two a"],
            ["0.png", "zero a"],
            ["2.png", "two b"],
            ["0.png", ""],
            ["0.png", "zero b"],
            ["2.png", "two c"],
        ],
    )
    data = table_retrieval(table, image_root=images, transform=TRANSFORM)
    assert [data.key(i) for i in range(len(data))] == ["2.png", "0.png"]
    assert data.captions == [["two a", "two b", "two c"], ["zero a", "zero b"]]
    pixels, captions = data[0]
    assert red(pixels) == 20 and captions == ["two a", "two b", "two c"]

    parquet = tmp_path / "caps.parquet"
    pq.write_table(
        pa.table({"image": ["1.png", "3.png"], "text": [["one"], ["three", "3"]]}), parquet
    )
    assert table_retrieval(parquet, image_root=images).captions == [["one"], ["three", "3"]]
    json_cells = tmp_path / "j.csv"
    json_cells.write_text('filepath,caption\n1.png,"[""one"", ""uno""]"\n')
    assert table_retrieval(json_cells, image_root=images).captions == [["one", "uno"]]
    uncaptioned = write_csv(tmp_path / "u.csv", ["filepath", "caption"], [["1.png", ""]])
    with pytest.raises(DataError, match=r"1 images have no caption \(first: '1.png'\)"):
        table_retrieval(uncaptioned, image_root=images)


def test_karpathy_and_coco_json(images: Path, tmp_path: Path) -> None:
    karpathy = {
        "images": [
            {"filepath": "", "filename": "0.png", "split": "train", "sentences": [{"raw": "z"}]},
            {"filename": "1.png", "split": "test", "sentences": [{"raw": " one "}, {"raw": "1"}]},
            {"filepath": "deep", "filename": "4.png", "split": "test", "sentences": [{"raw": "f"}]},
            {"filename": "2.png", "split": "restval", "sentences": [{"raw": "two"}]},
        ]
    }
    write_image(images / "deep" / "4.png", 40)
    path = tmp_path / "dataset_flickr.json"
    path.write_text(json.dumps(karpathy))
    data = json_retrieval(path, image_root=images, transform=TRANSFORM)
    assert [data.key(i) for i in range(2)] == ["1.png", "deep/4.png"]
    assert data.captions == [["one", "1"], ["f"]]
    assert red(data[1][0]) == 40
    assert json_retrieval(path, split="train", image_root=images).captions == [["z"]]
    with pytest.raises(
        DataError, match=r"no image in split 'val' \(splits: \['restval', 'test', 'train'\]\)"
    ):
        json_retrieval(path, split="val", image_root=images)

    coco = {
        "images": [{"id": 7, "file_name": "3.png"}, {"id": 9, "file_name": "5.png"}],
        "annotations": [
            {"image_id": 9, "caption": "five"},
            {"image_id": 7, "caption": "three"},
            {"image_id": 9, "caption": "cinq"},
        ],
    }
    path = tmp_path / "coco_test_karpathy.json"
    path.write_text(json.dumps(coco))
    data = open_evalset(path, options=EvalOptions(image_root=str(images)))
    assert data.captions == [["three"], ["five", "cinq"]]
    with pytest.raises(DataError, match="COCO caption format, which holds one split per file"):
        json_retrieval(path, split="test", image_root=images)
    coco["annotations"].append({"image_id": 8, "caption": "lost"})
    path.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"annotations\[3\] refers to image_id 8"):
        json_retrieval(path, image_root=images)


def test_flickr_text_file(images: Path, tmp_path: Path) -> None:
    path = tmp_path / "flickr30k_test_karpathy.txt"
    path.write_text("image,caption\n1.png,a dog, running\n0.png,a cat\n1.png,a dog\n\n")
    data = open_evalset(path, options=EvalOptions(image_root=str(images)))
    assert [data.key(i) for i in range(2)] == ["1.png", "0.png"]
    assert data.captions == [["a dog, running", "a dog"], ["a cat"]]
    path.write_text("image,caption\nno comma here\n")
    with pytest.raises(DataError, match=r"line 2 'no comma here' is not '<image>,<caption>'"):
        open_evalset(path, options=EvalOptions(image_root=str(images)))


def test_caption_batches_map_captions_to_images(images: Path, tmp_path: Path) -> None:
    rows = [["0.png", "a"], ["0.png", "b"], ["1.png", "c"], ["2.png", "d"], ["2.png", "e"]]
    rows += [["3.png", "f"], ["missing.png", "g"], ["4.png", "h"], ["4.png", "i"]]
    table = write_csv(tmp_path / "caps.csv", ["filepath", "caption"], rows)
    data = table_retrieval(table, image_root=images, transform=TRANSFORM)
    loader = EvalLoader(data, batch_size=2, max_skip_rate=0.5)
    image_of: dict[str, int] = {}
    delivered, reds = 0, []
    for batch in loader:
        assert isinstance(batch, CaptionBatch)
        pixels, captions, caption_image = batch
        assert len(captions) == len(caption_image)
        for text, position in zip(captions, caption_image.tolist(), strict=True):
            image_of[text] = delivered + position
        reds += [red(p) for p in pixels]
        delivered += batch.size
    # image positions over the pass: 0.png, 1.png, 2.png, 3.png, 4.png (missing.png skipped)
    assert reds == [0, 10, 20, 30, 40]
    assert image_of == {"a": 0, "b": 0, "c": 1, "d": 2, "e": 2, "f": 3, "h": 4, "i": 4}
    assert loader.stats.seen == 6 and loader.stats.counts == {"missing_file": 1}
    assert loader.stats.examples["missing_file"] == [f"{table}:missing.png"]


# ---------------------------------------------------------------- skips and the loader


def test_corrupt_images_are_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    members = cls_sample("good0", 10, 0) + [("bad1.webp", b"not an image"), ("bad1.cls", b"1")]
    members += cls_sample("good2", 20, 2) + [("empty3.webp", b""), ("empty3.cls", b"0")]
    members += [("noimage4.cls", b"1")] + cls_sample("good5", 30, 1)
    root = write_benchmark(tmp_path / "broken", [members])
    data = benchmark_wds(root, transform=TRANSFORM)
    assert len(data) == 6
    with pytest.raises(SampleSkipped, match="0.tar:bad1"):
        data[1]
    loader = EvalLoader(data, batch_size=4, max_skip_rate=0.5)
    with caplog.at_level(logging.WARNING):
        labels, reds, indices = labels_of(loader)
    assert labels == [0, 2, 1] and reds == [10, 20, 30] and indices == [0, 2, 5]
    assert loader.stats.seen == 6
    assert loader.stats.counts == {"bad_image": 1, "empty_image": 1, "no_image": 1}
    assert "0.tar:bad1" in caplog.text and "0.tar:empty3" in caplog.text
    with pytest.raises(DataError, match="too many broken samples"):
        list(EvalLoader(data, batch_size=4, max_skip_rate=0.25))


def test_truncated_shard_is_an_error_not_a_shorter_benchmark(tmp_path: Path) -> None:
    members = cls_sample("a", 10, 0) + [("z.cls", b"1"), ("z.png", image_bytes(20))]
    root = write_benchmark(tmp_path / "cut", [members])
    shard = root / "test" / "0.tar"
    end = index_shard(shard)[-1].members["png"]
    shard.write_bytes(shard.read_bytes()[: end.offset + end.size // 2])
    with pytest.raises(
        DataError, match=r"0.tar': cannot index it: not an uncompressed tar, or truncated"
    ):
        benchmark_wds(root)


def test_loader_fails_when_nothing_reads(tmp_path: Path) -> None:
    table = write_csv(tmp_path / "t.csv", ["filepath", "label"], [["gone.png", "a"]])
    data = table_classification(table, transform=TRANSFORM)
    with pytest.raises(DataError, match="too many broken samples"):
        list(EvalLoader(data, batch_size=2))
    with pytest.raises(DataError, match="no readable sample"):
        list(EvalLoader(data, batch_size=2, max_skip_rate=1.0))
    with pytest.raises(ValueError, match="no transform"):
        EvalLoader(table_classification(table), batch_size=2)


def test_a_few_hundred_samples_iterate_quickly(tmp_path: Path) -> None:
    write_shapes(tmp_path / "shapes", 300, format="csv", image_size=32, split="val")
    frame = pq.read_table(tmp_path / "shapes" / "captions.parquet").to_pydict()
    table = tmp_path / "shapes" / "labels.csv"
    write_csv(
        table,
        ["filepath", "label"],
        [
            [path, shapes.split(",")[0]]
            for path, shapes in zip(frame["filepath"], frame["shapes"], strict=True)
        ],
    )
    start = time.perf_counter()
    data = open_evalset(table, transform=TRANSFORM)
    count = sum(batch.size for batch in EvalLoader(data, batch_size=64))
    seconds = time.perf_counter() - start
    assert count == 300 and set(data.classnames) <= set(SHAPES)
    assert seconds < 10, f"300 samples took {seconds:.1f} s"

    retrieval = open_evalset(tmp_path / "shapes" / "captions.csv", transform=TRANSFORM)
    assert len(retrieval) == 300 and retrieval.captions[0] == [frame["caption"][0]]


# ---------------------------------------------------------------- shapes views


def test_shapes_classification_views() -> None:
    data = open_evalset("shapes/shape", transform=TRANSFORM, options=EvalOptions(size=24))
    assert isinstance(data, ShapesClassificationSet) and data.classnames == list(SHAPES)
    assert data.templates is not None and all("{}" in t for t in data.templates)
    reference = ShapesClassificationSet("shape", size=24, image_size=SIZE)
    assert data.labels.tolist() == [reference.labels[i] for i in range(24)]
    pixels, label = data[3]
    assert pixels.shape == (3, SIZE, SIZE) and label == reference.labels[3]
    batch = next(iter(EvalLoader(data, batch_size=8)))
    assert batch.labels.tolist() == data.labels[:8].tolist()

    colour = open_evalset("shapes/colour", options=EvalOptions(size=10, image_size=32))
    assert colour.classnames == list(COLOURS) and colour[0][0].size == (32, 32)
    heldout = open_evalset("shapes/heldout", options=EvalOptions(size=5))
    assert len(heldout.classnames) == 80 and heldout.templates is None
    assert heldout.class_prompts == [[c] for c in heldout.class_captions]
    assert heldout.key(0) == "heldout/0"


def test_shapes_retrieval_and_word_order() -> None:
    data = open_evalset("shapes/retrieval", options=EvalOptions(size=6, image_size=32))
    world = ShapesWorld(0, 32)
    for index in range(6):
        scene = world.scene("val", index)
        assert data.captions[index][0] == canonical_caption(scene)
        assert world.caption("val", index, scene) in data.captions[index]
    assert np.array_equal(np.asarray(data[2][0]), np.asarray(world.render(world.scene("val", 2))))

    probe = open_evalset("shapes/word-order", options=EvalOptions(size=6, image_size=32))
    assert isinstance(probe, ShapesWordOrderSet) and probe.task == "caption_selection"
    reference = word_order_probe(world, n=6)
    assert probe.captions == [[item.correct, item.swapped] for item in reference]
    assert probe.kinds == ["colour", "shape", "relation"] * 2
    for index in (0, 4):
        image, captions = probe[index]
        assert np.array_equal(np.asarray(image), np.asarray(reference[index].image))
    batch = next(iter(EvalLoader(open_evalset("shapes/word-order", transform=TRANSFORM, options=EvalOptions(size=4)), batch_size=4)))  # fmt: skip
    assert batch.caption_image.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert batch.captions[0] == reference[0].correct


# ---------------------------------------------------------------- registry


def test_registry_detects_layouts(folder: Path, images: Path, tmp_path: Path) -> None:
    table = write_csv(tmp_path / "t.csv", ["filepath", "label"], [["imgs/0.png", "a"]])
    caps = write_csv(tmp_path / "c.csv", ["filepath", "caption"], [["imgs/0.png", "x"]])
    (tmp_path / "k.json").write_text("{}")
    (tmp_path / "f.txt").write_text("image,caption\n")
    assert detect_layout(folder) == "image_folder"
    assert (
        detect_layout(table) == "table" and detect_layout(tmp_path / "k.json") == "annotations_json"
    )
    assert detect_layout(tmp_path / "f.txt") == "flickr_txt"
    assert detect_layout("shapes/heldout") == "shapes"
    assert open_evalset(folder).task == "classification"
    assert open_evalset(table).task == "classification" and open_evalset(caps).task == "retrieval"
    with pytest.raises(
        ValueError,
        match=r"unknown evaluation set 'shapes/size'; known names: shapes/shape, shapes/colour",
    ):
        open_evalset("shapes/size")
    with pytest.raises(FileNotFoundError, match="neither an existing path nor a known name"):
        open_evalset(tmp_path / "nothing.csv")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(DataError, match="cannot tell its layout"):
        detect_layout(tmp_path / "x.bin")
    with pytest.raises(
        ValueError, match=r"EvalOptions \['caption_column'\] do not apply to a image_folder"
    ):
        open_evalset(folder, options=EvalOptions(caption_column="text"))
    with pytest.raises(ValueError, match=r"EvalOptions \['image_root'\] do not apply to a shapes"):
        open_evalset("shapes/shape", options=EvalOptions(image_root="/x"))
    with pytest.raises(ValueError, match="split 'test' is unknown"):
        open_evalset("shapes/shape", split="test")


def test_normalize_templates() -> None:
    assert normalize_templates(["a {c}.", "{} art"], "t") == ["a {}.", "{} art"]
    for bad in ("a {c} {c}", "no placeholder", "a {c} {x}"):
        with pytest.raises(DataError, match="needs exactly one"):
            normalize_templates([bad], "t")
