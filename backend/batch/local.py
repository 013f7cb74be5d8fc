"""Local mode: N worker processes on this machine, each with one warm engine.

The coordinator (this module, no torch) hands one photo at a time to each idle worker over a
pipe and watches every worker's process sentinel. A worker that dies mid-photo (killed, out
of memory, a crash in native code) is replaced by a fresh one, its temporary bundle folder is
removed and the photo goes back to the front of the queue, so another worker retries it; after
MAX_ATTEMPTS deaths on the same photo it is recorded as ``failed``. Workers are started with
the ``spawn`` method (no torch/OpenMP state copied by fork) and split the CPU threads:
``threads = max(1, cores // workers)``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable

from .manifest import STATUS_FAILED, make_record
from .worker import local_worker_main, remove_partial_bundle

MAX_ATTEMPTS = 2  # a photo on which workers died this often is recorded as failed
STOP_GRACE_S = 20.0  # Ctrl-C: seconds a busy worker gets to cancel its photo cleanly


class BatchFatal(Exception):
    """The batch cannot go on (e.g. no worker can load the model); ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


@dataclass
class _Slot:
    process: Any
    conn: Connection
    label: str
    ready: bool = False
    task: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)


def died_record(task: dict[str, Any], worker: str, why: str) -> dict[str, Any]:
    """Manifest line of a photo on which workers died MAX_ATTEMPTS times."""
    return make_record(task["photo"], task["name"], STATUS_FAILED, worker=worker,
                       attempts=int(task["attempt"]),
                       error=f"The worker process died while reconstructing this photo "
                             f"({task['attempt']} attempts; last: {why}).")


def run_local(tasks: list[dict[str, Any]], options: dict[str, Any], workers: int,
              on_record: Callable[[dict[str, Any]], None],
              tick: Callable[[], None] | None = None) -> None:
    """Reconstruct ``tasks`` with ``workers`` local processes.

    Args:
        tasks: task dicts (see backend.batch.worker), ``attempt`` set to 1.
        options: ReconstructOptions as a dict.
        workers: number of worker processes (at most one per task is started).
        on_record: called in this process with each finished photo's manifest line.
        tick: called about once a second (progress bar redraw).
    Raises:
        BatchFatal: workers cannot start (model file missing: exit code 3).
        KeyboardInterrupt: after stopping every worker cleanly (running photos cancelled,
            their temporary folders removed); lines already given to on_record stand.
    """
    ctx = mp.get_context("spawn")
    n = max(1, min(workers, len(tasks)))
    threads = max(1, available_cores() // n)
    pending: deque[dict[str, Any]] = deque(tasks)
    slots: list[_Slot] = []
    counter = 0
    early_deaths = 0
    gpu_slots = 0

    def start() -> None:
        nonlocal counter, gpu_slots
        parent, child = ctx.Pipe()
        label = f"local-{counter}"
        proc = ctx.Process(target=local_worker_main, name=f"headrecon-batch-{label}",
                           args=(child, options, threads, label, gpu_slots), daemon=True)
        proc.start()
        child.close()
        slots.append(_Slot(process=proc, conn=parent, label=label))
        counter += 1
        gpu_slots += 1

    def retire(slot: _Slot, why: str) -> None:
        nonlocal early_deaths
        slots.remove(slot)
        slot.conn.close()
        if not slot.ready:
            early_deaths += 1
            if early_deaths > 2 * n + 2:
                raise BatchFatal(f"Batch workers keep dying while they start ({why}).")
        task = slot.task
        if task is not None:
            remove_partial_bundle(Path(task["output"]))
            if task["attempt"] >= MAX_ATTEMPTS:
                on_record(died_record(task, slot.label, why))
            else:
                pending.appendleft(dict(task, attempt=task["attempt"] + 1))
        if pending and len(slots) < n:
            start()

    for _ in range(n):
        start()
    try:
        while pending or any(s.task is not None for s in slots):
            for slot in slots:
                if slot.ready and slot.task is None and pending:
                    slot.task = pending.popleft()
                    slot.conn.send(slot.task)
            by_conn = {s.conn: s for s in slots}
            by_sentinel = {s.process.sentinel: s for s in slots}
            for obj in wait(list(by_conn) + list(by_sentinel), timeout=1.0):
                slot = by_conn.get(obj) or by_sentinel.get(obj)
                if slot is None or slot not in slots:
                    continue
                closed = False
                try:
                    while slot.conn.poll():  # every answer, also one sent just before exiting
                        msg = slot.conn.recv()
                        if msg[0] == "ready":
                            slot.ready, slot.label = True, msg[1]
                        elif msg[0] == "done":
                            slot.task = None
                            on_record(msg[1])
                        elif msg[0] == "fatal":
                            raise BatchFatal(msg[2], msg[1])
                except (EOFError, OSError):
                    closed = True  # the worker's end of the pipe is gone: it exited
                if closed or not slot.process.is_alive():
                    slot.process.join(timeout=5)
                    retire(slot, f"exit code {slot.process.exitcode}")
            if tick is not None:
                tick()
    except BaseException:
        _stop(slots, on_record)
        raise
    for slot in slots:
        try:
            slot.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    for slot in slots:
        slot.process.join(timeout=10)
        if slot.process.is_alive():
            slot.process.kill()


def _stop(slots: list[_Slot], on_record: Callable[[dict[str, Any]], None]) -> None:
    """Stop every worker: idle ones by message, busy ones by SIGTERM (the photo is cancelled
    at its next stage check and its temporary folder removed), stragglers killed. A photo
    that finished meanwhile still gets its manifest line."""
    for slot in slots:
        try:
            if slot.task is None:
                slot.conn.send(None)
            elif slot.process.is_alive():
                slot.process.terminate()
        except (BrokenPipeError, OSError):
            pass
    deadline = time.perf_counter() + STOP_GRACE_S
    for slot in slots:
        slot.process.join(timeout=max(0.1, deadline - time.perf_counter()))
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=5)
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                if msg[0] == "done":
                    slot.task = None
                    on_record(msg[1])
        except (EOFError, OSError):
            pass
        if slot.task is not None:
            remove_partial_bundle(Path(slot.task["output"]))
