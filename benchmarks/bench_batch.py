"""Batch throughput: photos per minute of ``headrecon batch`` against one CLI start per photo.

    .venv/bin/python benchmarks/bench_batch.py [-n 6] [--quality default] [--no-detail]
        [--no-texture] [--skip-ray] [--keep OUT]

Runs the first N photos of ``../shared/eval/photos`` (224-450 px ones first) four ways, each
a real process started from scratch, wall clock from start to exit:

* ``cli x N``: ``headrecon reconstruct`` once per photo, one after the other (model load every
  time, torch's default threads);
* ``batch --workers 1`` and ``--workers 2``: local worker processes with a warm engine,
  threads split (cores // workers);
* ``batch --ray --workers 2``: a local Ray instance (started inside the run) with 2 actors.

Printed: a table (wall seconds, photos per minute, speed-up over the CLI, CPU seconds per
photo of the processes the run started: less sensitive to other jobs than wall time) and the mean
seconds per pipeline stage per photo of each batch run, from the manifests. On a shared
machine the numbers move with the other jobs; the stage table says where the time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = Path(os.environ.get("HEADRECON_EVAL", REPO.parent / "shared" / "eval")) / "photos"
PREFERRED = ["expression_0.jpg", "alfw1.png", "IMG_0392_inputs.jpg", "expression_1.jpg",
             "alfw2.png", "image02673.png", "expression_7.jpg", "expression_8.jpg"]


def headrecon(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI as a user does; raise with its stderr when it fails unexpectedly."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"headrecon {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def child_cpu_s() -> float:
    """User + system CPU seconds of finished child processes (and their reaped children)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def stage_means(manifest: Path) -> dict[str, float]:
    """Mean seconds per stage over the ok photos of a manifest."""
    recs = [json.loads(ln) for ln in manifest.read_text().splitlines() if ln.strip()]
    ok = [r for r in recs if r["status"] == "ok"]
    stages: dict[str, list[float]] = {}
    for r in ok:
        for k, v in r["seconds"].items():
            stages.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in stages.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=6, help="photos (default 6)")
    ap.add_argument("--quality", default="default")
    ap.add_argument("--no-detail", action="store_true")
    ap.add_argument("--no-texture", action="store_true")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--keep", default=None, help="write the outputs here instead of a temp folder")
    args = ap.parse_args()

    names = [p for p in PREFERRED if (PHOTOS / p).is_file()]
    names += sorted(p.name for p in PHOTOS.iterdir() if p.name not in names)
    photos = [PHOTOS / n for n in names[:args.n]]
    flags = ["--quality", args.quality, "--device", "cpu"]
    flags += ["--no-detail"] if args.no_detail else []
    flags += ["--no-texture"] if args.no_texture else []
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    listing = work / "photos.txt"
    listing.write_text("".join(f"{p}\n" for p in photos))
    cores = len(os.sched_getaffinity(0))
    print(f"{len(photos)} photos, quality {args.quality}, detail {not args.no_detail}, "
          f"texture {not args.no_texture}, {cores} cores; outputs in {work}", flush=True)

    rows: list[tuple[str, float, float]] = []  # label, wall s, CPU s
    stages: dict[str, dict[str, float]] = {}
    t0, c0 = time.perf_counter(), child_cpu_s()
    for i, p in enumerate(photos):
        headrecon("reconstruct", str(p), "-o", str(work / "cli" / p.stem), *flags)
    rows.append((f"cli x {len(photos)}", time.perf_counter() - t0, child_cpu_s() - c0))
    print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} s", flush=True)

    runs = [("batch --workers 1", ["--workers", "1"]), ("batch --workers 2", ["--workers", "2"])]
    if not args.skip_ray:
        runs.append(("batch --ray --workers 2", ["--ray", "--workers", "2"]))
    for label, extra in runs:
        out = work / label.replace(" ", "_").replace("-", "")
        t0, c0 = time.perf_counter(), child_cpu_s()
        headrecon("batch", str(listing), "-o", str(out), *flags, *extra)
        rows.append((label, time.perf_counter() - t0, child_cpu_s() - c0))
        stages[label] = stage_means(out / "manifest.jsonl")
        print(f"  {label}: {rows[-1][1]:.1f} s", flush=True)

    base = rows[0][1]
    load = os.getloadavg()[0]
    print(f"\n(1-minute load average at the end: {load:.1f} on {cores} cores)")
    print("| run | wall s | photos/min | speed-up vs CLI | CPU s per photo |")
    print("|---|---|---|---|---|")
    for label, secs, cpu in rows:
        # Ray's actors are children of Ray's own daemons, not of this run: their CPU is not seen
        cpu_text = "n/a" if "--ray" in label else f"{cpu / len(photos):.1f}"
        print(f"| {label} | {secs:.1f} | {len(photos) / secs * 60:.1f} | {base / secs:.2f}x "
              f"| {cpu_text} |")
    keys = [k for k in next(iter(stages.values()))] if stages else []
    print("\nmean seconds per photo and stage (wall, inside the worker):")
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for label, st in stages.items():
        print(f"| {label} | " + " | ".join(f"{st.get(k, float('nan')):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
