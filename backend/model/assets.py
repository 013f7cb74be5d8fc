"""Where model data lives: the assets folder, the weights folder and the FLAME model file.

Resolution order for each folder: an explicit argument, then an environment variable
(``HEADRECON_ASSETS`` / ``HEADRECON_WEIGHTS`` / ``HEADRECON_FLAME``), then the
development default (``<repo>/../shared/assets``, ``<repo>/weights``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEV_MODEL_RELPATH = "flame/flame_dev_model.npz"
USER_FLAME_NAMES = ("flame2023_Open.pkl", "flame2023.pkl", "generic_model.pkl")


def assets_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the assets folder, raising ModelFileError if it does not exist."""
    cand = explicit or os.environ.get("HEADRECON_ASSETS") or (REPO_ROOT.parent / "shared" / "assets")
    path = Path(cand).expanduser().resolve()
    if not path.is_dir():
        raise ModelFileError(
            f"Assets folder not found: {path}. Pass --assets DIR or set HEADRECON_ASSETS."
        )
    return path


def weights_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the weights folder (created on demand by setup)."""
    cand = explicit or os.environ.get("HEADRECON_WEIGHTS") or (REPO_ROOT / "weights")
    return Path(cand).expanduser().resolve()


def asset_path(relpath: str, assets: str | os.PathLike[str] | None = None) -> Path:
    """Path of one file inside the assets folder; ModelFileError if it is missing."""
    path = assets_dir(assets) / relpath
    if not path.is_file():
        raise ModelFileError(f"Asset file missing: {path}.")
    return path


def flame_model_path(
    explicit: str | os.PathLike[str] | None = None,
    assets: str | os.PathLike[str] | None = None,
) -> Path:
    """The FLAME model to use: --flame, $HEADRECON_FLAME, a pickle in weights/, else the dev npz."""
    cand = explicit or os.environ.get("HEADRECON_FLAME")
    if cand:
        path = Path(cand).expanduser().resolve()
        if not path.is_file():
            raise ModelFileError(f"FLAME model file not found: {path}.")
        return path
    for name in USER_FLAME_NAMES:
        path = weights_dir() / name
        if path.is_file():
            return path
    return asset_path(DEV_MODEL_RELPATH, assets)
