"""`clipforge classify`: zero-shot labels for images in one line, like transformers' pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from typer.testing import CliRunner

import clipforge
from clipforge.cli import app
from clipforge.transforms import image_transform

runner = CliRunner()


def test_classify_ranks_the_labels_by_the_models_probabilities(tmp_path: Path) -> None:
    model = clipforge.create_model("tiny").eval()
    weights = clipforge.save_model(model, tmp_path / "tiny.safetensors")
    images = []
    for name, colour in [("red", (220, 20, 20)), ("blue", (20, 20, 220))]:
        images.append(tmp_path / f"{name}.png")
        Image.new("RGB", (40, 30), colour).save(images[-1])
    labels = ["a red square", "a blue square", "a green circle"]
    result = runner.invoke(app, ["classify", *map(str, images), "--labels", ",".join(labels),
                                 "--model", str(weights), "--json", "--top", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [row["image"] for row in rows] == list(map(str, images))

    tokenizer, transform = clipforge.get_tokenizer(model), image_transform(model.image_size)
    with torch.no_grad():
        text = model.encode_text(tokenizer([f"a photo of {label}." for label in labels]))
        pixels = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
        image = model.encode_image(pixels)
        text, image = (torch.nn.functional.normalize(x, dim=-1) for x in (text, image))
        expected = (model.logit_scale.exp() * image @ text.T).softmax(-1)
    for row, probs in zip(rows, expected, strict=True):
        order = probs.argsort(descending=True)[:2].tolist()
        assert [entry["label"] for entry in row["labels"]] == [labels[i] for i in order]
        scores = [entry["score"] for entry in row["labels"]]
        torch.testing.assert_close(torch.tensor(scores), probs[order], atol=1e-4, rtol=1e-4)
