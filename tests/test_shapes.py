"""The shapes world: determinism, split membership, captions, labels, probe and writers."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import tarfile
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clipforge.data.evalsets import ShapesClassificationSet
from clipforge.data.shapes import (
    ALL_PAIRS,
    COLOURS,
    HELDOUT_PAIRS,
    POSITIONS,
    SHAPES,
    SIZES,
    TRAIN_PAIRS,
    Background,
    Scene,
    SceneObject,
    ShapesWorld,
    canonical_caption,
    caption,
    render,
    word_order_probe,
    write_shapes,
)
from clipforge.data.shapes.captions import COLOUR_P, COLOUR_WORDS, SHAPE_WORDS, SIZE_P, SIZE_WORDS
from clipforge.data.shapes.drawing import UNIT_OUTLINES
from clipforge.data.shapes.vocab import COLOUR_RGB, relation


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=0, image_size=64)


def _obj(shape: str, colour: str, position: str, size: str = "small") -> SceneObject:
    return SceneObject(shape, colour, size, position, rgb=COLOUR_RGB[colour])


def _plain(*objects: SceneObject) -> Scene:
    return Scene(objects, Background("plain", (128, 128, 128), (128, 128, 128)))


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    padded = f" {text.replace(',', ' ')} "
    return any(f" {word} " in padded for word in words)


# Determinism and splits


def test_samples_are_a_pure_function_of_seed_split_index(world: ShapesWorld) -> None:
    keys = [(split, i) for split in ("train", "heldout") for i in (0, 1, 7, 123, 99_999)]
    first = {key: world.sample(*key) for key in keys}
    # A fresh world visiting the indices in reverse order gives the same bytes.
    again = ShapesWorld(seed=0, image_size=64)
    second = {key: again.sample(*key) for key in reversed(keys)}
    for key in keys:
        assert first[key][0].tobytes() == second[key][0].tobytes(), key
        assert first[key][1] == second[key][1], key


def test_different_index_split_or_seed_gives_a_different_sample(world: ShapesWorld) -> None:
    images = {world.sample("train", i)[0].tobytes() for i in range(50)}
    assert len(images) == 50
    base = world.sample("train", 3)[0].tobytes()
    assert world.sample("val", 3)[0].tobytes() != base
    assert ShapesWorld(seed=1).sample("train", 3)[0].tobytes() != base


def test_heldout_pairs_are_fixed_and_leave_every_word_in_train() -> None:
    assert len(HELDOUT_PAIRS) >= 10 and len(set(HELDOUT_PAIRS)) == len(HELDOUT_PAIRS)
    assert set(HELDOUT_PAIRS) <= set(ALL_PAIRS) and len(ALL_PAIRS) == 80
    assert {c for c, _ in TRAIN_PAIRS} == set(COLOURS)
    assert {s for _, s in TRAIN_PAIRS} == set(SHAPES)


def test_heldout_pairs_never_appear_in_train_or_val(world: ShapesWorld) -> None:
    heldout = set(HELDOUT_PAIRS)
    for split, n in (("train", 4000), ("val", 1000)):
        for index in range(n):
            assert not heldout & set(world.scene(split, index).pairs), (split, index)
        for index in range(300):
            assert world.single_object_scene(split, index).pairs[0] not in heldout


def test_heldout_split_always_contains_a_heldout_pair(world: ShapesWorld) -> None:
    seen = set()
    for index in range(1000):
        scene = world.scene("heldout", index)
        assert scene.has_heldout_pair, index
        seen |= set(scene.pairs) & set(HELDOUT_PAIRS)
    assert seen == set(HELDOUT_PAIRS)


def test_train_scenes_cover_the_vocabulary(world: ShapesWorld) -> None:
    scenes = [world.scene("train", i) for i in range(2000)]
    objects = [obj for scene in scenes for obj in scene.objects]
    assert {obj.shape for obj in objects} == set(SHAPES)
    assert {obj.colour for obj in objects} == set(COLOURS)
    assert {obj.size for obj in objects} == set(SIZES)
    assert {obj.position for obj in objects} == set(POSITIONS)
    assert {scene.background.kind for scene in scenes} == {"plain", "noise", "stripes", "gradient"}
    assert Counter(len(scene.objects) for scene in scenes).keys() == {1, 2, 3}
    # Repeated pairs occur often enough to teach counting.
    assert sum(len(set(s.pairs)) < len(s.pairs) for s in scenes) > 100


# Rendering


@pytest.mark.parametrize("size", [32, 64, 97, 512])
def test_render_any_size(world: ShapesWorld, size: int) -> None:
    image = render(world.scene("train", 5), size)
    assert image.mode == "RGB" and image.size == (size, size)


def test_objects_are_drawn_in_their_colour_and_background_stays_far(world: ShapesWorld) -> None:
    for index in range(200):
        scene = world.single_object_scene("train", index)
        obj = scene.objects[0]
        image = np.asarray(render(scene, 128)).astype(int)  # (128, 128, 3)
        cx, cy = (int(c * 128) for c in obj.center)
        assert np.abs(image[cy, cx] - obj.rgb).max() <= 2, (index, obj)
        # A corner pixel is background; it is far from the object's colour.
        assert math.dist(image[0, 0], obj.rgb) > 100, (index, scene.background)


def test_render_is_anti_aliased() -> None:
    image = np.asarray(render(_plain(_obj("circle", "white", "center", "large")), 64))
    levels = set(image[..., 0].ravel().tolist())
    # Edge pixels blend object and background (a hard-edged drawing would give no other level).
    assert len(levels - {128, 250}) >= 6


def test_scene_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="shape 'blob'"):
        _obj("blob", "red", "left")
    with pytest.raises(ValueError, match="colour 'teal'"):
        SceneObject("star", "teal", "small", "left", rgb=(0, 128, 128))
    with pytest.raises(ValueError, match="positions"):
        _plain(_obj("star", "red", "left"), _obj("heart", "blue", "left"))


def test_objects_keep_apart_and_inside_the_image(world: ShapesWorld) -> None:
    """Boxes of the drawn outlines (rotation, size, jitter applied) never overlap, and reach
    less than a pixel past the edge of a 64 px image: a caption's objects are all visible."""
    pixel = 1 / 64
    for index in range(3000):
        boxes = [_outline_box(obj) for obj in world.scene("train", index).objects]
        for left, top, right, bottom in boxes:
            assert -pixel < min(left, top) and max(right, bottom) < 1 + pixel, index
        for a, b in itertools.combinations(boxes, 2):
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, (index, a, b)


def _outline_box(obj: SceneObject) -> tuple[float, float, float, float]:
    cos, sin = math.cos(math.radians(obj.rotation)), math.sin(math.radians(obj.rotation))
    points = UNIT_OUTLINES[obj.shape] @ (np.array([[cos, -sin], [sin, cos]]) * obj.radius)
    (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
    x, y = obj.center
    return x + left, y + top, x + right, y + bottom


# Captions


def test_captions_name_every_shape_and_some_colours_and_sizes(world: ShapesWorld) -> None:
    objects = with_colour = with_size = 0
    for index in range(2000):  # enough objects for the shares below to be within ~1%
        scene = world.scene("train", index)
        text = world.caption("train", index, scene)
        canonical = canonical_caption(scene)
        for obj in scene.objects:
            shape_words = tuple(w for pair in SHAPE_WORDS[obj.shape] for w in pair)
            assert _mentions(text, shape_words), (text, obj)
            objects += 1
            with_colour += _mentions(text, COLOUR_WORDS[obj.colour])
            with_size += _mentions(text, SIZE_WORDS[obj.size])
            assert _mentions(canonical, (obj.colour,)) and obj.shape in canonical
            assert obj.size in canonical
    # Colour is left out of about half of the phrases (captions.COLOUR_P); another object of
    # the same colour can still name it, so the share of objects is a little above COLOUR_P.
    assert COLOUR_P <= with_colour / objects <= COLOUR_P + 0.12, with_colour / objects
    # Size likewise (captions.SIZE_P), except that a group of mixed sizes never names it.
    assert SIZE_P - 0.05 <= with_size / objects <= SIZE_P + 0.12, with_size / objects
    captions = {world.caption("train", i) for i in range(500)}
    assert len(captions) > 400  # templates and synonyms vary the text


def test_caption_variants_are_further_captions_of_the_same_scene(world: ShapesWorld) -> None:
    differ = 0
    for index in range(40):
        scene = world.scene("train", index)
        assert world.caption("train", index, scene, variant=0) == world.caption("train", index)
        variants = [world.caption("train", index, scene, variant=v) for v in range(1, 4)]
        assert variants == [world.caption("train", index, variant=v) for v in range(1, 4)]
        for text in variants:
            for obj in scene.objects:
                shape_words = tuple(w for pair in SHAPE_WORDS[obj.shape] for w in pair)
                assert _mentions(text, shape_words), (text, obj)
        differ += len(set(variants) | {world.caption("train", index)}) > 1
    assert differ >= 30  # mostly other wordings, drawn from streams of their own
    with pytest.raises(ValueError, match="variant"):
        world.caption("train", 0, variant=-1)


def test_counting_captions() -> None:
    scene = _plain(_obj("square", "blue", "left"), _obj("square", "blue", "right"))
    assert canonical_caption(scene) == "two small blue squares on the left and on the right"
    texts = [caption(scene, random.Random(i)) for i in range(30)]
    assert all(_mentions(t, ("two", "a pair of")) and "squares" in t for t in texts)
    # Same shape and colour but different sizes: counted in random captions, not canonical.
    mixed = _plain(_obj("star", "red", "top", "small"), _obj("star", "red", "bottom", "large"))
    assert canonical_caption(mixed) == (
        "a small red star at the top and a large red star at the bottom"
    )


def test_relation_captions_are_true() -> None:
    scene = _plain(_obj("hexagon", "cyan", "top"), _obj("heart", "pink", "center"))
    texts = {caption(scene, random.Random(i)) for i in range(60)}
    assert any(" above " in t or " over " in t for t in texts)
    for text in texts:
        if " above " in text or " over " in text:
            assert text.index("hexagon") < text.index("heart"), text
        if " below " in text or " under " in text or " beneath " in text:
            assert text.index("heart") < text.index("hexagon"), text
    assert (
        canonical_caption(scene)
        == "a small cyan hexagon at the top and a small pink heart in the center"
    )


# Datasets


@pytest.mark.parametrize(
    ("task", "n_classes", "attribute"),
    [("shape", 8, lambda o: o.shape), ("colour", 10, lambda o: o.colour)],
)
def test_classification_labels_match_the_scene(world, task, n_classes, attribute) -> None:
    dataset = ShapesClassificationSet(task, size=200, transform=lambda im: im.size)
    assert len(dataset.classnames) == n_classes == len(dataset.class_captions)
    assert dataset.split == "val"
    labels = []
    for index in range(len(dataset)):
        scene = dataset.scenes[index]
        assert len(scene.objects) == 1
        label = dataset.labels[index]
        assert dataset.classnames[label] == attribute(scene.objects[0])
        labels.append(label)
    assert dataset[0] == ((64, 64), labels[0])
    assert set(labels) == set(range(n_classes))  # balanced sampling reaches every class


def test_heldout_pair_classification(world: ShapesWorld) -> None:
    dataset = ShapesClassificationSet("heldout_pair", size=120)
    assert dataset.split == "heldout" and len(dataset.classnames) == 80
    assert "red star" in dataset.classnames
    assert dataset.class_captions[dataset.classnames.index("red star")] == "a red star"
    assert dataset.class_captions[dataset.classnames.index("orange square")] == "an orange square"
    seen = set()
    for index in range(len(dataset)):
        obj = dataset.scenes[index].objects[0]
        assert obj.pair in HELDOUT_PAIRS
        assert dataset.classnames[dataset.labels[index]] == f"{obj.colour} {obj.shape}"
        seen.add(obj.pair)
    assert seen == set(HELDOUT_PAIRS)
    image, label = dataset[0]
    assert image.size == (64, 64) and label == dataset.labels[0]


# Word-order probe


def _parse(text: str) -> tuple[tuple[str, str], str, tuple[str, str]]:
    words = text.split()  # "a red circle left of an orange square"
    rel = " ".join(words[3:5]) if words[4] == "of" else words[3]
    first, second = words[1:3], words[-2:]
    return (first[0], first[1]), rel, (second[0], second[1])


def _holds(text: str, scene: Scene) -> bool:
    first, rel, second = _parse(text)
    return any(
        a.pair == first and b.pair == second and relation(a.position, b.position) == rel
        for a in scene.objects
        for b in scene.objects
        if a is not b
    )


def test_word_order_probe(world: ShapesWorld) -> None:
    items = word_order_probe(world, n=60)
    assert len(items) == 60
    for index, (image, correct, swapped) in enumerate(items):
        scene = world.probe_scene(index)
        assert image.tobytes() == world.render(scene).tobytes()
        assert _holds(correct, scene) and not _holds(swapped, scene), (correct, swapped)
        kind = ("colour", "shape", "relation")[index % 3]
        if kind == "relation":
            diff = [(a, b) for a, b in zip(correct.split(), swapped.split(), strict=True) if a != b]
            assert len(diff) == 1, (correct, swapped)
        else:
            assert sorted(correct.split()) == sorted(swapped.split()) and correct != swapped
        for text in (correct, swapped):
            first, _, second = _parse(text)
            assert first in TRAIN_PAIRS and second in TRAIN_PAIRS
    relation_only = word_order_probe(world, n=6, swaps=("relation",))
    assert all(len(c.split()) == len(s.split()) for _, c, s in relation_only)


# Writers


def _read_tar(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def test_write_wds_layout(tmp_path, world: ShapesWorld) -> None:
    summary = write_shapes(tmp_path, n=25, format="wds", split="val", shard_size=10)
    assert (summary.count, summary.shards) == (25, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{i:05d}{suffix}" for i in range(3) for suffix in (".tar", ".parquet", "_stats.json")
    )
    for shard, count in enumerate((10, 10, 5)):
        keys = [f"{shard:05d}{i:04d}" for i in range(count)]
        assert all(len(key) == 9 for key in keys)
        files = _read_tar(tmp_path / f"{shard:05d}.tar")
        assert list(files) == [f"{k}.{ext}" for k in keys for ext in ("jpg", "txt", "json")]
        table = pq.read_table(tmp_path / f"{shard:05d}.parquet").to_pylist()
        assert [row["key"] for row in table] == keys
        stats = json.loads((tmp_path / f"{shard:05d}_stats.json").read_text())
        assert stats["count"] == stats["successes"] == count and stats["failed"] == 0
        assert stats["start_time"] <= stats["end_time"]
        for position, (key, row) in enumerate(zip(keys, table, strict=True)):
            index = shard * 10 + position
            meta = json.loads(files[f"{key}.json"])
            text = files[f"{key}.txt"].decode()
            assert text == meta["caption"] == row["caption"] == world.caption("val", index)
            assert meta["key"] == key and meta["split"] == "val" and meta["index"] == index
            assert (
                meta["shapes"] == row["shapes"] == world.scene("val", index).attributes()["shapes"]
            )
            assert len(meta["scene"]["objects"]) == row["n_objects"]
            assert (row["status"], row["width"], row["height"]) == ("success", 64, 64)
            image = Image.open(io.BytesIO(files[f"{key}.jpg"]))
            assert image.format == "JPEG" and image.size == (64, 64)


def test_write_wds_is_byte_identical_across_runs_and_workers(tmp_path) -> None:
    write_shapes(tmp_path / "a", n=12, shard_size=4, image_size=32, seed=3)
    write_shapes(tmp_path / "b", n=12, shard_size=4, image_size=32, seed=3, workers=2)
    for shard in range(3):
        name = f"{shard:05d}.tar"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_shapes(tmp_path / "c", n=12, shard_size=4, image_size=32, seed=4)
    assert (tmp_path / "a/00000.tar").read_bytes() != (tmp_path / "c/00000.tar").read_bytes()


def test_write_csv_layout(tmp_path, world: ShapesWorld) -> None:
    summary = write_shapes(tmp_path, n=7, format="csv", shard_size=5, image_size=48)
    assert summary.count == 7
    with (tmp_path / "captions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(tmp_path / "captions.parquet").to_pylist()
    keys = [f"00000{i:04d}" for i in range(5)] + [f"00001{i:04d}" for i in range(2)]
    assert [row["key"] for row in rows] == [row["key"] for row in table] == keys
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"{k}.jpg" for k in keys]
    for index, (row, record) in enumerate(zip(rows, table, strict=True)):
        assert row["filepath"] == record["filepath"] == f"images/{row['key']}.jpg"
        assert row["caption"] == record["caption"] == world.caption("train", index)
        assert row["colours"] == record["colours"]
        assert Image.open(tmp_path / row["filepath"]).size == (48, 48)


def test_write_zero_samples(tmp_path) -> None:
    assert write_shapes(tmp_path / "w", n=0).shards == 0
    assert list((tmp_path / "w").iterdir()) == []
    write_shapes(tmp_path / "c", n=0, format="csv")
    assert pq.read_table(tmp_path / "c/captions.parquet").num_rows == 0


# Bad arguments


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda w, p: w.scene("test", 0), "split 'test'"),
        (lambda w, p: w.sample("train", -1), "index -1"),
        (lambda w, p: ShapesWorld(seed=-1), "seed -1"),
        (lambda w, p: ShapesWorld(image_size=8), "image_size 8"),
        (lambda w, p: ShapesWorld(image_size=2048), "image_size 2048"),
        (lambda w, p: ShapesClassificationSet("shape", split="tain"), "split 'tain'"),
        (lambda w, p: ShapesClassificationSet("shape", size=-5), "size -5"),
        (lambda w, p: ShapesClassificationSet("count"), "task 'count'"),
        (lambda w, p: ShapesClassificationSet("heldout_pair", split="val"), "split 'val'"),
        (lambda w, p: word_order_probe(w, n=-1), "n -1"),
        (lambda w, p: word_order_probe(w, swaps=("size",)), "swaps"),
        (lambda w, p: write_shapes(p, n=-1), "n -1"),
        (lambda w, p: write_shapes(p, n=5, format="zip"), "format 'zip'"),
        (lambda w, p: write_shapes(p, n=5, split="test"), "split 'test'"),
        (lambda w, p: write_shapes(p, n=5, shard_size=0), "shard_size 0"),
        (lambda w, p: write_shapes(p, n=5, shard_size=20_000), "shard_size 20000"),
        (lambda w, p: write_shapes(p, n=5, workers=0), "workers 0"),
        (lambda w, p: write_shapes(p, n=5, image_size=4), "image_size 4"),
    ],
)
def test_bad_arguments_name_the_argument(world, tmp_path, call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call(world, tmp_path)
