"""The search commands end to end through the CLI: embed a folder, index it, then query it."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import clipforge
from clipforge.cli import app
from clipforge.data.shapes import write_shapes
from clipforge.search.index import load_index
from clipforge.search.server_config import load_server_config

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def test_embed_then_index_a_folder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    clipforge.save_model(clipforge.create_model("tiny"), weights)
    write_shapes(tmp_path / "data", 24, format="csv", split="val")
    emb, idx = tmp_path / "emb", tmp_path / "idx"

    embedded = runner.invoke(app, ["embed", str(tmp_path / "data" / "images"), "--out", str(emb),
                                   "--model", "tiny", "--pretrained", str(weights),
                                   "--workers", "0", "--batch-size", "8"])  # fmt: skip
    assert embedded.exit_code == 0, embedded.output
    assert "embedded 24 images" in embedded.output

    indexed = runner.invoke(app, ["index", str(emb), "--out", str(idx), "--kind", "flat"])
    assert indexed.exit_code == 0, indexed.output
    info = json.loads((idx / "index_info.json").read_text())
    assert info["ntotal"] == 24 and info["kind"] == "flat"
    assert info["recall_at_10"] == pytest.approx(1.0)

    groups_file = tmp_path / "groups.json"
    deduped = runner.invoke(app, ["dedup", str(emb), "--out", str(groups_file),
                                  "--threshold", "0.9999"])  # fmt: skip
    assert deduped.exit_code == 0, deduped.output
    report = json.loads(groups_file.read_text())
    assert report["vectors"] == 24 and report["group_count"] == len(report["groups"])

    index = load_index(idx)
    query = torch.nn.functional.normalize(torch.randn(1, index.dim), dim=-1).numpy()
    scores, ids = index.search(query, 5)
    assert ids.shape == (1, 5) and (ids >= 0).all() and (scores[0, :-1] >= scores[0, 1:]).all()


def test_serve_needs_exactly_one_source() -> None:
    result = runner.invoke(app, ["serve"])
    assert result.exit_code != 0
    assert "CONFIG" in str(result.exception)


def test_serve_set_max_k_alone_lowers_the_default_k(tmp_path: Path) -> None:
    args = ["serve", "--index", str(tmp_path), "--set", "max_k=5", "--print-config"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["max_k"] == 5 and printed["default_k"] is None
    assert load_server_config(printed).resolved_default_k == 5
    assert load_server_config({**printed, "default_k": 3}).resolved_default_k == 3
