"""``OUT_DIR/manifest.jsonl``: one JSON line per photo of a batch, and bundle completeness.

A line (keys always present)::

    {"input": "/abs/photo.jpg", "output": "sub/photo",          # bundle folder, relative to OUT_DIR
     "status": "ok" | "bad input" | "failed", "error": null | "one sentence",
     "seconds": {"load": s, "landmarks": s, ..., "total": s},   # stages reached, wall seconds
     "landmark_rms_px": float | null, "face_seen_fraction": float | null,
     "warnings": [...], "worker": "local-1 pid 4242", "attempts": 1, "finished": "ISO time"}

The file is only appended to, one whole line per ``os.write`` on an ``O_APPEND`` descriptor,
each followed by ``fsync``; a batch stopped at any moment leaves complete lines (a reader also
skips a torn last line). ``--resume`` rewrites it once at the start (atomic replace) with the
lines of the bundles that are kept, so that the finished file has one line per photo.

A bundle is complete when its ``result.json`` parses and names files that exist: the pipeline
writes result.json last, into a temporary folder that is renamed into place.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from .inputs import MANIFEST_NAME

STATUS_OK = "ok"
STATUS_BAD_INPUT = "bad input"
STATUS_FAILED = "failed"
STATUSES: tuple[str, ...] = (STATUS_OK, STATUS_BAD_INPUT, STATUS_FAILED)


def bundle_complete(out_dir: Path) -> bool:
    """True when ``out_dir`` holds a finished bundle (result.json readable, its files present)."""
    try:
        result = json.loads((out_dir / "result.json").read_text())
        files = result.get("files", {})
        return isinstance(files, dict) and bool(files) and all(
            (out_dir / str(f)).is_file() for f in files.values())
    except (OSError, ValueError, AttributeError):
        return False


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def make_record(photo: str, output: str, status: str, *, error: str | None = None,
                seconds: dict[str, float] | None = None, result: dict[str, Any] | None = None,
                worker: str = "", attempts: int = 1) -> dict[str, Any]:
    """One manifest line.

    Args:
        photo: absolute input path; output: bundle folder relative to OUT_DIR.
        status: one of STATUSES; error: one sentence for bad input / failed, else None.
        seconds: wall seconds per stage reached (the result's exact timings replace them).
        result: the result.json dict of a finished photo (timings, quality, warnings).
        worker: which worker ran it; attempts: 1, or more after a worker died mid-photo.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    secs = dict(seconds or {})
    quality: dict[str, Any] = {}
    warnings: list[str] = []
    if result is not None:
        total = secs.get("total")
        secs = {k: float(v) for k, v in result.get("timings", {}).items()}
        if total is not None:
            secs["total"] = total
        quality = result.get("quality", {}) or {}
        warnings = list(result.get("warnings", []))
    return {
        "input": photo, "output": output, "status": status, "error": error,
        "seconds": {k: round(float(v), 3) for k, v in secs.items()},
        "landmark_rms_px": quality.get("landmark_rms_px"),
        "face_seen_fraction": quality.get("face_seen_fraction"),
        "warnings": warnings, "worker": worker, "attempts": attempts, "finished": _now(),
    }


def record_from_bundle(photo: str, output: str, out_dir: Path) -> dict[str, Any]:
    """The ``ok`` line of a complete bundle that has no manifest line (e.g. a lost manifest)."""
    result = json.loads((out_dir / "result.json").read_text())
    return make_record(photo, output, STATUS_OK, result=result, worker="earlier run")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The lines of a manifest (missing file: none; torn or foreign lines are skipped)."""
    records: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "output" in rec and rec.get("status") in STATUSES:
            records.append(rec)
    return records


class ManifestWriter:
    """Appends lines to ``OUT_DIR/manifest.jsonl``; see the module docstring.

    Args:
        out_dir: the batch's output folder (created).
        keep: lines written first, replacing whatever the file held (atomic rename).
    """

    def __init__(self, out_dir: Path, keep: list[dict[str, Any]]):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / MANIFEST_NAME
        tmp = out_dir / f".{MANIFEST_NAME}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def append(self, record: dict[str, Any]) -> None:
        """Write one line (a single write call) and flush it to disk."""
        if self._fd is None:
            raise ValueError("manifest is closed")
        os.write(self._fd, (json.dumps(record) + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
