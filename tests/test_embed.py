"""``clipforge.search.embed``: collections in, aligned partitions out, resumable and parallel.

Every check of an embedding compares it with the model's own embedding of the sample that the
metadata row names (image file, or tar member), recomputed here without the embedding code,
so a row that drifted from its metadata fails. The model is ``tiny`` saved to a file and loaded
back through ``pretrained``.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import clipforge
from clipforge.data.plan import plan_collection
from clipforge.data.shapes import write_shapes
from clipforge.distributed import resolve_rank
from clipforge.encoder import Encoder
from clipforge.search import embed_writer
from clipforge.search.embed import embed_collection
from clipforge.search.layout import (
    complete_partitions,
    emb_path,
    metadata_path,
    read_info,
    stats_path,
)
from clipforge.transforms import image_transform, load_image

# fp16 storage of unit vectors: about 3 significant digits.
ATOL = 2e-3


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    clipforge.save_model(clipforge.create_model("tiny"), path)
    return path


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The model, its preprocessing and tokenizer, used to recompute embeddings here."""
    model = clipforge.create_model(None, pretrained=checkpoint).eval()
    return model, image_transform(model.image_size), clipforge.get_tokenizer(model)


def run(inputs, out, checkpoint, **options):
    options = {"batch_size": 3, "num_workers": 0, "progress": False, **options}
    return embed_collection(
        [str(i) for i in inputs], out, model="tiny", pretrained=str(checkpoint), **options
    )


def read_partition(out: Path, index: int) -> dict:
    info = read_info(out)
    part = {
        "meta": pq.read_table(metadata_path(out, index)).to_pylist(),
        "stats": json.loads(stats_path(out, index).read_text()),
        "img": np.load(emb_path(out, index, "image")) if info["images"] else None,
        "text": np.load(emb_path(out, index, "text")) if info["text"] else None,
    }
    for name in ("img", "text"):
        if part[name] is not None:
            assert part[name].dtype == np.float16
            assert part[name].shape == (len(part["meta"]), info["dim"])
    return part


def read_all(out: Path) -> tuple[list[dict], np.ndarray | None, np.ndarray | None, list[dict]]:
    """Metadata rows, image and text embeddings of every partition, in partition order."""
    parts = [read_partition(out, p) for p in complete_partitions(out)]
    assert len(parts) == read_info(out)["partitioning"]["partitions"]
    rows = [row for part in parts for row in part["meta"]]
    img = np.concatenate([p["img"] for p in parts]) if parts[0]["img"] is not None else None
    text = np.concatenate([p["text"] for p in parts]) if parts[0]["text"] is not None else None
    return rows, img, text, [p["stats"] for p in parts]


def image_of(row: dict) -> Image.Image:
    """The image a metadata row names: a file, or a member of the tar shard in ``path``."""
    if row["member"] is None:
        return load_image(row["path"])
    with tarfile.open(row["path"]) as tar:
        return load_image(tar.extractfile(row["member"]).read())


@torch.inference_mode()
def check_rows(rows, img, text, reference) -> None:
    """Row ``i`` of the embeddings is the model's embedding of metadata row ``i``."""
    model, transform, tokenizer = reference
    if img is not None:
        pixels = torch.stack([transform(image_of(row)) for row in rows])
        expected = F.normalize(model.encode_image(pixels), dim=-1)
        torch.testing.assert_close(torch.from_numpy(img).float(), expected, atol=ATOL, rtol=0)
    if text is not None:
        captioned = [i for i, row in enumerate(rows) if row["caption"] is not None]
        expected = torch.zeros(len(rows), model.config.embed_dim)
        if captioned:
            tokens = tokenizer([rows[i]["caption"] for i in captioned])
            expected[captioned] = F.normalize(model.encode_text(tokens), dim=-1)
        torch.testing.assert_close(torch.from_numpy(text).float(), expected, atol=ATOL, rtol=0)


def save(img: Image.Image, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)


def jpeg_bytes(colour, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Seven good images in every format and mode (some with captions), three broken ones,
    and files that are not images of the collection."""
    root = tmp_path / "images"
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    save(Image.fromarray(noise), root / "a.jpg")
    save(Image.fromarray(noise[:, ::-1]).convert("RGBA"), root / "b.png")
    save(Image.fromarray(noise[::-1]).convert("P"), root / "sub" / "c.gif")
    save(Image.new("RGB", (30, 70), (10, 200, 90)), root / "sub" / "d.bmp")
    save(Image.new("L", (64, 64), 128), root / "sub" / "deeper" / "e.webp")
    save(Image.fromarray(noise[:, :, ::-1]), root / "F.JPEG")
    save(Image.new("RGB", (64, 64), (250, 0, 0)), root / "g.jpeg")
    (root / "a.txt").write_text("a noisy picture\nsecond line ignored\n")
    (root / "sub" / "d.txt").write_text("  a green rectangle  ")
    (root / "g.txt").write_text("\n\n")  # no caption after all
    (root / "zero.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes((root / "a.jpg").read_bytes()[:300])
    (root / "notimage.png").write_text("<html>not found</html>")
    (root / "notes.md").write_text("not an image")
    save(Image.new("RGB", (8, 8)), root / ".hidden.jpg")
    save(Image.new("RGB", (8, 8)), root / ".cache" / "x.jpg")
    return root


def test_folder_rows_align_with_images_captions_and_skips(folder, tmp_path, checkpoint, reference):
    out = tmp_path / "emb"
    summary = run([folder], out, checkpoint, partition_size=4)
    rows, img, text, stats = read_all(out)
    good = ["F.JPEG", "a.jpg", "b.png", "g.jpeg", "sub/c.gif", "sub/d.bmp", "sub/deeper/e.webp"]
    assert [row["key"] for row in rows] == good
    assert [row["path"] for row in rows] == [str(folder.resolve() / key) for key in good]
    captions = {row["key"]: row["caption"] for row in rows}
    assert captions["a.jpg"] == "a noisy picture"
    assert captions["sub/d.bmp"] == "a green rectangle"
    assert sum(c is not None for c in captions.values()) == 2
    assert all(row["member"] is None and row["json"] is None for row in rows)
    check_rows(rows, img, text, reference)
    assert np.all(text[[i for i, r in enumerate(rows) if r["caption"] is None]] == 0)

    skipped = {e["key"]: e["reason"] for s in stats for e in s["skipped_samples"]}
    assert skipped == {
        "notimage.png": "bad_image",
        "truncated.jpg": "bad_image",
        "zero.jpg": "empty_image",
    }
    # 10 images sorted, cut in fours: notimage.png in partition 1, the last two in 2.
    assert [s["seen"] for s in stats] == [4, 4, 2]
    assert [s["rows"] for s in stats] == [4, 3, 0]
    assert stats[2]["skipped_by_reason"] == {"bad_image": 1, "empty_image": 1}
    assert summary["images"] == 7 and summary["captions"] == 2 and summary["skipped"] == 3
    assert summary["skipped_by_reason"] == {"bad_image": 2, "empty_image": 1}
    assert summary["partitions"] == summary["partitions_embedded"] == 3
    assert summary["images_per_second"] > 0

    info = read_info(out)
    assert info["model"] == "tiny" and info["pretrained"] == str(checkpoint.resolve())
    assert info["dim"] == 128 and info["images"] and info["text"]
    assert info["image_roots"] == [str(folder.resolve())]
    assert info["clipforge_version"] == clipforge.__version__
    assert info["inputs"] == [{"input": str(folder.resolve()), "format": "folder"}]


def rewrite_shard(path: Path, edit) -> None:
    """Rewrite a tar shard, passing each ``(name, bytes)`` through ``edit`` (None drops it)."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            kept = edit(name, data)
            if kept is not None:
                info = tarfile.TarInfo(name)
                info.size = len(kept)
                tar.addfile(info, io.BytesIO(kept))


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """Shards 0-2 of 20 shapes samples (8, 8, 4); shard 1 edited to lose captions and hold
    broken images; shard 3 is not a tar archive."""
    root = tmp_path / "wds"
    write_shapes(root, 20, format="wds", shard_size=8)
    broken = {"000010001.jpg": b"", "000010002.jpg": jpeg_bytes((1, 2, 3))[:200]}

    def edit(name: str, data: bytes) -> bytes | None:
        if name in ("000010000.txt", "000010004.txt", "000010005.txt"):
            return None
        if name == "000010006.jpg":
            return None  # a sample with a caption but no image
        return broken.get(name, data)

    rewrite_shard(root / "00001.tar", edit)
    (root / "00003.tar").write_bytes(b"this is not a tar archive")
    return root


def test_shards_rows_align_with_members_json_and_partial_captions(
    shards, tmp_path, checkpoint, reference
):
    out = tmp_path / "emb"
    summary = run([shards / "{00000..00003}.tar"], out, checkpoint, num_workers=2)
    rows, img, text, stats = read_all(out)
    lost = {"000010001", "000010002", "000010006"}
    expected_keys = [f"0000{s}{i:04d}" for s, n in ((0, 8), (1, 8), (2, 4)) for i in range(n)]
    assert [row["key"] for row in rows] == [k for k in expected_keys if k not in lost]
    for row in rows:
        assert row["path"] == str(shards / f"{row['key'][:5]}.tar")
        assert row["member"] == f"{row['key']}.jpg"
        assert json.loads(row["json"])["key"] == row["key"]
    no_caption = {"000010000", "000010004", "000010005"}
    assert {row["key"] for row in rows if row["caption"] is None} == no_caption
    check_rows(rows, img, text, reference)

    assert [s["shards"] for s in stats] == [[str(shards / f"{i:05d}.tar")] for i in range(4)]
    reasons = {e["key"]: e["reason"] for e in stats[1]["skipped_samples"]}
    assert reasons == {
        "000010001": "empty_image",
        "000010002": "bad_image",
        "000010006": "no_image",
    }
    assert [e["reason"] for e in stats[3]["skipped_samples"]] == ["bad_shard"]
    assert stats[3]["rows"] == 0 and read_partition(out, 3)["img"].shape == (0, 128)
    assert summary["images"] == 17 and summary["captions"] == 14
    assert read_info(out)["image_roots"] == [str(shards)]


def test_csv_and_parquet_tables_with_image_root(tmp_path, checkpoint, reference):
    data = tmp_path / "shapes"
    write_shapes(data, 7, format="csv")
    tables = tmp_path / "tables"
    tables.mkdir()
    shutil.copy(data / "captions.parquet", tables)
    out_csv, out_parquet = tmp_path / "csv", tmp_path / "parquet"
    run([data / "captions.csv"], out_csv, checkpoint, partition_size=5)
    # Workers and the progress bar change nothing in the result.
    options = {"num_workers": 2, "progress": True}
    run(
        [tables / "captions.parquet"],
        out_parquet,
        checkpoint,
        partition_size=5,
        image_root=data,
        **options,
    )
    rows, img, text, _ = read_all(out_csv)
    assert [row["key"] for row in rows] == [f"00000{i:04d}" for i in range(7)]
    assert rows[0]["path"] == str(data.resolve() / "images" / "000000000.jpg")
    assert json.loads(rows[0]["json"])["canonical_caption"]
    assert all(row["caption"] for row in rows)
    check_rows(rows, img, text, reference)
    rows_p, img_p, text_p, _ = read_all(out_parquet)
    assert [(r["key"], r["path"], r["caption"]) for r in rows_p] == [
        (r["key"], r["path"], r["caption"]) for r in rows
    ]
    np.testing.assert_array_equal(img_p, img)
    np.testing.assert_array_equal(text_p, text)
    assert read_info(out_parquet)["image_roots"] == [str(data.resolve())]


def test_table_rows_without_a_usable_image_are_skipped(folder, tmp_path, checkpoint, reference):
    table = folder / "list.tsv"
    rows = ["filepath\ttitle", "a.jpg\tfirst", "missing.jpg\tsecond", "\tthird", "sub/d.bmp\t"]
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "emb"
    run([table], out, checkpoint, caption_column="title")
    rows, img, text, stats = read_all(out)
    assert [(row["key"], row["caption"]) for row in rows] == [("0", "first"), ("3", None)]
    assert rows[1]["path"] == str(folder.resolve() / "sub" / "d.bmp")
    check_rows(rows, img, text, reference)
    reasons = {e["key"]: e["reason"] for e in stats[0]["skipped_samples"]}
    assert reasons == {"1": "missing_file", "2": "no_image"}


def test_caption_only_table_embeds_text(tmp_path, checkpoint, reference):
    table = tmp_path / "captions.csv"
    table.write_text("caption,source\na red star,x\n,y\ntwo blue squares,z\n")
    out = tmp_path / "emb"
    summary = run([table], out, checkpoint)
    assert not emb_path(out, 0, "image").exists()
    rows, img, text, stats = read_all(out)
    assert img is None and [row["key"] for row in rows] == ["0", "2"]
    assert [row["path"] for row in rows] == [None, None]
    assert json.loads(rows[1]["json"]) == {"caption": "two blue squares", "source": "z"}
    check_rows(rows, None, text, reference)
    assert stats[0]["skipped_samples"][0]["reason"] == "no_caption"
    assert summary["images"] == 0 and summary["captions"] == 2


def test_interrupted_run_resumes_to_the_uninterrupted_result(
    folder, tmp_path, checkpoint, monkeypatch
):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run([folder], whole, checkpoint, partition_size=3)
    write_table = embed_writer.write_table

    def fail_on_partition_1(path, *args):
        if path == metadata_path(resumed, 1):
            raise KeyboardInterrupt("interrupted while writing partition 1")
        write_table(path, *args)

    monkeypatch.setattr(embed_writer, "write_table", fail_on_partition_1)
    with pytest.raises(KeyboardInterrupt):
        run([folder], resumed, checkpoint, partition_size=3)
    assert complete_partitions(resumed) == [0]
    assert emb_path(resumed, 1, "image").exists()  # written before the interruption, redone below
    assert not list(resumed.rglob("*.partial"))
    monkeypatch.setattr(embed_writer, "write_table", write_table)

    summary = run([folder], resumed, checkpoint, partition_size=3)
    assert summary["partitions_already_complete"] == 1
    assert summary["partitions_embedded"] == summary["partitions"] - 1 == 3
    assert_same_collection(whole, resumed)


def assert_same_collection(a: Path, b: Path) -> None:
    """Equal embeddings, metadata and stats (except timings) partition by partition."""
    assert complete_partitions(a) == complete_partitions(b)
    for p in complete_partitions(a):
        pa_, pb = read_partition(a, p), read_partition(b, p)
        assert pa_["meta"] == pb["meta"]
        for name in ("img", "text"):
            np.testing.assert_array_equal(pa_[name], pb[name])
        for stats in (pa_["stats"], pb["stats"]):
            del stats["seconds"], stats["images_per_second"]
        assert pa_["stats"] == pb["stats"]


def test_ranks_and_workers_split_partitions_with_the_same_result(
    shards, tmp_path, checkpoint, monkeypatch
):
    single, split = tmp_path / "single", tmp_path / "split"
    pattern = shards / "{00000..00002}.tar"
    run([pattern], single, checkpoint)
    first = run([pattern], split, checkpoint, rank=0, world_size=2, num_workers=2)
    assert first["partitions_embedded"] == 2 and complete_partitions(split) == [0, 2]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    second = run([pattern], split, checkpoint, num_workers=2, batch_size=3)
    assert (second["rank"], second["world_size"], second["partitions_embedded"]) == (1, 2, 1)
    assert second["complete_partitions"] == 3
    assert_same_collection(single, split)


def test_rerun_with_another_model_or_changed_inputs_fails(folder, tmp_path, checkpoint):
    out = tmp_path / "emb"
    run([folder], out, checkpoint, partition_size=4)
    torch.manual_seed(2)
    other = tmp_path / "other.safetensors"
    clipforge.save_model(clipforge.create_model("tiny"), other)
    with pytest.raises(ValueError, match="weights_blake2b"):
        embed_collection([folder], out, model="tiny", pretrained=other, progress=False)
    with pytest.raises(ValueError, match="partitioning"):
        run([folder], out, checkpoint, partition_size=5)
    save(Image.new("RGB", (9, 9)), folder / "new.png")
    with pytest.raises(ValueError, match="plan_blake2b"):
        run([folder], out, checkpoint, partition_size=4)
    (folder / "new.png").unlink()
    assert run([folder], out, checkpoint, partition_size=4)["partitions_embedded"] == 0


@pytest.mark.parametrize("precision", ["amp_bf16", "bf16"])
def test_bf16_autocast_and_weight_cast_are_close_to_fp32(folder, tmp_path, checkpoint, precision):
    run([folder], tmp_path / "fp32", checkpoint, partition_size=100)
    run([folder], tmp_path / "low", checkpoint, partition_size=100, precision=precision)
    (rows, img32, text32, _), (_, img16, text16, _) = (
        read_all(tmp_path / "fp32"),
        read_all(tmp_path / "low"),
    )
    low_info, fp32_info = read_info(tmp_path / "low"), read_info(tmp_path / "fp32")
    assert low_info["precision"] == precision
    # The digest is of the weights as read, so both precisions name the same checkpoint.
    assert low_info["weights_blake2b"] == fp32_info["weights_blake2b"]
    captioned = [i for i, row in enumerate(rows) if row["caption"] is not None]
    for a, b in ((img32, img16), (text32[captioned], text16[captioned])):
        cosine = (a.astype(np.float32) * b.astype(np.float32)).sum(-1)
        assert cosine.min() > 0.99
        assert not np.array_equal(a, b)


def test_texts_are_batched_by_length_and_returned_in_order(reference):
    model, _, tokenizer = reference
    captions = ["a", "a very long caption " * 3, "two words", "x y z w v", "b", "c d"]
    tokens = tokenizer(captions)
    encoder = Encoder(model, precision="fp32", batch_size=2)
    with torch.inference_mode():
        expected = torch.cat([F.normalize(model.encode_text(t[None]), dim=-1) for t in tokens])
    torch.testing.assert_close(encoder.texts(tokens), expected, atol=1e-5, rtol=0)


def test_partitions_are_deterministic(folder, shards):
    plans = [plan_collection([folder], partition_size=3, shards_per_partition=1) for _ in "ab"]
    assert plans[0] == plans[1]
    assert [len(p.samples) for p in plans[0].partitions] == [3, 3, 3, 1]
    wds = plan_collection(
        [str(shards / "{00000..00002}.tar")], partition_size=3, shards_per_partition=2
    )
    assert [len(p.shards) for p in wds.partitions] == [2, 1] and wds.text


def test_bad_inputs_and_options_fail_clearly(tmp_path, folder, shards, checkpoint):
    with pytest.raises(FileNotFoundError, match="missing"):
        run([tmp_path / "missing"], tmp_path / "o", checkpoint)
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(ValueError, match="cannot tell its format"):
        run([tmp_path / "x.bin"], tmp_path / "o", checkpoint)
    with pytest.raises(ValueError, match="mix tar shards"):
        run([folder, shards / "00000.tar"], tmp_path / "o", checkpoint)
    with pytest.raises(ValueError, match="holds no images.*4 tar shards"):
        run([shards], tmp_path / "o", checkpoint, input_format="folder")
    with pytest.raises(ValueError, match="not found"):
        run([shards / "{00000..00009}.tar"], tmp_path / "o", checkpoint)
    with pytest.raises(ValueError, match="precision"):
        run([folder], tmp_path / "o", checkpoint, precision="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        run([folder], tmp_path / "o", checkpoint, batch_size=0)
    with pytest.raises(ValueError, match="no caption column 'title'"):
        data = tmp_path / "csv"
        write_shapes(data, 2, format="csv")
        run([data / "captions.csv"], tmp_path / "o", checkpoint, caption_column="title")
    with pytest.raises(ValueError, match="rank and world_size together"):
        resolve_rank(0, None)
    with pytest.raises(ValueError, match="rank=2"):
        resolve_rank(2, 2)
    assert not (tmp_path / "o").exists()
