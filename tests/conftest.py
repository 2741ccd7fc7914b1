"""Shared fixtures: where the reference material lives, and skipping cleanly without it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference material not found at {path} (expected ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED_DIR)


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "golden")


@pytest.fixture(scope="session")
def real_weights(shared_dir: Path) -> Path:
    return _require(shared_dir / "weights" / "yolov3-tiny.weights")


@pytest.fixture(scope="session")
def yolov4_tiny_weights() -> Path:
    """The official yolov4-tiny weights in the checkout's weights/ (CI fetches them in .ci/run)."""
    path = REPO_ROOT / "weights" / "yolov4-tiny.weights"
    if not path.is_file():
        pytest.skip(f"{path} not found: fetch it with  python weights/download_weights.py yolov4-tiny")
    return path


@pytest.fixture(scope="session")
def official_cfg_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "darknet" / "cfg")


@pytest.fixture(scope="session")
def coco128_dir(shared_dir: Path) -> Path:
    return _require(shared_dir / "coco128")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for small tensors (faster, and immune to a busy machine); the count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def flush_denormals() -> Iterator[None]:
    """Randomly initialised deep nets shrink activations into the denormal range, where CPU maths is ~100x slower."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
