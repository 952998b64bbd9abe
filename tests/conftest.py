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


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny-model tests on one torch thread.

    When other jobs share the machine's cores, torch's thread pool spins and tiny problems get
    10-50x slower; one thread keeps such tests steady. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
