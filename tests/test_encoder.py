"""``clipforge.encoder``: one encoder, so every caller gets the same features for the same input.

Each caller (evaluation features, embedding rows, the query server, zero-shot prompts) is run
on the same images and captions with the same tiny model and compared with the model's own
``encode_image``/``encode_text``, computed here one row at a time without the encoder.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clipforge
from clipforge.data import evalsets
from clipforge.data.shapes import write_shapes
from clipforge.encoder import Encoder
from clipforge.evaluate import CachedEncoder
from clipforge.search.embed import embed_collection
from clipforge.search.index import build_index
from clipforge.search.layout import emb_path, read_info
from clipforge.search.queries import Query
from clipforge.search.server_config import load_server_config
from clipforge.search.service import SearchService
from clipforge.transforms import load_image
from clipforge.zeroshot import build_classifier, encode_prompt_sets

# Embedding files hold float16 unit vectors: about 3 significant digits.
FP16_ATOL = 2e-3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint() -> str:
    """A tiny trained-format checkpoint that records its own architecture."""
    return str(Path(__file__).parent / "fixtures" / "models" / "tiny-vit.safetensors")


@pytest.fixture(scope="module")
def model(checkpoint) -> clipforge.CLIP:
    return clipforge.create_model(checkpoint).eval()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, list[Path], list[str]]:
    """Six shapes images with captions as a CSV table: ``(csv, image paths, captions)``."""
    root = tmp_path_factory.mktemp("shapes")
    write_shapes(root, 6, format="csv", image_size=32)
    with open(root / "captions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [root / row["filepath"] for row in rows]
    return root / "captions.csv", paths, [row["caption"] for row in rows]


def reference_images(model, transform, paths) -> torch.Tensor:
    """Unit image features (N, D), one image per forward pass."""
    with torch.no_grad():
        rows = [model.encode_image(transform(load_image(p))[None]) for p in paths]
    return F.normalize(torch.cat(rows), dim=-1)


def reference_texts(model, texts) -> torch.Tensor:
    """Unit text features (N, D), one text per forward pass."""
    tokens = clipforge.get_tokenizer(model)(texts)
    with torch.no_grad():
        rows = [model.encode_text(row[None]) for row in tokens]
    return F.normalize(torch.cat(rows), dim=-1)


def test_texts_in_length_sorted_batches_equal_one_text_at_a_time(model) -> None:
    texts = ["a", "a very long caption " * 4, "two words", "x y z w v", "b", "c d e"]
    expected = reference_texts(model, texts)
    for batch_size in (1, 2, 4, 64):
        encoder = Encoder(model, batch_size=batch_size)
        torch.testing.assert_close(encoder.texts(texts), expected, atol=1e-5, rtol=0)
    unnormalised = Encoder(model).texts(texts, normalize=False)
    assert not torch.allclose(unnormalised.norm(dim=-1), torch.ones(len(texts)))
    torch.testing.assert_close(F.normalize(unnormalised, dim=-1), expected, atol=1e-5, rtol=0)


def test_images_from_pixels_and_pil_agree_and_come_back_float32_on_cpu(model, shapes) -> None:
    _, paths, _ = shapes
    encoder = Encoder(model, batch_size=4)
    expected = reference_images(model, encoder.transform, paths)
    from_pil = encoder.pil_images([load_image(p) for p in paths])
    pixels = torch.stack([encoder.transform(load_image(p)) for p in paths])
    assert from_pil.dtype == torch.float32 and from_pil.device.type == "cpu"
    torch.testing.assert_close(from_pil, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(encoder.images(pixels), expected, atol=1e-5, rtol=0)
    assert encoder.images(pixels[:0]).shape == (0, model.config.embed_dim)


def test_every_caller_gets_the_same_features(model, checkpoint, shapes, tmp_path) -> None:
    table, paths, captions = shapes
    encoder = Encoder(model)
    images = reference_images(model, encoder.transform, paths)
    texts = reference_texts(model, captions)

    embed_collection(
        [str(table)],
        tmp_path / "emb",
        model=checkpoint,
        batch_size=4,
        num_workers=0,
        progress=False,
    )
    rows_img = torch.from_numpy(np.load(emb_path(tmp_path / "emb", 0, "image"))).float()
    rows_text = torch.from_numpy(np.load(emb_path(tmp_path / "emb", 0, "text"))).float()
    torch.testing.assert_close(rows_img, images, atol=FP16_ATOL, rtol=0)
    torch.testing.assert_close(rows_text, texts, atol=FP16_ATOL, rtol=0)

    evaluation = CachedEncoder(encoder=encoder, identity={"name": "tiny"})
    torch.testing.assert_close(
        F.normalize(evaluation.texts(captions), dim=-1), texts, atol=1e-5, rtol=0
    )
    prompts, _ = encode_prompt_sets(encoder, [[caption] for caption in captions])
    torch.testing.assert_close(prompts.cpu(), texts, atol=1e-5, rtol=0)
    weights = build_classifier(encoder, captions[:2], ["{}"])
    torch.testing.assert_close(weights, texts[:2], atol=1e-5, rtol=0)

    query = Encoder.load(checkpoint)
    torch.testing.assert_close(query.texts(captions), texts, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        query.pil_images([load_image(p) for p in paths]), images, atol=1e-5, rtol=0
    )


def test_evaluation_image_features_are_the_encoders(model) -> None:
    encoder = Encoder(model, batch_size=5)
    dataset = evalsets.ShapesRetrievalSet(size=12, image_size=32, transform=encoder.transform)
    encoded = CachedEncoder(encoder=encoder, identity={"name": "tiny"}).images(dataset, {})
    with torch.no_grad():
        pixels = torch.stack([dataset[i][0] for i in range(len(dataset))])
        expected = model.encode_image(pixels)  # (N, D) unnormalised, as evaluation keeps them
    assert encoded.indices.tolist() == list(range(12))
    torch.testing.assert_close(encoded.features, expected, atol=1e-5, rtol=0)


def test_bf16_casts_the_weights_and_amp_bf16_autocasts(checkpoint, shapes) -> None:
    _, paths, captions = shapes
    fp32, bf16, amp = (Encoder.load(checkpoint, precision=p) for p in
                       ("fp32", "bf16", "amp_bf16"))  # fmt: skip
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in amp.model.parameters()} == {torch.float32}
    assert amp.precision.autocast_dtype == torch.bfloat16 and fp32.precision.autocast_dtype is None
    assert fp32.weights_digest == bf16.weights_digest == amp.weights_digest
    images = [load_image(p) for p in paths]
    reference = (fp32.texts(captions), fp32.pil_images(images))
    for low in (bf16, amp):
        got_both = (low.texts(captions), low.pil_images(images))
        for got, expected in zip(got_both, reference, strict=True):
            assert got.dtype == torch.float32
            assert not torch.equal(got, expected)
            assert (got * expected).sum(-1).min() > 0.99


def test_zero_shot_prompts_are_encoded_at_the_encoders_precision(checkpoint) -> None:
    names, templates = ["red circle", "blue square", "green star"], ["a {}", "a photo of a {}"]
    fp32, amp = (Encoder.load(checkpoint, precision=p) for p in ("fp32", "amp_bf16"))
    exact, autocast = (build_classifier(e, names, templates) for e in (fp32, amp))
    assert autocast.dtype == torch.float32
    assert not torch.equal(exact, autocast)  # autocast really ran on the prompts
    assert (exact * autocast).sum(-1).min() > 0.99


def test_encoder_without_precision_keeps_the_callers_model(model) -> None:
    half = clipforge.create_model("tiny", precision="bf16")
    encoder = Encoder(half)
    assert encoder.precision.name == "bf16" and next(half.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision='fp8'"):
        Encoder(model, precision="fp8")


def test_the_server_encodes_queries_with_the_collections_precision(
    checkpoint, shapes, tmp_path
) -> None:
    table, _, captions = shapes
    for precision in ("fp32", "bf16"):
        emb = tmp_path / f"{precision}-emb"
        embed_collection(
            [str(table)], emb, model=checkpoint, num_workers=0, progress=False, precision=precision
        )
        assert read_info(emb)["precision"] == precision
        build_index(emb, tmp_path / f"{precision}-index", kind="flat", modality="text")
    config = load_server_config(
        {"indices": {p: {"index": str(tmp_path / f"{p}-index")} for p in ("fp32", "bf16")}}
    )
    service = SearchService.from_config(config)
    served = service.indices["bf16"]
    assert served.encoder.precision.name == "bf16"
    assert next(served.encoder.model.parameters()).dtype == torch.bfloat16
    assert service.indices["fp32"].encoder.precision.name == "fp32"
    assert {s["precision"] for s in service.indices_summary()} == {"fp32", "bf16"}
    stored = np.load(emb_path(tmp_path / "bf16-emb", 0, "text")).astype(np.float32)
    answer = service.search(Query(kind="text", value=captions[2], index="bf16", k=1, dedup=False))
    assert answer["results"][0]["score"] == pytest.approx(float(stored[2] @ stored[2]), abs=5e-3)
