"""Helpers for tests that damage bundle files on purpose (no bpy, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def edit_npz(path: Path, **changes: np.ndarray | None) -> None:
    """Rewrite the .npz at ``path`` with ``changes``: an array replaces (or adds) that key, None
    removes it."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
