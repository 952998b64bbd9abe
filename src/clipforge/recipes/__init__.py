"""Training recipes shipped as YAML files (``clipforge train RECIPE``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def list_recipes() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _directory().glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """Path of the shipped recipe ``name`` (with or without ``.yaml``)."""
    path = _directory() / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"no recipe named {name!r}; shipped recipes: {list_recipes()}")
    return path


def _directory() -> Path:
    return Path(str(resources.files("clipforge.recipes")))
