"""`run.eval_every` evaluates on any training data: zero-shot on `run.eval_dataset`, in the log
and on the progress line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipforge.train import fit, load_train_config

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "width": 16, "heads": 1, "layers": 1},
}


def _images(folder: Path, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = [folder / f"{i}.png" for i in range(n)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return paths


@pytest.mark.parametrize("processes", [1, 2])
def test_eval_every_runs_zero_shot_on_the_named_dataset_for_csv_data(
    tmp_path: Path, processes: int
) -> None:
    images = _images(tmp_path / "images", 8, seed=0)
    table = tmp_path / "train.csv"
    table.write_text(
        "filepath,caption\n" + "".join(f"{p},a photo {i}\n" for i, p in enumerate(images))
    )
    for name in ("cat", "dog"):
        _images(tmp_path / "classes" / name, 3, seed=len(name))
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    cfg = load_train_config(None, [
        f"model.name={tmp_path / 'tiny.json'}", "data.kind=csv", f"data.train={table}",
        "data.num_samples=8", "data.batch_size=4", "data.workers=0", "run.steps=2",
        "run.eval_every=1", f"run.eval_dataset={tmp_path / 'classes'}", "run.progress=false",
        f"run.out_dir={tmp_path / 'run'}", "run.precision=fp32", f"run.processes={processes}",
        "optim.warmup_steps=1",
    ])  # fmt: skip
    result = fit(cfg)
    assert [e["step"] for e in result.evals] == [1, 2]
    assert all(0.0 <= e["zeroshot_acc1"] <= 1.0 for e in result.evals)
    logged = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert [row["step"] for row in logged if "zeroshot_acc1" in row] == [1, 2]
