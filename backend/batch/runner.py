"""``headrecon batch``: plan the photos, run them locally or on Ray, keep the manifest.

Exit codes of :func:`batch_main`: 0 every photo ok (or already complete), 1 the batch ran to
the end but some photos are ``bad input`` or ``failed`` (the manifest says which and why),
64 usage error as in the rest of the CLI (no photos, an unreadable list, ``--ray`` without
Ray installed), 3 a model file is missing or invalid (no worker can start), 130 stopped by
Ctrl-C (143 from the CLI for SIGTERM); finished photos and their manifest lines stand and
``--resume`` continues.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..options import ReconstructOptions
from .inputs import MANIFEST_NAME, InputListError, collect_inputs
from .local import BatchFatal, available_cores, run_local
from .manifest import (STATUS_OK, ManifestWriter, bundle_complete, read_manifest,
                       record_from_bundle)
from .progress import BatchProgress

EXIT_OK, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 130
EXIT_USAGE = 64  # the CLI's usage-error code (BSD sysexits EX_USAGE; 2 means a bad photo)
LOCAL_RAY = "local"  # value of --ray without an address


@dataclass
class BatchSummary:
    """What a batch run did."""

    ok: int = 0
    bad_input: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def done(self) -> int:
        """Photos finished in this run (any status)."""
        return self.ok + self.bad_input + self.failed


WORKER_MEMORY_BYTES = 1_500_000_000  # a warm worker peaks near 0.8-1.2 GB (fast..best quality)


def default_workers(options: ReconstructOptions) -> int:
    """Local workers when ``--workers`` is not given: one per GPU on a CUDA machine, else one
    single-threaded worker per core, as many as memory allows (benchmarks/bench_batch.py: two
    one-thread workers did 2.2x the photos per minute of one two-thread worker on 2 cores)."""
    if options.device != "cpu":
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = WORKER_MEMORY_BYTES * available_cores()
    return max(1, min(available_cores(), memory // WORKER_MEMORY_BYTES))


def plan(items: list, out_dir: Path, resume: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the photos into tasks to run and manifest lines to keep.

    With ``resume``, a photo whose bundle is complete is skipped and keeps its old ``ok`` line
    (or one rebuilt from its result.json); lines of bundles outside this run's inputs stay too.
    Everything else (failed, bad input, never started, half written) is run again.
    """
    old = read_manifest(out_dir / MANIFEST_NAME) if resume else []
    last = {r["output"]: r for r in old}
    names = {it.name for it in items}
    keep: list[dict[str, Any]] = [r for r in last.values()
                                  if r["output"] not in names and r["status"] == STATUS_OK
                                  and bundle_complete(out_dir / r["output"])]
    tasks: list[dict[str, Any]] = []
    for it in items:
        out = out_dir / it.name
        if resume and bundle_complete(out):
            rec = last.get(it.name)
            if rec is None or rec["status"] != STATUS_OK or rec.get("input") != str(it.photo):
                rec = record_from_bundle(str(it.photo), it.name, out)
            keep.append(rec)
        else:
            tasks.append({"photo": str(it.photo), "name": it.name, "output": str(out.resolve()),
                          "attempt": 1})
    return tasks, keep


def run_batch(inputs: list[str], out_dir: str | Path, options: ReconstructOptions,
              workers: int | None = None, ray_address: str | None = None, resume: bool = False,
              stream: TextIO | None = None) -> BatchSummary:
    """Reconstruct every photo of ``inputs`` into ``out_dir`` (see docs/BATCH.md).

    Args:
        inputs: photos, folders, .txt/.csv lists (backend.batch.inputs).
        out_dir: OUT_DIR; bundles in ``OUT_DIR/<name>/``, lines in ``OUT_DIR/manifest.jsonl``.
        options: per-photo options (quality, device, detail, texture, flame, assets).
        workers: local processes or Ray actors (None: default_workers / one actor per GPU).
        ray_address: None = local processes; ``"local"`` = a local Ray instance (or the one
            this process already started with ``ray.init``); else a Ray cluster address.
        resume: skip complete bundles, redo the rest.
        stream: progress output (stderr).
    Returns:
        BatchSummary; ``interrupted`` after Ctrl-C (the manifest is valid, workers stopped).
    Raises:
        InputListError: no photos or a bad INPUT. BatchFatal: workers cannot start.
    """
    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    items = collect_inputs(list(inputs))
    if not items:
        raise InputListError("No photos to reconstruct.")
    tasks, keep = plan(items, out, resume)
    summary = BatchSummary(skipped=len(keep) - sum(1 for r in keep if r["output"] not in
                                                   {it.name for it in items}))
    progress = BatchProgress(len(tasks), summary.skipped, stream=stream)
    writer = ManifestWriter(out, keep)
    summary.manifest = writer.path

    def on_record(rec: dict[str, Any]) -> None:
        writer.append(rec)
        if rec["status"] == STATUS_OK:
            summary.ok += 1
        elif rec["status"] == "bad input":
            summary.bad_input += 1
        else:
            summary.failed += 1
        progress.record(rec)

    opts = options.to_dict()
    try:
        if tasks:
            progress.draw(force=True)
            if ray_address is None:
                run_local(tasks, opts, workers or default_workers(options), on_record, progress.draw)
            else:
                from .ray_cluster import run_ray

                run_ray(tasks, opts, workers, None if ray_address == LOCAL_RAY else ray_address,
                        on_record, progress.draw)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        writer.close()
        progress.close()
        summary.seconds = time.perf_counter() - t0
    return summary


def add_batch_parser(sub: Any, qualities: tuple[str, ...]) -> None:
    """The ``batch`` subcommand's arguments (called by backend/cli.py)."""
    b = sub.add_parser("batch", help="reconstruct many photos (folders, lists) into OUT_DIR, "
                       "locally with N warm workers or on a Ray cluster; manifest.jsonl, --resume")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="photos, folders (recursive, natural order) or .txt/.csv lists of paths")
    b.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="bundles go to OUT_DIR/<relative path without suffix>/")
    b.add_argument("--workers", type=int, default=None,
                   help="local worker processes or Ray actors (default: one per GPU; on CPU "
                        "one single-threaded worker per core)")
    b.add_argument("--quality", choices=qualities, default="default")
    b.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    b.add_argument("--flame", default=None, help="FLAME model (.pkl official or .npz)")
    b.add_argument("--assets", default=None, help="assets folder (default ../shared/assets)")
    b.add_argument("--no-detail", action="store_true", help="skip the UV displacement stage")
    b.add_argument("--no-texture", action="store_true", help="skip texture and albedo stages")
    b.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="run on Ray: a local instance, or the cluster at ADDRESS (needs the "
                        "'ray' extra: pip install 'headrecon-backend[ray]'); put --ray after "
                        "the INPUTs or write --ray=ADDRESS")
    b.add_argument("--resume", action="store_true",
                   help="skip photos whose bundle is complete, retry the others")


def batch_main(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Run ``headrecon batch`` from parsed arguments; returns the exit code (module docstring)."""
    err = stream or sys.stderr
    if args.workers is not None and args.workers < 1:
        print("headrecon: error: --workers must be at least 1.", file=err)
        return EXIT_USAGE
    if args.ray not in (None, LOCAL_RAY) and Path(args.ray).exists():
        # `batch --ray photos/ more/ -o out`: argparse took the first INPUT for the address
        args.inputs, args.ray = [args.ray, *args.inputs], LOCAL_RAY
    if args.ray is not None:
        from .ray_cluster import RAY_INSTALL_HINT, ray_installed

        if not ray_installed():
            print(f"headrecon: error: {RAY_INSTALL_HINT}", file=err)
            return EXIT_USAGE
    try:
        options = ReconstructOptions.from_dict(dict(
            device=args.device, flame=args.flame, assets=args.assets, quality=args.quality,
            detail=not args.no_detail, texture=not args.no_texture))
    except ValueError as exc:
        print(f"headrecon: error: {exc}.", file=err)
        return EXIT_USAGE

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # The CLI's main() turns SIGTERM into its own exception (workers are stopped on the way
    # out all the same); called on its own, SIGTERM stops the batch like Ctrl-C.
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_term)
    try:
        summary = run_batch(args.inputs, args.output, options, workers=args.workers,
                            ray_address=args.ray, resume=args.resume, stream=err)
    except InputListError as exc:
        print(f"headrecon: error: {exc}", file=err)
        return EXIT_USAGE
    except BatchFatal as exc:
        print(f"headrecon: error: {exc}", file=err)
        return exc.exit_code
    finally:
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous)
    rate = summary.done / summary.seconds * 60.0 if summary.seconds > 0 else 0.0
    print(f"headrecon: batch: {summary.ok} ok, {summary.bad_input} bad input, {summary.failed} "
          f"failed, {summary.skipped} skipped in {summary.seconds:.0f} s ({rate:.1f} photos/min); "
          f"manifest {summary.manifest}", file=err)
    if summary.interrupted:
        print("headrecon: error: cancelled; run again with --resume to continue.", file=err)
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.bad_input + summary.failed == 0 else EXIT_SOME_FAILED
