"""Shared test helpers: fixture paths and a deterministic torch setup."""

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
