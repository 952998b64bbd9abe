"""What ``clipforge info`` says of a checkpoint: what it is, how big, in which precision, which
exact weights, and, for a clipforge run, where in training it was written and with what config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .models import create_model, get_model_config, list_models, load_weights, read_checkpoint
from .models.digest import weights_digest
from .models.formats import checkpoint_config
from .train.state import read_run_record, resolve_resume


def describe_checkpoint(source: str) -> dict[str, Any]:
    """The facts about ``source`` (a weights file or directory, ``hf-hub:`` name, or a run
    folder, whose latest checkpoint is described), as a flat dict ready to print."""
    path = Path(source)
    if (path / "checkpoints" / "latest").is_file():
        path = resolve_resume(path, "latest")
        source = str(path)
    checkpoint = read_checkpoint(source)
    model = create_model(checkpoint_config(checkpoint))
    load_weights(model, checkpoint)
    config = model.config
    vision = config.vision_cfg
    tower = f"ResNet {list(vision.layers)}" if vision.is_resnet else f"ViT/{vision.patch_size}"
    text = config.text_cfg
    image_params = sum(p.numel() for p in model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    # As stored: the model itself is built in fp32, as create_model builds it for the digest
    # that embed and eval record.
    dtypes = Counter(str(t.dtype).removeprefix("torch.") for t in checkpoint.state_dict.values())
    facts: dict[str, Any] = {
        "checkpoint": source,
        "architecture": _registered_name(config) or "unregistered config",
        "image_tower": f"{tower}, {vision.image_size}px, width {vision.width}",
        "text_tower": f"{text.layers} layers, width {text.width}, context {text.context_length}",
        "embed_dim": config.embed_dim,
        "parameters": total,
        "image_parameters": image_params,
        "text_parameters": total - image_params,
        "precision": ", ".join(dtypes),
        "weights_blake2b": weights_digest(model),
    }
    run = read_run_record(path) if path.is_file() else None
    if run is not None:
        facts["step"], record = run
        if record is not None:
            facts["processes"] = record["world_size"]
            facts["train_config"] = record["config"]
    return facts


def _registered_name(config: object) -> str | None:
    """The registered name whose config this is, if any."""
    return next((name for name in list_models() if get_model_config(name) == config), None)
