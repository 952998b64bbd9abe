"""The shapes-world suite (the demo's figures) and the trainer's periodic hook built on it, on a
random tiny model: figures read from the right results, confusion matrices that agree with the
accuracy, the canonical-caption retrieval view, the model's mode restored, a hook that pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from clipforge import create_model
from clipforge.data.evalsets import EvalOptions, open_evalset
from clipforge.data.shapes import ShapesWorld, canonical_caption
from clipforge.evaluate import read_result
from clipforge.evaluate.shapes_suite import (
    FIGURES,
    SuiteSizes,
    run_suite,
    shapes_eval_fn,
    suite_configs,
    suite_figures,
)
from clipforge.models import CLIP

SIZES = SuiteSizes(classification=24, heldout=16, retrieval=18, probe=12)


@pytest.fixture(scope="module")
def model(fixtures: Path) -> CLIP:
    return create_model(str(fixtures / "models" / "tiny-vit.safetensors"))


@pytest.fixture(scope="module")
def suite(model: CLIP, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("suite")
    configs = suite_configs(model, "tiny-test", seed=2, sizes=SIZES, out_dir=out)
    return out, run_suite(model.train(), configs)


def test_figures_come_from_the_written_results(suite: tuple[Path, dict]) -> None:
    out, results = suite
    figures = suite_figures(results)
    assert list(figures) == [figure for *_, names in FIGURES.values() for figure in names]
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(FIGURES)
    shape = read_result(out / "shape.json")
    assert figures["zeroshot_shape_acc"] == shape["metrics"]["acc1"]
    assert shape["data"]["test"]["samples"] == 24
    assert figures["word_order_acc"] == results["word-order"]["metrics"]["accuracy"]
    assert results["word-order"]["data"]["test"]["samples"] == 12
    retrieval = results["retrieval"]
    assert (
        figures["retrieval_text_to_image_recall@5"]
        == (retrieval["metrics"]["image_retrieval_recall@5"])
    )


def test_run_suite_restores_training_mode(model: CLIP, suite: tuple[Path, dict]) -> None:
    assert model.training  # the fixture handed over a model in training mode


def test_confusion_matrix_agrees_with_accuracy(suite: tuple[Path, dict]) -> None:
    _, results = suite
    for run, classes in (("shape", 8), ("colour", 10)):
        confusion = results[run]["details"]["confusion"]
        matrix = torch.tensor(confusion["matrix"])
        assert matrix.shape == (classes, classes) and len(confusion["classnames"]) == classes
        assert int(matrix.sum()) == 24
        assert results[run]["metrics"]["acc1"] == pytest.approx(float(matrix.trace()) / 24)
    assert "confusion" not in results["heldout"]["details"]  # 80 classes: too many to read


def test_retrieval_is_by_canonical_caption(suite: tuple[Path, dict]) -> None:
    _, results = suite
    assert results["retrieval"]["details"]["captions"] == 18  # one per image
    view = open_evalset(
        "shapes/retrieval", options=EvalOptions(size=3, seed=2, captions=("canonical",))
    )
    world = ShapesWorld(seed=2, image_size=64)
    assert view.captions == [[canonical_caption(world.scene("val", i))] for i in range(3)]
    with pytest.raises(ValueError, match=r"\['captions'\] do not apply to a shapes/shape"):
        open_evalset("shapes/shape", options=EvalOptions(captions=("canonical",)))


def test_periodic_hook_pickles_and_gives_the_figures(model: CLIP) -> None:
    hook = pickle.loads(pickle.dumps(shapes_eval_fn(seed=2, sizes=SIZES)))
    model.train()
    figures = hook(model)
    assert model.training
    configs = suite_configs(model, "tiny-test", seed=2, sizes=SIZES)
    assert figures == suite_figures(run_suite(model, configs))
