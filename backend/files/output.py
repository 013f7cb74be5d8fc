"""The output folder of a reconstruction: checked before any work, replaced atomically.

A user's ``-o`` may name anything: the current folder full of photos, a file, a path under a
file, a read-only or full filesystem, a name longer than the filesystem allows. The rules:

* Only an empty folder or a HeadRecon bundle (a folder holding ``result.json``) is replaced;
  anything else is refused (:class:`OutputFolderError`, exit 2) before the fit starts.
* The bundle is written into a hidden sibling temporary folder and moved in at the end;
  an old bundle is renamed aside first and deleted only after the new one is in place, so a
  crash at any point loses neither.
* Bundle folders get the normal permissions of a new folder (umask), not mkdtemp's 0700.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import BadInputError

BUNDLE_MARKER = "result.json"
MIN_FREE_BYTES = 64 << 20  # a bundle is ~12 MB; refuse to start with less than this free
NAME_MAX = 255


class OutputFolderError(BadInputError):
    """The output folder cannot be used (refused before the fit starts)."""


def _is_bundle(path: Path) -> bool:
    return (path / BUNDLE_MARKER).is_file()


def _replaceable(path: Path) -> bool:
    """An empty folder or a HeadRecon bundle."""
    try:
        return _is_bundle(path) or not any(os.scandir(path))
    except OSError:
        return False


def check_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Check what can be checked of an output folder before any work; returns its absolute path.

    Raises:
        OutputFolderError: empty path, an existing file, a path under a file, a folder that
            is neither empty nor a HeadRecon bundle, a name too long, a folder that cannot be
            created or written, or a nearly full filesystem (one sentence each).
    """
    text = os.fspath(out_dir)
    if not text.strip():
        raise OutputFolderError("The output folder is empty; give a folder name with -o.")
    path = Path(os.path.abspath(text))
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise OutputFolderError(f"The output folder name {part[:40]}... is longer than "
                                    f"{NAME_MAX} bytes, which the filesystem does not allow.")
    if path.is_symlink():
        raise OutputFolderError(f"The output {path} is a link; give the folder it points to.")
    if path.exists():
        if not path.is_dir():
            raise OutputFolderError(f"The output {path} is a file, not a folder.")
        if not _replaceable(path):
            raise OutputFolderError(
                f"The output folder {path} holds files and is not a HeadRecon bundle (no "
                f"{BUNDLE_MARKER}); choose an empty or new folder.")
        if path.parent == path:
            raise OutputFolderError("The output folder cannot be the filesystem root.")
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputFolderError(f"The output folder {path} lies under {existing}, which is a file.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"The output folder {path} cannot be created: {existing} is not "
                                "writable.")
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise OutputFolderError(f"The filesystem of {existing} has only {free >> 20} MiB free; "
                                f"a bundle needs about {MIN_FREE_BYTES >> 20} MiB.")
    return path


def make_staging_dir(out_dir: Path) -> Path:
    """Create the hidden sibling folder the bundle is written into (``out_dir`` checked)."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name[:200]}.", dir=out_dir.parent))
    except OSError as exc:
        raise OutputFolderError(f"The output folder {out_dir} cannot be created "
                                f"({exc.strerror or exc}).") from None


def _normal_permissions(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


def replace_dir(staging: Path, out_dir: Path) -> None:
    """Move the finished ``staging`` folder to ``out_dir`` atomically.

    An existing ``out_dir`` must still be empty or a bundle (checked again: it may have
    changed during the fit); it is renamed aside, the new bundle moved in, then the old one
    deleted. Raises OutputFolderError when ``out_dir`` is no longer replaceable.
    """
    _normal_permissions(staging)
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        if out_dir.is_symlink() or not out_dir.is_dir() or not _replaceable(out_dir):
            raise OutputFolderError(
                f"The output folder {out_dir} changed during the reconstruction and is no longer "
                "empty or a HeadRecon bundle; nothing was replaced.")
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name[:200]}.old.", dir=out_dir.parent))
        os.replace(out_dir, old)  # an empty folder: replaced by the rename
    try:
        os.replace(staging, out_dir)
    except OSError:
        if old is not None:
            os.replace(old, out_dir)  # put the old bundle back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
