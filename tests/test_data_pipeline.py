"""The image-text data pipeline: shards and tables in, ``(pixels, tokens)`` batches out.

Shards and tables are written into ``tmp_path`` with :mod:`tarfile` and Pillow: a few solid
colour images per shard, plus every kind of broken sample the loader has to survive.
"""

from __future__ import annotations

import io
import itertools
import logging
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from clipforge.data.loader import DataSpec, ImageTextLoader, build_image_text_loader
from clipforge.data.skips import DataError, SkipReason, SkipStats
from clipforge.data.stream import Batch, choose_caption
from clipforge.data.wds import expand_urls, split_member_name
from clipforge.tokenizer import Tokenizer
from clipforge.train.batches import LoaderBatches
from clipforge.transforms import image_transform

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (120, 40, 160)]
CONTEXT = 16
SIZE = 8


def encode(colour: tuple[int, int, int], fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def good_members(prefix: str, count: int) -> list[tuple[str, bytes]]:
    members = []
    for i in range(count):
        fmt, ext = (("JPEG", "jpg"), ("PNG", "png"))[i % 2]
        members += [
            (f"{prefix}{i:04d}.{ext}", encode(COLOURS[i % len(COLOURS)], fmt)),
            (f"{prefix}{i:04d}.txt", f"a photo number {i} of {prefix}".encode()),
        ]
    return members


def write_shards(folder: Path, name: str, shards: int, per_shard: int) -> str:
    """``shards`` clean shards ``{name}-00000.tar ...``; returns their brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        write_shard(folder / f"{name}-{s:05d}.tar", good_members(f"{name}{s}", per_shard))
    return str(folder / f"{name}-{{00000..{shards - 1:05d}}}.tar")


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer(context_length=CONTEXT)


def make_loader(spec: DataSpec | str, tok: Tokenizer, **options: object) -> ImageTextLoader:
    if isinstance(spec, str):
        spec = DataSpec(kind="wds", urls=spec)
    settings: dict[str, object] = dict(
        transform=image_transform(SIZE), tokenizer=tok, batch_size=4, shuffle_buffer=4
    )
    return build_image_text_loader(spec, **{**settings, **options})


def keys_of(batches: list[Batch]) -> list[str]:
    return [key for batch in batches for key in batch.keys]


def test_member_names_split_into_key_and_extension() -> None:
    assert split_member_name("000123.jpg") == ("000123", "jpg")
    assert split_member_name("dir/a.b.TXT") == ("dir/a", "b.txt")
    assert split_member_name("noext") == ("noext", "")


def test_brace_patterns_and_sources_expand(tmp_path: Path) -> None:
    pattern = write_shards(tmp_path / "a", "a", 3, 1)
    other = write_shards(tmp_path / "b", "b", 2, 1)
    expanded = expand_urls(f"{pattern}::{other}")
    assert [len(shards) for shards in expanded] == [3, 2]
    assert expanded[0][2].endswith("a-00002.tar")
    missing = pattern.replace("00002", "00004")
    with pytest.raises(DataError, match=r"a-00003\.tar"):
        expand_urls(missing)
    with pytest.raises(DataError, match="only local paths"):
        expand_urls("s3://bucket/{0..3}.tar")


def test_spec_and_arguments_are_validated(tmp_path: Path, tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="kind='tsv'"):
        DataSpec(kind="tsv", urls="x")
    with pytest.raises(ValueError, match="2 sources"):
        DataSpec(kind="wds", urls="a.tar::b.tar", weights=(1.0,))
    with pytest.raises(ValueError, match="kind='wds' only"):
        DataSpec(kind="csv", urls="t.csv", caption_field="captions")
    urls = write_shards(tmp_path, "s", 2, 2)
    with pytest.raises(ValueError, match="resampled=True"):
        make_loader(DataSpec(kind="wds", urls=f"{urls}::{urls}", weights=(1, 2)), tok)
    with pytest.raises(ValueError, match="rank=2"):
        make_loader(urls, tok, rank=2, world_size=2)
    with pytest.raises(DataError, match="nope.csv"):
        make_loader(DataSpec(kind="csv", urls=str(tmp_path / "nope.csv")), tok)


def test_batches_have_the_contract_shapes_and_dtypes(tmp_path: Path, tok: Tokenizer) -> None:
    loader = make_loader(write_shards(tmp_path, "s", 2, 5), tok, batch_size=4)
    batches = list(loader)
    assert [batch.size for batch in batches] == [4, 4, 2]
    pixels, tokens = batches[0]  # unpacks as the (pixels, tokens) pair
    assert pixels.shape == (4, 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert tokens.shape == (4, CONTEXT) and tokens.dtype == torch.int64
    assert len(set(keys_of(batches))) == 10
    assert loader.stats.seen == 10 and loader.stats.skipped == 0


@pytest.mark.parametrize("kind", ["wds", "csv"])
def test_each_sample_once_per_epoch_across_ranks_and_workers(
    tmp_path: Path, tok: Tokenizer, kind: str
) -> None:
    if kind == "wds":
        spec = DataSpec(kind="wds", urls=write_shards(tmp_path, "s", 7, 3))
    else:
        spec = DataSpec(kind="csv", urls=str(write_table(tmp_path, rows=21)))
    orders = []
    for epoch in (0, 1):
        seen: list[str] = []
        for rank in (0, 1):
            options = dict(workers=2, rank=rank, world_size=2, batch_size=2, epoch=epoch)
            loader = make_loader(spec, tok, **options)
            for slot in (0, 1):  # what DataLoader worker `slot` would produce
                seen += keys_of(list(loader.dataset.batches(slot)))
        assert len(seen) == 21 and len(set(seen)) == 21, Counter(seen).most_common(3)
        orders.append(seen)
    assert set(orders[0]) == set(orders[1]) and orders[0] != orders[1]


def test_order_is_a_function_of_seed_and_epoch(tmp_path: Path, tok: Tokenizer) -> None:
    urls = write_shards(tmp_path, "s", 4, 4)
    train = image_transform(SIZE, is_train=True, scale=(0.3, 1.0), color_jitter=0.4)

    def run(seed: int, epoch: int) -> list[Batch]:
        return list(make_loader(urls, tok, seed=seed, transform=train, epoch=epoch))

    first, again = run(0, 0), run(0, 0)
    assert keys_of(first) == keys_of(again)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a.pixels, b.pixels, rtol=0, atol=0)
        assert torch.equal(a.tokens, b.tokens)
    assert keys_of(run(1, 0)) != keys_of(first)
    assert keys_of(run(0, 1)) != keys_of(first)


def test_one_of_several_captions_per_epoch(tmp_path: Path, tok: Tokenizer) -> None:
    captions = ("a red square", "a crimson block", "one red tile")
    assert choose_caption(captions, seed=0, epoch=3, sample_id="k") == choose_caption(
        captions, seed=0, epoch=3, sample_id="k"
    )
    picks = {choose_caption(captions, seed=0, epoch=e, sample_id="k") for e in range(20)}
    assert picks == set(captions)
    shard = write_shard(
        tmp_path / "multi.tar",
        [("k0.jpg", encode(COLOURS[0])), ("k0.txt", "\n".join(captions).encode())]
        + [("k1.jpg", encode(COLOURS[1])), ("k1.json", b'{"captions": ["x one", "x two"]}')],
    )
    texts = []
    for epoch in range(12):
        loader = make_loader(shard, tok, epoch=epoch, batch_size=1, max_skip_rate=1.0)
        texts.append(tok.decode(next(iter(loader)).tokens[0].tolist()))  # k1 has no .txt
    assert set(texts) == set(captions)
    spec = DataSpec(kind="wds", urls=shard, caption_field="captions")
    loader = make_loader(spec, tok, batch_size=1, max_skip_rate=1.0)
    assert [tok.decode(b.tokens[0].tolist()) for b in loader] in (["x one"], ["x two"])
    assert loader.stats.counts == {"no_caption": 1}  # k0 has no .json


def test_broken_samples_are_skipped_counted_and_logged(
    tmp_path: Path, tok: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    jpeg = encode(COLOURS[2])
    broken = [
        ("trunc.jpg", jpeg[: len(jpeg) // 2]),
        ("trunc.txt", b"cut short"),
        ("nocap.jpg", jpeg),
        ("blank.jpg", jpeg),
        ("blank.txt", b"  \n "),
        ("zero.jpg", b""),
        ("zero.txt", b"empty file"),
        ("html.jpg", b"<html>not an image</html>"),
        ("html.txt", b"a web page"),
        ("textonly.txt", b"no picture"),
    ]
    write_shard(tmp_path / "x-00000.tar", good_members("good", 4) + broken)
    links = tarfile.TarInfo("link.jpg")
    links.type, links.linkname = tarfile.SYMTYPE, "elsewhere.jpg"
    with tarfile.open(tmp_path / "x-00001.tar", "w") as tar:
        tar.addfile(links)
        tar.addfile(tarfile.TarInfo("link.txt"), io.BytesIO(b""))
    full = Path(write_shard(tmp_path / "full.tar", good_members("cut", 2)))
    with tarfile.open(full) as tar:
        cut = tar.getmember("cut0001.png").offset_data + 10
    (tmp_path / "x-00002.tar").write_bytes(full.read_bytes()[:cut])  # breaks off in cut0001.png
    (tmp_path / "x-00003.tar").write_bytes(b"this is no tar archive" * 40)
    loader = make_loader(str(tmp_path / "x-{00000..00003}.tar"), tok, max_skip_rate=1.0)
    with caplog.at_level(logging.WARNING, logger="clipforge.data"):
        delivered = keys_of(list(loader))
    assert sorted(key.split(":")[-1] for key in delivered) == [
        "cut0000", "good0000", "good0001", "good0002", "good0003",
    ]  # fmt: skip
    stats = loader.stats
    assert stats.counts == {
        "bad_image": 2,
        "no_caption": 2,
        "empty_image": 1,
        "no_image": 1,
        "bad_member": 2,
        "bad_shard": 1,
    }
    assert stats.seen == 14 and stats.skipped == 9
    ends = {reason: sorted(i.split(":")[-1] for i in ids) for reason, ids in stats.examples.items()}
    assert ends["bad_image"] == ["html", "trunc"]
    assert ends["no_caption"] == ["blank", "nocap"]
    assert ends["bad_member"] == ["cut0001", "link"]
    assert stats.examples["bad_shard"] == [f"{tmp_path / 'x-00003.tar'}:<shard>"]
    assert any("x-00000.tar:trunc" in r.getMessage() for r in caplog.records)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_too_many_skips_fail_with_source_and_counts(tmp_path: Path, tok: Tokenizer) -> None:
    members = good_members("ok", 6)
    for i in range(4):
        members += [(f"bad{i}.jpg", b"garbage"), (f"bad{i}.txt", b"caption")]
    urls = write_shard(tmp_path / "half.tar", members)
    loader = make_loader(urls, tok, max_skip_rate=0.2, min_samples=5, shuffle=False)
    with pytest.raises(DataError, match=r"half\.tar.* of \d+ skipped .*bad_image="):
        list(loader)
    relaxed = make_loader(urls, tok, max_skip_rate=0.2, min_samples=50)
    assert len(keys_of(list(relaxed))) == 6 and relaxed.stats.counts == {"bad_image": 4}


def write_table(folder: Path, rows: int, *, suffix: str = ".csv") -> Path:
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths, first, second = [], [], []
    for i in range(rows):
        (images / f"{i:03d}.png").write_bytes(encode(COLOURS[i % 5], "PNG"))
        paths.append(f"images/{i:03d}.png")
        first.append(f"picture {i}")
        second.append(f"image {i}" if i % 2 else "")
    table = folder / f"pairs{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"path": paths, "alt": first, "rewrite": second}), table)
    else:
        lines = ["filepath,caption"] + [f"{p},{c}" for p, c in zip(paths, first, strict=True)]
        table.write_text("\n".join(lines) + "\n")
    return table


def test_table_rows_with_missing_images_are_skipped(tmp_path: Path, tok: Tokenizer) -> None:
    table = write_table(tmp_path, rows=6)
    (tmp_path / "images" / "004.png").unlink()
    with table.open("a") as handle:
        handle.write("images/005.png,\n")  # a row without caption
    loader = make_loader(DataSpec(kind="csv", urls=str(table)), tok, max_skip_rate=1.0)
    batches = list(loader)
    assert len(keys_of(batches)) == 5 and batches[0].pixels.shape[1:] == (3, SIZE, SIZE)
    assert loader.stats.counts == {"missing_file": 1, "no_caption": 1}
    assert loader.stats.examples["missing_file"] == [f"{table}:4:images/004.png"]


def test_parquet_table_with_several_caption_columns(tmp_path: Path, tok: Tokenizer) -> None:
    table = write_table(tmp_path, rows=8, suffix=".parquet")
    spec = DataSpec(
        kind="csv", urls=str(table), image_column="path", caption_columns=("alt", "rewrite")
    )
    texts = set()
    for epoch in range(10):
        loader = make_loader(spec, tok, epoch=epoch, batch_size=8, shuffle=False)
        texts.add(tok.decode(next(iter(loader)).tokens[1].tolist()))  # row 1 has two captions
    assert texts == {"picture 1", "image 1"}
    with pytest.raises(DataError, match="no column.*'caption'"):
        make_loader(DataSpec(kind="csv", urls=str(table)), tok)


def test_resampled_mode_mixes_sources_by_weight(tmp_path: Path, tok: Tokenizer) -> None:
    a = write_shards(tmp_path / "a", "a", 4, 5)
    b = write_shards(tmp_path / "b", "b", 2, 5)
    spec = DataSpec(kind="wds", urls=f"{a}::{b}", weights=(3, 1), num_samples=400)
    loader = make_loader(spec, tok, resampled=True, batch_size=20, workers=2)
    assert loader.num_batches == 20
    keys = [k for slot in (0, 1) for k in keys_of(list(loader.dataset.batches(slot)))]
    assert len(keys) == 400
    share = sum("/a/" in key for key in keys) / len(keys)
    assert 0.65 < share < 0.85, share


def test_resampled_mode_is_endless_and_seeded_per_rank(tmp_path: Path, tok: Tokenizer) -> None:
    urls = write_shards(tmp_path, "s", 2, 3)

    def take(rank: int, seed: int = 0) -> list[str]:
        loader = make_loader(urls, tok, resampled=True, rank=rank, world_size=2, seed=seed)
        return keys_of(list(itertools.islice(iter(loader), 5)))  # 20 samples out of 6

    assert len(take(0)) == 20
    assert take(0) == take(0)
    assert take(1) != take(0) and take(0, seed=1) != take(0)


def same_batches(resumed: list[tuple[torch.Tensor, torch.Tensor]], batches: list[Batch]) -> bool:
    return len(resumed) == len(batches) and all(
        torch.equal(pixels, b.pixels) and torch.equal(tokens, b.tokens)
        for (pixels, tokens), b in zip(resumed, batches, strict=True)
    )


def test_resume_continues_with_the_same_batches(tmp_path: Path, tok: Tokenizer) -> None:
    urls = write_shards(tmp_path, "s", 3, 5)
    train = image_transform(SIZE, is_train=True, scale=(0.3, 1.0))

    def make(epoch: int) -> ImageTextLoader:
        return make_loader(urls, tok, transform=train, epoch=epoch)

    reference = list(make(2))
    assert len(reference) == 4  # 15 samples in batches of 4
    resumed = LoaderBatches(make, steps_per_epoch=4)(2 * 4 + 2)  # step 2 of epoch 2
    assert same_batches(list(itertools.islice(resumed, 2)), reference[2:])
    assert same_batches([next(resumed)], list(make(3))[:1])  # a new epoch starts from its beginning


def test_real_workers_match_the_simulated_slots_and_resume(tmp_path: Path, tok: Tokenizer) -> None:
    urls = write_shards(tmp_path, "s", 4, 4)
    spec = DataSpec(kind="wds", urls=urls, num_samples=64)
    options = dict(workers=2, batch_size=4, resampled=True)
    loader = make_loader(spec, tok, **options)
    slots = [list(loader.dataset.batches(slot)) for slot in (0, 1)]
    expected = [batch for pair in zip(*slots, strict=True) for batch in pair]  # DataLoader's turns
    delivered = list(loader)  # two worker processes
    assert [b.keys for b in delivered] == [b.keys for b in expected]
    torch.testing.assert_close(delivered[3].pixels, expected[3].pixels, rtol=0, atol=0)
    resumed = LoaderBatches(lambda epoch: make_loader(spec, tok, epoch=epoch, **options), 16)(5)
    assert same_batches(list(itertools.islice(resumed, 11)), expected[5:])


def test_skip_stats_merge() -> None:
    total, delta = SkipStats(), SkipStats(seen=3)
    delta.add(SkipReason.BAD_IMAGE, "s:1")
    total.merge(delta)
    total.merge(delta)
    assert total.seen == 6 and total.counts == {"bad_image": 2}
    assert total.examples == {"bad_image": ["s:1", "s:1"]}
    assert total.to_dict() == {"seen": 6, "counts": total.counts, "examples": total.examples}
    assert "2 of 6 skipped" in total.summary()
