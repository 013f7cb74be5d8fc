"""One batch worker: a warm engine that turns photo tasks into manifest lines.

The same :class:`PhotoWorker` runs inside a local worker process (:func:`local_worker_main`)
and inside a Ray actor (``backend.batch.ray_cluster``). Each photo goes through
:func:`backend.pipeline.reconstruct`, the function behind ``headrecon reconstruct -o``, so a
batch writes its bundles exactly as the single-photo command does (atomically: temporary
folder, result.json last, rename).

A task is a dict ``{"photo": abs path, "name": bundle folder relative to OUT_DIR,
"output": abs bundle folder, "attempt": 1..}``; the answer is a manifest line
(:func:`backend.batch.manifest.make_record`).

Test hook (used by tests/test_batch.py only, never set it otherwise):
``HEADRECON_TEST_CRASH_PHOTO="<photo file name>:<marker file>"`` makes the worker that reaches
the landmark fit of that photo write its pid into the marker file and ``os._exit(70)``, once
(no crash while the marker exists): a worker killed mid-photo, with a half-written temporary
bundle folder left behind.

Importing this module does not import torch (the coordinator imports it too).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..errors import BadInputError, Cancelled, HeadReconError
from ..options import CancelFn, ReconstructOptions
from .manifest import STATUS_BAD_INPUT, STATUS_FAILED, STATUS_OK, make_record

TEST_CRASH_ENV = "HEADRECON_TEST_CRASH_PHOTO"
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                    "NUMEXPR_NUM_THREADS")


def configure_threads(threads: int) -> None:
    """Limit torch, OpenMP/BLAS and OpenCV to ``threads`` threads in this process (call before
    the first torch computation) so that N workers share the cores instead of fighting."""
    threads = max(1, int(threads))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def remove_partial_bundle(out_dir: Path) -> None:
    """Delete the temporary folders a killed job left beside ``out_dir``.

    The pipeline (backend/files/output.py) writes the bundle into ``.<name>.XXXXXXXX`` next to
    it and renames it into place; an old bundle is first moved aside to ``.<name>.old.XXXXXXXX``
    and deleted last. Staging folders are always removed; an ``.old`` folder only when a
    complete bundle stands at ``out_dir`` (otherwise it may be the only copy).
    """
    from .manifest import bundle_complete

    name = re.escape(out_dir.name[:200])
    pattern = re.compile(r"^\." + name + r"\.(old\.)?[A-Za-z0-9_]{8}$")
    try:
        entries = list(out_dir.parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = pattern.match(p.name)
        if m and p.is_dir() and (m.group(1) is None or bundle_complete(out_dir)):
            shutil.rmtree(p, ignore_errors=True)


def _test_crash_hook(photo: Path) -> None:
    """See the module docstring: crash once on the named photo (tests only)."""
    spec = os.environ.get(TEST_CRASH_ENV)
    if not spec or ":" not in spec:
        return
    name, marker = spec.split(":", 1)
    if photo.name != name or os.path.exists(marker):
        return
    Path(marker).write_text(str(os.getpid()))
    os._exit(70)


class PhotoWorker:
    """A warm engine (model, embeddings, detector loaded once) that reconstructs photo tasks.

    Args:
        options: ReconstructOptions as a dict (device, flame, assets, quality, detail, texture).
        threads: CPU threads for this worker.
        label: name written into the manifest's ``worker`` field (the pid is appended).
        gpu_slot: local mode with several GPUs: this worker uses ``cuda:<slot % GPUs>``.
    Raises:
        ModelFileError: a model file is missing (the batch stops: every photo would fail).
    """

    def __init__(self, options: dict[str, Any], threads: int, label: str,
                 gpu_slot: int | None = None):
        configure_threads(threads)
        opts = ReconstructOptions.from_dict(options)
        if gpu_slot is not None and opts.device in ("auto", "cuda"):
            import torch

            if torch.cuda.is_available() and torch.cuda.device_count() > 1:
                opts.device = f"cuda:{gpu_slot % torch.cuda.device_count()}"
        from ..pipeline import get_engine

        self.options = opts
        self.engine = get_engine(opts)
        _ = self.engine.detector  # load the face detector now, not with the first photo
        self.label = f"{label} pid {os.getpid()}"

    def ready(self) -> str:
        """This worker's label (a Ray actor answers it once its engine is warm)."""
        return self.label

    def run(self, task: dict[str, Any], cancel: CancelFn | None = None) -> dict[str, Any]:
        """Reconstruct one photo into its bundle folder; never raises for a bad photo.

        Returns:
            The manifest line: ``ok``, ``bad input`` (BadInputError: not an image, no face,
            ...) or ``failed`` (anything else, with the exception's sentence).
        Raises:
            Cancelled: ``cancel()`` turned true (the batch is stopping); nothing is written.
        """
        from ..pipeline import reconstruct

        photo, out = Path(task["photo"]), Path(task["output"])
        t0 = time.perf_counter()
        first: dict[str, float] = {}
        last: dict[str, float] = {}

        def progress(stage: str, fraction: float, message: str = "") -> None:
            now = time.perf_counter()
            first.setdefault(stage, now)
            last[stage] = now
            if stage == "fit_landmarks":
                _test_crash_hook(photo)

        def seconds() -> dict[str, float]:
            secs = {s: last[s] - first[s] for s in first}
            secs["total"] = time.perf_counter() - t0
            return secs

        common = dict(worker=self.label, attempts=int(task.get("attempt", 1)))
        try:
            result = reconstruct(photo, out, self.options, progress=progress, cancel=cancel)
        except Cancelled:
            raise
        except BadInputError as exc:
            return make_record(str(photo), task["name"], STATUS_BAD_INPUT, error=str(exc),
                               seconds=seconds(), **common)
        except HeadReconError as exc:
            return make_record(str(photo), task["name"], STATUS_FAILED, error=str(exc),
                               seconds=seconds(), **common)
        except Exception as exc:  # a bug or resource error on one photo must not stop the batch
            return make_record(str(photo), task["name"], STATUS_FAILED,
                               error=f"{type(exc).__name__}: {exc}", seconds=seconds(), **common)
        return make_record(str(photo), task["name"], STATUS_OK, seconds={"total": seconds()["total"]},
                           result=result, **common)


def local_worker_main(conn: Connection, options: dict[str, Any], threads: int, label: str,
                      gpu_slot: int | None) -> None:
    """Entry point of a local worker process (multiprocessing, spawn).

    Protocol on ``conn``: the worker sends ``("ready", label)`` once warm, or
    ``("fatal", exit_code, sentence)`` when the engine cannot start; then it receives tasks
    and answers each with ``("done", record)``; ``None`` ends it. Ctrl-C is left to the
    coordinator (SIGINT ignored); SIGTERM cancels the running photo at the next stage check
    (its temporary folder is removed) and ends the process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        worker = PhotoWorker(options, threads, label, gpu_slot)
    except HeadReconError as exc:
        conn.send(("fatal", exc.exit_code, str(exc)))
        return
    except Exception as exc:
        conn.send(("fatal", 1, f"The worker could not start: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", worker.label))
    while not stopping:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            record = worker.run(task, cancel=lambda: stopping)
        except Cancelled:
            return
        conn.send(("done", record))
