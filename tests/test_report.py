"""Result files and the report: schema checks that name the file, tables, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from clipforge.evaluate import (
    EvalConfig,
    TaskOutput,
    build_result,
    read_result,
    write_report,
    write_result,
)
from clipforge.evaluate.results import jsonable

MODEL = {"name": "shapes-rn", "pretrained": "runs/demo/checkpoints/step_140.safetensors"}
BINS = {
    "lower": [i / 15 for i in range(15)],
    "upper": [(i + 1) / 15 for i in range(15)],
    "confidence": [None] * 10 + [0.7, 0.75, 0.85, 0.9, 0.97],
    "accuracy": [None] * 10 + [0.5, 0.6, 0.8, 0.85, 0.99],
    "count": [0] * 10 + [5, 10, 20, 30, 35],
}
METRICS = {
    "zeroshot": {"acc1": 0.41, "acc5": 0.83, "mean_per_class_recall": 0.4},
    "linear-probe": {"acc1": 0.9, "acc5": 1.0, "mean_per_class_recall": 0.9},
    "retrieval": {
        f"{d}_retrieval_{m}": v
        for d in ("image", "text")
        for m, v in (
            ("recall@1", 0.2),
            ("recall@5", 0.5),
            ("recall@10", 0.7),
            ("mean_rank", 12.5),
            ("median_rank", 5.0),
        )
    },
    "fewshot": {
        "zeroshot": {"acc1": 0.3, "acc5": 0.6, "mean_per_class_recall": 0.3},
        "zeroshot_shot_classes": {"acc1": 0.5, "acc5": 0.9, "mean_per_class_recall": 0.5},
        "fewshot": {
            "tip": {"1": {"acc1": 0.55}, "16": {"acc1": 0.8}},
            "gda": {"1": None, "16": {"acc1": 0.85}},
        },
    },
    "robustness": {
        "acc1": 0.6,
        "ece": 0.12,
        "nll": 1.4,
        "modality_gap": 0.8,
        "temperature_scaling": {
            "temperature": 1.7,
            "ece_before": 0.12,
            "ece_after": 0.04,
            "nll_before": 1.4,
            "nll_after": 1.1,
        },
        "ood": {"auroc": 0.9, "fpr@95tpr": 0.4, "aupr_in": 0.9, "aupr_out": 0.88},
    },
}


def result_file(tmp_path: Path, task: str, **extra_details) -> Path:
    dataset = "shapes/retrieval" if task == "retrieval" else "shapes/heldout"
    config = EvalConfig(task=task, dataset=dataset, model="shapes-rn")
    details = {"hparams": {"lambda": 0.01}} if task == "linear-probe" else {}
    if task == "robustness":
        details = {"reliability": BINS, "reliability_scaled": BINS}
    output = TaskOutput(METRICS[task], {**details, **extra_details}, {"test": {"samples": 100}})
    return write_result(build_result(config, output, MODEL, 1.5), tmp_path / f"{task}.json")


def test_result_round_trip_is_strict_json(tmp_path: Path) -> None:
    path = result_file(tmp_path, "robustness")
    text = path.read_text()
    assert "NaN" not in text
    document = read_result(path)
    assert document["metrics"] == METRICS["robustness"]
    assert document["details"]["reliability"]["accuracy"][0] is None
    assert document["config"]["task"] == "robustness" and document["time"] == 1.5
    assert document["clipforge_version"] and document["created"].endswith("+00:00")


def test_jsonable() -> None:
    value = {"a": (1, np.float32(0.5)), "b": float("nan"), "c": np.array([1.0, math.inf]), 3: None}
    assert jsonable(value) == {"a": [1, 0.5], "b": None, "c": [1.0, None], "3": None}
    with pytest.raises(TypeError, match="cannot write a set"):
        jsonable({"x": {1}})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a list, not an object"),
        (json.dumps({"task": "zeroshot"}), "lacks the key 'schema_version'"),
    ],
)
def test_malformed_results_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_result(path)
    assert "bad.json" in str(info.value)
    with pytest.raises(ValueError, match="bad.json"):
        write_report([path], tmp_path / "report")


def test_unknown_task_version_and_type_errors(tmp_path: Path) -> None:
    document = json.loads(result_file(tmp_path, "zeroshot").read_text())
    for change, message in (
        ({"task": "dancing"}, "unknown task 'dancing'"),
        ({"schema_version": 9}, "has schema_version 9"),
        ({"metrics": [1]}, "'metrics' is a list"),
    ):
        path = tmp_path / "odd.json"
        path.write_text(json.dumps({**document, **change}))
        with pytest.raises(ValueError, match=message):
            read_result(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_result(tmp_path / "missing.json")


def test_missing_metric_names_file_and_key(tmp_path: Path) -> None:
    path = result_file(tmp_path, "fewshot")
    document = json.loads(path.read_text())
    del document["metrics"]["zeroshot"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"fewshot.json' \(fewshot\) lacks metrics\['zeroshot'\]"):
        write_report([path], tmp_path / "report")


def test_report_renders_every_task(tmp_path: Path) -> None:
    paths = [result_file(tmp_path / "results", task) for task in METRICS]
    out = tmp_path / "report"
    md_path = write_report([tmp_path / "results"], out)  # a folder stands for its files
    markdown = md_path.read_text()
    for heading in (
        "Zero-shot classification",
        "Retrieval",
        "Linear probe",
        "Few-shot adaptation",
        "Calibration, OOD detection, modality gap",
    ):
        assert f"## {heading}" in markdown
    assert "| tip | 55.0 | 80.0 |" in markdown
    assert "| gda | – | 85.0 |" in markdown
    assert "| zero-shot, classes with shots | 50.0 | 50.0 |" in markdown
    assert "| 12.0 | 4.0 |" in markdown  # ECE before and after temperature scaling
    html = (out / "report.html").read_text()
    assert html.count("<table>") == markdown.count("\n|---|") == 6
    for png in ("fewshot_0.png", "reliability_0.png", "retrieval_recall.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in markdown and f"src='{png}'" in html
    for path in paths:
        assert path.name in markdown


def test_report_needs_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no result files"):
        write_report([], tmp_path / "report")


def test_report_draws_confusion_matrices_and_takes_a_preface(tmp_path: Path) -> None:
    matrix = {"classnames": ["circle", "square"], "matrix": [[3, 1], [0, 4]]}
    path = result_file(tmp_path / "results", "zeroshot", confusion=matrix)
    out = tmp_path / "report"
    (out / "extra.png").parent.mkdir(parents=True)
    preface = [("table", ["figure", "value"], [["steps", "140"]]), ("img", "Extra", "extra.png")]
    markdown = write_report([path], out, title="my demo", preface=preface).read_text()
    assert markdown.startswith("# my demo\n\n| figure | value |\n|---|---|\n| steps | 140 |")
    assert markdown.index("](extra.png)") < markdown.index("## Results")
    assert (out / "confusion_zeroshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](confusion_zeroshot.png)" in markdown
    assert "src='confusion_zeroshot.png'" in (out / "report.html").read_text()
