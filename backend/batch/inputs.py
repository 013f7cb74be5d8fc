"""Which photos a batch reconstructs and where each bundle goes.

INPUT arguments are photos, folders (searched recursively, natural order: ``f2`` before
``f10``) or lists of paths (``.txt``: one path a line, ``#`` comments; ``.csv``: the column
named path / photo / input / file / image, else the first column; relative paths are relative
to the list's folder). Every photo gets the output folder ``<relative path without suffix>``
under OUT_DIR: relative to the folder it was found in, or just its stem when it was named
directly or in a list. Clashing names (``a.jpg`` and ``a.png``; two folders with ``x.jpg``)
get ``-2``, ``-3``, ... in input order, so a rerun with the same inputs gives the same names.

This module imports no torch: the batch coordinator stays light.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".csv")
CSV_PATH_COLUMNS: tuple[str, ...] = ("path", "photo", "input", "file", "image")
MANIFEST_NAME = "manifest.jsonl"


class InputListError(ValueError):
    """An INPUT argument that is neither a photo, a folder nor a readable list (usage error)."""


@dataclass(frozen=True)
class BatchItem:
    """One photo of a batch.

    Attributes:
        photo: absolute path of the photo (it may not exist: then it is a bad input).
        name: output folder relative to OUT_DIR, POSIX separators, unique in the batch.
    """

    photo: Path
    name: str


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value (``f2`` before ``f10``), case-insensitive."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _folder_photos(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), natural order of the
    relative path."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / f for f in files
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])


def _list_paths(path: Path) -> list[Path]:
    """Paths named by a .txt or .csv list, relative ones taken from the list's folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputListError(f"The list {path} cannot be read ({exc}).") from exc
    entries: list[str] = []
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        column = 0
        if rows:
            header = [c.strip().lower() for c in rows[0]]
            named = [i for i, c in enumerate(header) if c in CSV_PATH_COLUMNS]
            if named:
                column, rows = named[0], rows[1:]
        entries = [r[column].strip() for r in rows if len(r) > column and r[column].strip()]
    else:
        entries = [ln.strip() for ln in text.splitlines()
                   if ln.strip() and not ln.strip().startswith("#")]
    return [(path.parent / e).resolve() if not Path(e).is_absolute() else Path(e) for e in entries]


def _output_name(rel: Path) -> str:
    """``a/b/photo.jpg`` -> ``a/b/photo``; names that would leave OUT_DIR are flattened."""
    parts = [p for p in rel.with_suffix("").parts if p not in ("", ".", "..", "/")]
    return "/".join(parts) or "photo"


def collect_inputs(inputs: list[str | os.PathLike[str]]) -> list[BatchItem]:
    """All photos named by the INPUT arguments, in order, each once, with unique output names.

    A missing path that looks like a photo is kept (it becomes a ``bad input`` line of the
    manifest, the batch goes on); anything else that cannot be used raises InputListError.

    Args:
        inputs: photos, folders and .txt/.csv lists.
    Returns:
        BatchItems in input order (folders in natural order).
    Raises:
        InputListError: a missing folder/list, an unreadable list or an unknown file type.
    """
    found: list[tuple[Path, Path]] = []  # (photo, path it is named by relative to its root)

    def add_file(p: Path) -> None:
        found.append((p.resolve() if p.exists() else Path(os.path.abspath(p)), Path(p.name)))

    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            photos = _folder_photos(path)
            found += [(p.resolve(), p.relative_to(path)) for p in photos]
            if not photos:
                raise InputListError(f"The folder {path} holds no photos "
                                     f"({', '.join(IMAGE_SUFFIXES)}).")
        elif path.suffix.lower() in LIST_SUFFIXES:
            if not path.is_file():
                raise InputListError(f"The list {path} does not exist.")
            for entry in _list_paths(path):
                if entry.is_dir():
                    found += [(p.resolve(), p.relative_to(entry)) for p in _folder_photos(entry)]
                else:
                    add_file(entry)
        elif path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES:
            add_file(path)
        else:
            raise InputListError(f"{path} is not a photo, a folder or a .txt/.csv list of paths.")

    unique: list[tuple[Path, str]] = []
    seen_photos: set[Path] = set()
    for photo, rel in found:
        if photo not in seen_photos:
            seen_photos.add(photo)
            unique.append((photo, _output_name(rel)))
    # A bundle folder must not hold another bundle (``a/`` for a.jpg and ``a/b/`` for a/b.jpg):
    # names that are a folder of another name are renamed too. Comparisons ignore case, so
    # names stay unique on macOS and Windows disks as well.
    ancestors = {"/".join(n.lower().split("/")[:k]) for _, n in unique for k in range(1, n.count("/") + 1)}
    used: set[str] = {MANIFEST_NAME.lower()}
    items: list[BatchItem] = []
    for photo, base in unique:
        name, k = base, 2
        while name.lower() in used or name.lower() in ancestors:
            name, k = f"{base}-{k}", k + 1
        used.add(name.lower())
        items.append(BatchItem(photo=photo, name=name))
    return items
