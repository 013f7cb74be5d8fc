"""Service benchmark: warm start-up time of ``headrecon serve`` and seconds per job through
the service versus the CLI (one process per photo).

    .venv/bin/python benchmarks/bench_service.py [--photos 3] [--starts 3] [--quality fast]
        [--device auto] [--no-texture]

Start-up: time from spawning ``python -m backend serve`` to its ``ready`` event (engine and
face detector loaded). The first start warms the OS file cache and is reported apart.
Per job: wall-clock seconds from sending ``reconstruct`` to the ``result`` event, against
``python -m backend reconstruct`` run as a fresh process per photo (what a user without the
service would pay) on the same photos and options.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Serve:
    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", *args], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()

    def until(self, pred) -> dict:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            msg = json.loads(raw)
            if pred(msg):
                return msg
        raise RuntimeError("the service exited")

    def close(self) -> None:
        self.send({"type": "shutdown"})
        self.proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--quality", default="fast")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-texture", action="store_true")
    ap.add_argument("--eval", default=str(REPO.parent / "shared" / "eval"))
    args = ap.parse_args()
    common = ["--device", args.device]
    photos = sorted((Path(args.eval) / "photos").glob("*.jpg"))[: args.photos]
    options = {"quality": args.quality, "texture": not args.no_texture, "detail": False}

    starts = []
    for _ in range(args.starts + 1):
        t0 = time.perf_counter()
        svc = Serve(common)
        ready = svc.until(lambda m: m.get("type") in ("ready", "error") and "id" not in m)
        starts.append(time.perf_counter() - t0)
        if ready["type"] == "error":
            sys.exit(f"service failed to start: {ready['message']}")
        svc.close()
    print(f"service start-up to ready: first {starts[0]:.2f} s, warm "
          + ", ".join(f"{s:.2f}" for s in starts[1:])
          + f" s (mean {sum(starts[1:]) / max(len(starts) - 1, 1):.2f} s) on {ready['device']}")

    svc = Serve(common)
    svc.until(lambda m: m.get("type") == "ready")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, photo in enumerate(photos):
            t0 = time.perf_counter()
            svc.send({"id": i, "type": "reconstruct", "photo": str(photo), "options": options})
            end = svc.until(lambda m: m.get("type") in ("result", "error") and "job" in m
                            or (m.get("type") == "error" and m.get("id") == i))
            t_service = time.perf_counter() - t0
            if end["type"] == "error":
                print(f"{photo.name}: service error: {end['message']}")
                continue
            svc.send({"id": f"rel{i}", "type": "release", "job": end["job"]})
            cli = [sys.executable, "-m", "backend", "reconstruct", str(photo), "-o",
                   str(Path(tmp) / f"cli{i}"), "--quality", args.quality, *common, "--no-detail"]
            if args.no_texture:
                cli.append("--no-texture")
            t0 = time.perf_counter()
            rc = subprocess.run(cli, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            t_cli = time.perf_counter() - t0
            rows.append((photo.name, t_service, t_cli if rc == 0 else float("nan")))
    svc.close()

    print(f"\nseconds per job, quality={args.quality}, texture={not args.no_texture}")
    print(f"{'photo':<48}{'service':>10}{'CLI':>10}")
    for name, ts, tc in rows:
        print(f"{name:<48}{ts:10.2f}{tc:10.2f}")
    if rows:
        ms = sum(r[1] for r in rows) / len(rows)
        mc = sum(r[2] for r in rows) / len(rows)
        print(f"{'mean':<48}{ms:10.2f}{mc:10.2f}   service/CLI = {ms / mc:.2f}")


if __name__ == "__main__":
    main()
