"""Model files pinned by size and SHA-256: check a copy before trusting it."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelFileError


@dataclass(frozen=True)
class PinnedFile:
    """One pinned model file: its name in weights/, where it comes from, size, SHA-256."""

    name: str  # file name inside its weights/ subfolder
    package_relpath: str  # where setup finds it (e.g. relative to site-packages/)
    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def matches_pin(path: Path, pin: PinnedFile) -> bool:
    """True when ``path`` is a file with the pinned size and SHA-256."""
    return path.is_file() and path.stat().st_size == pin.size and sha256_of(path) == pin.sha256


def install_pinned(pins: tuple[PinnedFile, ...], source_root: Callable[[], Path], dest_dir: Path,
                   mismatch: str, missing_ok: bool = False) -> Path:
    """Copy pinned files from ``source_root() / pin.package_relpath`` into ``dest_dir``.

    Files already in ``dest_dir`` with the pinned size and SHA-256 are left alone (and
    ``source_root`` is then never called); each copy goes through a temporary file and an
    atomic rename. Prints one line per file.

    Args:
        pins: the files; source_root: where their ``package_relpath`` starts (called once, lazily);
        dest_dir: created if needed; mismatch: the end of the error sentence for a source that
        is missing or differs; missing_ok: skip a missing source with a message instead.
    Returns:
        ``dest_dir``.
    Raises:
        ModelFileError: a source file is missing (unless ``missing_ok``) or differs from its pin.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    root: Path | None = None
    for pin in pins:
        dest = dest_dir / pin.name
        if matches_pin(dest, pin):
            print(f"setup-weights: {dest} is up to date")
            continue
        root = root or source_root()
        src = root / pin.package_relpath
        if missing_ok and not src.is_file():
            print(f"setup-weights: {src} not found; going without it")
            continue
        if not matches_pin(src, pin):
            raise ModelFileError(f"{src} is missing or differs from the pinned file; {mismatch}")
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        print(f"setup-weights: copied {pin.name} -> {dest}")
    return dest_dir
