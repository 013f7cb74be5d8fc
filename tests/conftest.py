"""Shared fixtures: where the assets and evaluation images are.

CI runs with ``../shared`` beside the clone; ``HEADRECON_ASSETS`` / ``HEADRECON_EVAL``
override the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    path = Path(os.environ.get("HEADRECON_ASSETS", REPO.parent / "shared" / "assets"))
    assert path.is_dir(), f"assets folder missing: {path}"
    return path


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    path = Path(os.environ.get("HEADRECON_EVAL", REPO.parent / "shared" / "eval"))
    assert path.is_dir(), f"eval folder missing: {path}"
    return path


@pytest.fixture(scope="session")
def dev_model_path(assets_dir: Path) -> Path:
    return assets_dir / "flame" / "flame_dev_model.npz"
