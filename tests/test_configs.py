"""The one config system: every command config loads from a recipe, flags and ``--set``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clipforge.cli import app
from clipforge.cli_config import config_flags
from clipforge.evaluate import EvalConfig
from clipforge.search.configs import DedupConfig, EmbedConfig, IndexConfig
from clipforge.train import TrainConfig
from clipforge.typed_config import ConfigError, field_types, section_type

runner = CliRunner()
REQUIRED = {
    EvalConfig: ["task=fewshot", "dataset=shapes/heldout", "model=tiny"],
    EmbedConfig: ["inputs=[a]", "out=o", "model=tiny"],
    IndexConfig: ["embeddings=e", "out=o"],
    DedupConfig: ["embeddings=e", "out=o"],
    TrainConfig: [],
}
COMMANDS = {
    "eval": ["--task", "fewshot", "--dataset", "shapes/heldout", "--model", "tiny"],
    "embed": ["a", "--out", "o", "--model", "tiny"],
    "index": ["e", "--out", "o"],
    "dedup": ["e", "--out", "g.json"],
}


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, annotation in field_types(cls).items():
        section = section_type(annotation)
        keys += _leaf_keys(section, f"{prefix}{name}.") if section else [prefix + name]
    return keys


@pytest.mark.parametrize(
    ("cls", "key"), [(cls, key) for cls in REQUIRED for key in _leaf_keys(cls)]
)
def test_every_field_is_reachable_by_set(cls: type, key: str) -> None:
    required = REQUIRED[cls]
    if key.startswith("robustness."):  # the section of the robustness task only
        required = [*required, "task=robustness"]
    config = cls.load(None, required)
    node = config.to_dict()
    for part in key.split("."):
        node = node[part]
    assert cls.load(None, [*required, f"{key}={yaml.safe_dump(node).strip()}"]) == config


def test_unknown_keys_are_named_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key 'run\.batchsize'; known keys are .*batch_size"
    ):
        EvalConfig.load(None, [*REQUIRED[EvalConfig], "run.batchsize=3"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text("embeddings: e\nout: o\nkinds: flat\n")
    with pytest.raises(ConfigError, match=r"r.yaml: unknown key\(s\) \['kinds'\]"):
        IndexConfig.load(recipe)


def test_recipe_then_flags_then_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "fewshot.yaml"
    recipe.write_text(
        "task: fewshot\ndataset: shapes/heldout\nmodel: tiny\nfewshot:\n  shots: [1, 2]\n"
    )
    config = EvalConfig.load(recipe, ["fewshot.shots=4,8"], values={"run.batch_size": 32})
    assert config.fewshot.shots == (4, 8) and config.run.batch_size == 32
    assert EvalConfig.from_dict(yaml.safe_load(config.to_yaml())) == config


def test_eval_sections_of_another_task_are_rejected() -> None:
    base = ["dataset=shapes/shape", "model=tiny"]
    with pytest.raises(ValueError, match="fewshot.shots=4 does not apply to task 'zeroshot'"):
        EvalConfig.load(None, [*base, "task=zeroshot", "fewshot.shots=4"])
    with pytest.raises(ValueError, match="robustness.ood_dataset='x' does not apply"):
        EvalConfig.load(None, [*base, "task=retrieval", "robustness.ood_dataset=x"])
    assert EvalConfig.load(None, [*base, "task=retrieval"]).head is None


@pytest.mark.parametrize("command", list(COMMANDS))
def test_print_config_prints_the_effective_config(command: str) -> None:
    result = runner.invoke(app, [command, *COMMANDS[command], "--set", "out=elsewhere",
                                 "--print-config"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["out"] == "elsewhere"


def test_train_print_config_validates_the_merged_recipe_and_trains_nothing(tmp_path) -> None:
    # The fine-tune recipe needs data.train, which only the overrides give: it must be checked
    # after they apply, and --print-config must show the result without starting a run.
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "finetune-vit-b-32", "--set", "model.pretrained=w.pt",
                                 "--set", "data.train=captions.csv", "--set", f"run.out_dir={out}",
                                 "--print-config"])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["data"]["train"] == "captions.csv" and printed["model"]["pretrained"] == "w.pt"
    assert printed["run"]["out_dir"] == str(out) and not out.exists()


def test_eval_data_options_and_skip_rate_from_the_cli() -> None:
    result = runner.invoke(app, ["eval", *COMMANDS["eval"], "--size", "24", "--max-skip-rate",
                                 "0.3", "--method", "tip,gda", "--shots", "1,2", "--print-config"])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["data"] == {**printed["data"], "max_skip_rate": 0.3}
    assert printed["data"]["options"]["size"] == 24
    assert printed["fewshot"] == {"methods": ["tip", "gda"], "shots": [1, 2]}
    assert printed["run"]["cache"] is True  # the command caches by default


def test_every_eval_field_but_dicts_has_a_flag() -> None:
    options = {flag.option for flag in config_flags(EvalConfig)}
    assert len(options) == len(config_flags(EvalConfig)) == len(_leaf_keys(EvalConfig))
    assert {"method", "shots", "train-split", "max-skip-rate", "data-options-seed"} <= options
