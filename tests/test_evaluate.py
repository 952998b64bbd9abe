"""Evaluation tasks on tiny synthetic data: a random tiny model on small shapes-world views.

Metrics are checked against formulas computed here from the model itself, not only for shape;
the feature cache is checked by counting calls of the image tower.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import clipforge.data
import clipforge.encoder
import clipforge.evaluate.run
from clipforge import adapt, create_model, save_model
from clipforge.data import evalsets
from clipforge.data.evalsets import EvalOptions, ShapesClassificationSet
from clipforge.data.shapes import write_shapes
from clipforge.data.shapes.vocab import HELDOUT_PAIRS
from clipforge.encoder import Encoder
from clipforge.evaluate import (
    EvalConfig,
    SplitSpec,
    parse_split,
    read_result,
    run_eval,
)
from clipforge.evaluate.splits import check_disjoint
from clipforge.evaluate.tasks import fewshot, robustness
from clipforge.evaluate.tasks.common import LabelSpace
from clipforge.models import CLIP
from clipforge.tokenizer import get_tokenizer
from clipforge.transforms import image_transform
from clipforge.zeroshot import template_head

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def model() -> CLIP:
    torch.manual_seed(0)
    return create_model(TINY).eval()


def config(**overrides) -> EvalConfig:
    """An EvalConfig from top-level values and section mappings (merged into the defaults)."""
    values = {"model": "tiny-test", "run": {"progress": False, "batch_size": 64}}
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return EvalConfig.from_dict(values)


@pytest.fixture
def count_image_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts images passed through ``CLIP.encode_image`` (any instance)."""
    counter = [0]
    original = CLIP.encode_image

    def counting(self: CLIP, pixels: torch.Tensor) -> torch.Tensor:
        counter[0] += pixels.shape[0]
        return original(self, pixels)

    monkeypatch.setattr(CLIP, "encode_image", counting)
    return counter


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "segmentation"}, "unknown task 'segmentation'"),
        ({"task": "fewshot", "fewshot": {"methods": ("tip", "lora")}}, "unknown method 'lora'"),
        (
            {"task": "zeroshot", "fewshot": {"methods": ("tip",)}},
            "methods=tip does not apply to task 'zeroshot' (only to fewshot)",
        ),
        (
            {"task": "linear-probe", "fewshot": {"methods": ("linear",)}},
            "does not apply to task 'linear-probe'",
        ),
        ({"task": "fewshot", "fewshot": {"shots": (0, 2)}}, "positive integers, got 0"),
        ({"task": "fewshot", "fewshot": {"shots": (True,)}}, "wrong type; expected int"),
        ({"task": "fewshot", "fewshot": {"shots": (2, 2)}}, "name a count twice"),
        ({"task": "fewshot", "fewshot": {"shots": ()}}, "shots is empty"),
        ({"task": "zeroshot", "train_split": "train"}, "train_split='train' does not apply"),
        ({"task": "retrieval", "head": {"templates": "t.txt"}}, "templates='t.txt' does not apply"),
        ({"task": "fewshot", "robustness": {"ood_dataset": "x"}}, "only to robustness"),
        ({"task": "zeroshot", "head": {"cupl": "c.json", "waffle": True}}, "not cupl and waffle"),
        ({"task": "zeroshot", "run": {"precision": "fp8"}}, "precision='fp8' is not a precision"),
        (
            {"task": "zeroshot", "head": {"waffle": True, "language": "de"}},
            "nothing to translate with waffle",
        ),
        ({"task": "zeroshot", "run": {"batch_size": 0}}, "batch_size=0 must be >= 1"),
        ({"task": "zeroshot", "model": None}, "give a model"),
    ],
)
def test_config_rejects_bad_options(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config(dataset="shapes/shape", **overrides)


def test_config_defaults_and_sorted_shots() -> None:
    cfg = config(task="fewshot", dataset="shapes/heldout", fewshot={"shots": (8, 1, 4)})
    assert cfg.fewshot.shots == (1, 4, 8)
    assert cfg.fewshot.methods == ("tip", "tip-f", "gda", "coop", "linear")
    assert config(task="fewshot", dataset="shapes/heldout").fewshot.shots == (1, 2, 4, 8, 16)
    assert json.loads(json.dumps(cfg.to_dict()))["fewshot"]["shots"] == [1, 4, 8]
    assert EvalConfig.from_dict(cfg.to_dict()) == cfg


def test_data_package_reexports_evalsets() -> None:
    assert set(clipforge.data.__all__) == set(evalsets.__all__)
    assert clipforge.data.open_evalset is evalsets.open_evalset
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        clipforge.data.nope  # noqa: B018


# --- splits --------------------------------------------------------------------------------


def test_parse_split() -> None:
    assert parse_split("val") == SplitSpec("val")
    assert parse_split("heldout[800:2800]") == SplitSpec("heldout", 800, 2800)
    assert parse_split("test[5:]") == SplitSpec("test", 5, None)
    assert str(parse_split("val[:10]")) == "val[0:10]"
    for bad in ("val[a:b]", "val[3]", "val[5:5]", " ", "val]"):
        with pytest.raises(ValueError, match="split"):
            parse_split(bad)


def test_check_disjoint() -> None:
    check_disjoint(
        {"test": (SplitSpec("heldout"), 800), "train": (SplitSpec("heldout", 800), 2000)}
    )
    check_disjoint({"test": (None, 100), "train": (SplitSpec("train"), 100)})
    with pytest.raises(ValueError, match=r"val split 'heldout\[700:900\]' shares samples 700-799"):
        check_disjoint(
            {"test": (SplitSpec("heldout"), 800), "val": (SplitSpec("heldout", 700, 900), 200)}
        )
    with pytest.raises(ValueError, match="shares samples 0-9 of split 'val'"):
        check_disjoint({"test": (SplitSpec("val"), 10), "val": (SplitSpec("val"), 10)})


def test_sample_range_slices_a_set() -> None:
    base = ShapesClassificationSet("shape", size=30, image_size=16, transform=image_transform(16))
    part = base.select(10, 25)
    assert len(part) == 15 and part.key(0) == base.key(10) == "val/10"
    np.testing.assert_array_equal(part.labels, base.labels[10:25])
    assert part.classnames == base.classnames and part.templates == base.templates
    torch.testing.assert_close(part[3][0], base[13][0])
    with pytest.raises(ValueError, match="outside the 30 samples"):
        base.select(20, 40)
    with pytest.raises(IndexError):
        part[15]


def test_a_range_slices_every_per_sample_attribute() -> None:
    probe = evalsets.ShapesWordOrderSet(size=24, image_size=16)
    part = probe.select(6, 18)
    assert list(part.kinds) == list(probe.kinds[6:18])  # per-kind accuracy_* metrics need them
    assert part.captions == probe.captions[6:18]
    shapes = ShapesClassificationSet("shape", size=20, image_size=16)
    assert shapes.select(5, 15).scenes == shapes.scenes[5:15]
    # A per-sample attribute that EvalSet.PER_SAMPLE does not name would not be sliced.
    views = (shapes, probe, evalsets.ShapesRetrievalSet(size=7, image_size=16))
    for view in views:
        per_sample = {
            name
            for name, value in vars(view).items()
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) == len(view)
        }
        assert per_sample <= set(view.PER_SAMPLE), (view.name, per_sample)


def test_overlapping_roles_fail_before_encoding(model: CLIP, count_image_calls: list[int]) -> None:
    cfg = config(
        task="fewshot",
        dataset="shapes/heldout",
        split="heldout[0:40]",
        train_split="heldout[30:90]",
        val_split="heldout[90:120]",
        fewshot={"methods": ("tip",)},
    )
    with pytest.raises(ValueError, match="train split 'heldout\\[30:90\\]' shares samples 30-39"):
        run_eval(cfg, model)
    assert count_image_calls[0] == 0


# --- zero-shot, retrieval, caption selection ------------------------------------------------


def _features(model: CLIP, dataset) -> torch.Tensor:
    with torch.no_grad():
        pixels = torch.stack([dataset[i][0] for i in range(len(dataset))])
        return model.encode_image(pixels)


def test_zeroshot_matches_the_formula(model: CLIP, tmp_path: Path) -> None:
    result = run_eval(
        config(
            task="zeroshot", dataset="shapes/shape", split="val[0:48]", out=str(tmp_path / "r.json")
        ),
        model,
    )
    dataset = ShapesClassificationSet(
        "shape", size=48, image_size=32, transform=image_transform(32)
    )
    head = template_head(Encoder(model), dataset.classnames, dataset.templates)
    logits = F.normalize(_features(model, dataset), dim=-1) @ head.weights.T  # (N, C)
    labels = torch.from_numpy(dataset.labels)
    assert result["metrics"]["acc1"] == pytest.approx(
        float((logits.argmax(1) == labels).double().mean())
    )
    top5 = logits.topk(5, dim=1).indices
    assert result["metrics"]["acc5"] == pytest.approx(
        float((top5 == labels[:, None]).any(1).double().mean())
    )
    assert result["details"]["head"]["source"] == "shapes/shape templates"
    assert result["data"]["test"]["samples"] == 48
    on_disk = read_result(tmp_path / "r.json")
    assert on_disk["metrics"] == result["metrics"] and on_disk["task"] == "zeroshot"
    for key in (
        "task",
        "dataset",
        "model",
        "metrics",
        "config",
        "clipforge_version",
        "created",
        "time",
    ):
        assert key in on_disk


def test_zeroshot_head_options(model: CLIP, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"thing {i}" for i in range(8)) + "\n")
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\nan image of a {}.\n")
    common = {"task": "zeroshot", "dataset": "shapes/shape", "split": "val[0:16]"}
    result = run_eval(
        config(head={"classnames": str(names), "templates": str(templates)}, **common), model
    )
    assert result["details"]["head"]["num_prompts"] == 16
    assert result["details"]["head"]["templates"][1] == "an image of a {}."
    result = run_eval(config(head={"waffle": True}, **common), model)
    assert result["details"]["head"]["method"] == "waffle"
    held = run_eval(config(task="zeroshot", dataset="shapes/heldout", split="heldout[0:16]"), model)
    assert held["details"]["head"]["method"] == "cupl"  # the set's own class prompts
    assert held["details"]["num_classes"] == 80
    names.write_text("a\nb\n")
    with pytest.raises(ValueError, match="names 2 classes; shapes/shape has 8"):
        run_eval(config(head={"classnames": str(names)}, **common), model)


def test_word_order_caption_selection(model: CLIP) -> None:
    result = run_eval(
        config(
            task="zeroshot", dataset="shapes/word-order", data={"options": EvalOptions(size=24)}
        ),
        model,
    )
    metrics = result["metrics"]
    assert set(metrics) == {"accuracy", "accuracy_colour", "accuracy_shape", "accuracy_relation"}
    assert metrics["accuracy"] == pytest.approx(
        np.mean([metrics[f"accuracy_{k}"] for k in ("colour", "shape", "relation")])
    )


def test_retrieval_metrics_match_the_ranks(model: CLIP) -> None:
    result = run_eval(
        config(task="retrieval", dataset="shapes/retrieval", split="val[0:30]"), model
    )
    m = result["metrics"]
    for direction in ("image", "text"):
        recalls = [m[f"{direction}_retrieval_recall@{k}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls)
    dataset = evalsets.ShapesRetrievalSet(size=30, image_size=32, transform=image_transform(32))
    images = F.normalize(_features(model, dataset), dim=-1)
    texts = [t for caps in dataset.captions for t in caps]
    owner = torch.tensor([i for i, caps in enumerate(dataset.captions) for _ in caps])
    with torch.no_grad():
        text_features = F.normalize(model.encode_text(get_tokenizer(model)(texts)), dim=-1)
    best_image = (text_features @ images.T).argmax(1)
    assert m["image_retrieval_recall@1"] == pytest.approx(
        float((best_image == owner).double().mean())
    )
    examples = result["details"].pop("examples")
    assert result["details"] == {"images": 30, "captions": len(texts), "ks": [1, 5, 10]}
    queries = list(range(0, len(texts), len(texts) // 6))[:6]  # six captions over the set
    for query, example in zip(queries, examples, strict=True):
        assert example["caption"] == texts[query]
        assert example["top"] == (text_features[query] @ images.T).topk(5).indices.tolist()


def test_skipped_images_are_counted(model: CLIP, tmp_path: Path) -> None:
    write_shapes(tmp_path / "set", 20, format="csv", image_size=32)
    (tmp_path / "set" / "images" / "000000003.jpg").unlink()
    result = run_eval(
        config(task="retrieval", dataset=str(tmp_path / "set" / "captions.csv")), model
    )
    data = result["data"]["test"]
    assert (data["samples"], data["seen"], data["skipped"]) == (19, 20, 1)
    assert data["skip_counts"] == {"missing_file": 1}
    assert result["details"]["images"] == 19


# --- feature cache -------------------------------------------------------------------------


def test_second_run_reads_the_cache(
    tmp_path: Path, count_image_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "model.safetensors"
    torch.manual_seed(1)
    save_model(create_model(TINY), weights)

    def no_hash(net: torch.nn.Module) -> str:
        raise AssertionError("a checkpoint's file fingerprint should spare hashing its weights")

    monkeypatch.setattr(clipforge.encoder, "weights_digest", no_hash)
    monkeypatch.setattr(clipforge.evaluate.run, "weights_digest", no_hash)
    cfg = config(
        task="zeroshot",
        dataset="shapes/colour",
        split="val[0:40]",
        model=None,
        pretrained=str(weights),
        run={"cache_dir": str(tmp_path / "cache")},
    )
    first = run_eval(cfg)
    assert count_image_calls[0] == 40 and not first["data"]["test"]["cached"]
    assert first["model"]["identity"]["weights_file"]["path"] == str(weights.resolve())
    second = run_eval(cfg)
    assert count_image_calls[0] == 40, "the second run ran the image tower"
    assert second["data"]["test"]["cached"] and second["metrics"] == first["metrics"]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1

    torch.manual_seed(2)
    save_model(create_model(TINY), weights)  # other weights, same path: a new fingerprint
    third = run_eval(cfg)
    assert count_image_calls[0] == 80 and not third["data"]["test"]["cached"]
    assert third["model"]["identity"] != first["model"]["identity"]
    run_eval(dataclasses.replace(cfg, split="val[0:20]"))
    assert count_image_calls[0] == 100  # another split is another key


def test_in_memory_models_are_told_apart_by_weights(
    tmp_path: Path, count_image_calls: list[int]
) -> None:
    cfg = config(
        task="zeroshot", dataset="shapes/shape", split="val[0:8]", run={"cache_dir": str(tmp_path)}
    )
    torch.manual_seed(3)
    first = create_model(TINY)
    run_eval(cfg, first)
    run_eval(cfg, first)
    assert count_image_calls[0] == 8
    torch.manual_seed(4)
    run_eval(cfg, create_model(TINY))
    assert count_image_calls[0] == 16


def test_corrupt_cache_file_is_recomputed(
    model: CLIP, tmp_path: Path, count_image_calls: list[int]
) -> None:
    cfg = config(
        task="zeroshot", dataset="shapes/shape", split="val[0:8]", run={"cache_dir": str(tmp_path)}
    )
    first = run_eval(cfg, model)
    (cached,) = tmp_path.glob("*.safetensors")
    cached.write_bytes(b"not safetensors")
    second = run_eval(cfg, model)
    assert count_image_calls[0] == 16 and second["metrics"] == first["metrics"]


# --- linear probe, few-shot, robustness ------------------------------------------------------


@pytest.fixture
def probe_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """``fit_linear_probe`` in the tasks, recording its inputs and fitting one fixed lambda:
    the lambda search itself is :mod:`clipforge.adapt`'s, tested there, and takes minutes on
    the ill-conditioned features of a random model."""
    calls: list[dict] = []

    def fixed_lambda(train_x, train_y, val_x, val_y, *, num_classes):
        calls.append(
            {
                "train": tuple(train_x.shape),
                "val": tuple(val_x.shape),
                "num_classes": num_classes,
                "val_labels": val_y.clone(),
            }
        )
        return adapt.fit_linear_probe(
            train_x, train_y, val_x, val_y, num_classes=num_classes, lam=1.0, max_iter=50
        )

    monkeypatch.setattr(fewshot, "fit_linear_probe", fixed_lambda)
    return calls


def test_linear_probe_task(model: CLIP, probe_calls: list[dict]) -> None:
    result = run_eval(
        config(
            task="linear-probe",
            dataset="shapes/shape",
            split="val[0:40]",
            train_split="train[0:80]",
            val_split="val[40:80]",
        ),
        model,
    )
    assert probe_calls[0]["train"] == (80, 16) and probe_calls[0]["val"] == (40, 16)
    assert probe_calls[0]["num_classes"] == 8
    assert 0 <= result["metrics"]["acc1"] <= 1
    assert result["details"]["hparams"]["lambda"] == 1.0
    assert {role: d["samples"] for role, d in result["data"].items()} == {
        "test": 40,
        "train": 80,
        "val": 40,
    }


def test_label_space_compacts_and_expands() -> None:
    space = LabelSpace(torch.tensor([4, 1, 4, 2]), ["a", "b", "c", "d", "e"])
    assert space.classes.tolist() == [1, 2, 4] and space.names == ["b", "c", "e"]
    assert space.missing == ["a", "d"]
    assert space.compact(torch.tensor([0, 1, 2, 3, 4])).tolist() == [-1, 0, 1, -1, 2]
    full = space.expand(torch.tensor([[1.0, 2.0, 3.0]]))
    assert full.tolist() == [[float("-inf"), 1.0, 2.0, float("-inf"), 3.0]]


HELDOUT_FEWSHOT = {
    "task": "fewshot",
    "dataset": "shapes/heldout",
    "split": "heldout[0:48]",
    "train_split": "heldout[48:400]",
    "val_split": "heldout[400:448]",
}


def test_fewshot_on_heldout_pairs(model: CLIP, probe_calls: list[dict]) -> None:
    methods = ("tip", "tip-f", "gda", "linear")
    result = run_eval(
        config(fewshot={"methods": methods, "shots": (1, 2)}, **HELDOUT_FEWSHOT), model
    )
    metrics, details = result["metrics"], result["details"]
    held_out = len(HELDOUT_PAIRS)  # 80 pairs, of which these occur in the held-out split
    assert set(metrics) == {"zeroshot", "zeroshot_shot_classes", "fewshot"}
    assert details["classes_without_shots"]["count"] == 80 - held_out
    assert metrics["fewshot"]["gda"]["1"] is None
    assert "two shots" in details["hparams"]["gda"]["1"]["skipped"]
    for method in ("tip", "tip-f", "linear"):
        for k in ("1", "2"):
            assert 0 <= metrics["fewshot"][method][k]["acc1"] <= 1
    assert 0 <= metrics["fewshot"]["gda"]["2"]["acc1"] <= 1
    hparams = details["hparams"]
    assert hparams["tip"]["2"]["searched_on"] == "val"
    assert hparams["tip"]["2"]["cache_size"] == 2 * held_out
    assert (
        hparams["tip-f"]["2"]["method"] == "tip-f" and len(hparams["tip-f"]["2"]["history"]) == 21
    )
    # The probe fits in the label space of the classes with shots, on val samples of those.
    assert [call["train"][0] for call in probe_calls] == [held_out, 2 * held_out]
    assert probe_calls[0]["num_classes"] == held_out
    assert int(probe_calls[0]["val_labels"].max()) < held_out
    # Restricting the zero-shot head to the classes that occur can only help its accuracy.
    assert metrics["zeroshot_shot_classes"]["acc1"] >= metrics["zeroshot"]["acc1"]


def test_fewshot_coop(model: CLIP) -> None:
    """CoOp learns prompts for the classes with shots only."""
    result = run_eval(
        config(fewshot={"methods": ("coop",), "shots": (1,)}, **HELDOUT_FEWSHOT), model
    )
    hparams = result["details"]["hparams"]["coop"]["1"]
    assert hparams["method"] == "coop" and len(hparams["history"]) == 50
    assert 0 <= result["metrics"]["fewshot"]["coop"]["1"]["acc1"] <= 1
    assert 0 <= hparams["val_accuracy"] <= 1


def test_robustness_metrics(model: CLIP, tmp_path: Path) -> None:
    write_shapes(tmp_path / "ood", 20, format="csv", image_size=32)  # multi-object scenes
    result = run_eval(
        config(
            task="robustness",
            dataset="shapes/colour",
            split="val[0:60]",
            val_split="val[60:120]",
            robustness={"ood_dataset": str(tmp_path / "ood" / "captions.csv")},
        ),
        model,
    )
    m, details = result["metrics"], result["details"]
    bins = details["reliability"]
    assert len(bins["count"]) == 15 and sum(bins["count"]) == 60
    filled = [i for i, c in enumerate(bins["count"]) if c]
    ece = sum(
        bins["count"][i] / 60 * abs(bins["accuracy"][i] - bins["confidence"][i]) for i in filled
    )
    assert m["ece"] == pytest.approx(ece)
    assert set(m["ood"]) == {"auroc", "fpr@95tpr", "aupr_in", "aupr_out"}
    assert 0 <= m["modality_gap"] <= 2
    scaling = m["temperature_scaling"]
    assert ("error" in scaling) or scaling["temperature"] > 0
    assert result["data"]["ood"]["samples"] == 20


def test_robustness_records_a_failed_temperature_fit(
    model: CLIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fit(*args, **kwargs):
        raise ValueError("no temperature fits: every sample of logits scores its label highest")

    monkeypatch.setattr(robustness, "temperature_scaling", no_fit)
    result = run_eval(
        config(
            task="robustness", dataset="shapes/colour", split="val[0:20]", val_split="val[20:40]"
        ),
        model,
    )
    assert result["metrics"]["temperature_scaling"] == {
        "error": "no temperature fits: every sample of logits scores its label highest"
    }
    assert "reliability_scaled" not in result["details"]


def test_wrong_kind_of_set_is_named(model: CLIP) -> None:
    with pytest.raises(
        ValueError,
        match="task 'linear-probe' needs a classification set; shapes/retrieval is a retrieval set",
    ):
        run_eval(config(task="linear-probe", dataset="shapes/retrieval"), model)
    with pytest.raises(FileNotFoundError, match="neither an existing path nor a known name"):
        run_eval(config(task="zeroshot", dataset="no/such/set"), model)
    with pytest.raises(ValueError, match="split 'train' has no held-out pairs"):
        run_eval(config(task="zeroshot", dataset="shapes/heldout", split="train"), model)
