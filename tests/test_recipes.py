"""Every shipped recipe trains through the CLI with the overrides its own usage line documents.

Each recipe gets the overrides a user would pass (its usage comment) on data the test makes, plus
a few that only shrink the run (steps, batch size, processes) so the test stays short.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import clipforge
from clipforge.cli import app
from clipforge.recipes import list_recipes

runner = CliRunner()
SMALL_RUN = ["run.steps=2", "run.log_every=1", "run.progress=false", "run.precision=fp32"]


def _captioned_images(root: Path) -> Path:
    """A CSV of eight captioned PNGs under ``root/images`` (the recipe's own column names)."""
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows = ["filepath,caption"]
    for i in range(8):
        pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
        rows.append(f"{i}.png,a photo of thing number {i}")
    table = root / "captions.csv"
    table.write_text("\n".join(rows) + "\n")
    return table


def _finetune_vit_b_32(root: Path) -> list[str]:
    # The usage line: --set model.pretrained=ViT-B-32.pt --set data.train=captions.csv
    # --set data.image_root=images/  (the weights here are random, in OpenAI's key layout).
    weights = root / "ViT-B-32.pt"
    torch.save(clipforge.create_model("ViT-B-32-quickgelu").state_dict(), weights)
    table = _captioned_images(root)
    return [f"model.pretrained={weights}", f"data.train={table}",
            f"data.image_root={root / 'images'}", "data.batch_size=2", "data.workers=0"]  # fmt: skip


def _shapes_demo(root: Path) -> list[str]:
    # Documented as plain `clipforge train shapes-demo`; one process keeps the test short (the
    # two-process path has its own tests in test_train_ddp.py).
    return ["data.num_samples=64", "data.batch_size=8", "data.workers=0", "run.processes=1"]


RECIPE_OVERRIDES: dict[str, Callable[[Path], list[str]]] = {
    "finetune-vit-b-32": _finetune_vit_b_32,
    "shapes-demo": _shapes_demo,
}


def test_every_shipped_recipe_has_a_run_test() -> None:
    assert sorted(RECIPE_OVERRIDES) == list_recipes()


@pytest.mark.parametrize("recipe", sorted(RECIPE_OVERRIDES))
def test_shipped_recipe_trains_with_its_documented_overrides(recipe: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [*RECIPE_OVERRIDES[recipe](tmp_path), *SMALL_RUN, f"run.out_dir={out}"]
    args = ["train", recipe]
    for override in overrides:
        args += ["--set", override]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in logged if "loss" in row]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert list((out / "checkpoints").glob("*.safetensors"))
