"""The main job end to end through the public CLI, in its quick form."""

import json
import subprocess
import sys
from pathlib import Path

EXPECTED_METRICS = {"zeroshot_shape_acc", "zeroshot_colour_acc", "heldout_pair_acc",
                    "retrieval_text_to_image_recall@5", "word_order_acc"}  # fmt: skip


def test_quick_demo_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "clipforge", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["eval"]) >= EXPECTED_METRICS
    assert all(0.0 <= metrics["eval"][k] <= 1.0 for k in EXPECTED_METRICS)
    assert metrics["training"]["steps"] == 140 and metrics["wall_time_s"] > 0
    # Two processes of 64: the report counts the global batch.
    assert metrics["training"]["processes"] == 2 and metrics["training"]["batch_size"] == 128
    # Colour is learnt within the quick run's few steps; far above the 10% of chance.
    assert metrics["eval"]["zeroshot_colour_acc"] > 0.5
    for name in ("report.md", "report.html", "curves.png", "confusion_shape.png",
                 "confusion_colour.png", "retrieval.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "Zero-shot shape accuracy" in report and "![" in report
    assert (out / "checkpoints" / "latest").is_file()
    lines = (out / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 140
