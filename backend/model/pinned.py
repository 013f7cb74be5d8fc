"""Model files pinned by size and SHA-256: check a copy before trusting it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


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
