"""Regenerate ``src/clipforge/models/pretrained_tags.json`` from OpenCLIP's registry of tags.

The file lists, for each architecture clipforge registers, OpenCLIP's pretrained tags with where
the weights live (hub repository, direct URL), the sha256 published for them (OpenAI's URLs carry
the whole digest, OpenCLIP's release files an 8-digit prefix of it) and the preprocessing the
weights were trained with. Run with OpenCLIP's ``pretrained.py`` importable; torchvision is not
needed because only that module is loaded:

    pip install --no-deps --target /tmp/ocl open_clip_torch==3.3.0
    python scripts/make_pretrained_tags.py /tmp/ocl/open_clip
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src/clipforge/models/pretrained_tags.json"
CONFIGS = ROOT / "src/clipforge/models/configs"


def _load_openclip_registry(package: Path) -> types.ModuleType:
    """Import ``pretrained.py`` alone, with the two sibling modules it needs."""
    fake = types.ModuleType("ocp")
    fake.__path__ = [str(package)]
    sys.modules["ocp"] = fake
    for name in ("constants", "version", "pretrained"):
        spec = importlib.util.spec_from_file_location(f"ocp.{name}", package / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"ocp.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["ocp.pretrained"]


def _sha256(url: str) -> str:
    """The digest (or digest prefix) a download URL publishes, else ''."""
    if "openaipublic" in url:
        return url.split("/")[-2]
    match = re.search(r"-([0-9a-f]{8})\.pth?$", url)
    return match.group(1) if match else ""


def main(package: str) -> None:
    registry = _load_openclip_registry(Path(package))
    ours = {p.stem for p in CONFIGS.glob("*.json")}
    table: dict[str, dict[str, dict]] = {}
    for name in sorted(ours):
        for tag in registry.list_pretrained_tags_by_model(name):
            cfg = registry.get_pretrained_cfg(name, tag)
            url = cfg.get("url", "")
            table.setdefault(name, {})[tag] = {
                "hf_hub": cfg.get("hf_hub", "").rstrip("/"),
                "url": url,
                "sha256": _sha256(url),
                "quick_gelu": bool(cfg.get("quick_gelu", False)),
                "mean": list(cfg["mean"]),
                "std": list(cfg["std"]),
                "interpolation": cfg["interpolation"],
                "resize_mode": cfg["resize_mode"],
            }
    OUT.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{OUT}: {sum(map(len, table.values()))} tags for {len(table)} architectures")


if __name__ == "__main__":
    main(sys.argv[1])
