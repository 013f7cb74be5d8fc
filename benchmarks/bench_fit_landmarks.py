"""Landmark-fitting benchmark on synthetic dev-model heads (see tests/test_fit_landmarks.py).

    .venv/bin/python benchmarks/bench_fit_landmarks.py [--heads 8] [--noise 0 1.5]

Each head has a random identity / expression / pose, jaw opened by 0.3 rad and closed eyes.
Prints, per quality and landmark-noise level (px, face ~200 px): wall seconds per fit (and per
stage), process CPU seconds per fit (robust to other load on a shared machine), inner-point
RMS reprojection (px), face-region vertex error after rigid alignment (mm), jaw opening error
(rad) and the largest blink error; means over the heads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from backend.model.assets import assets_dir, asset_path  # noqa: E402
from backend.fit.landmark_fit import default_camera, fit_landmarks  # noqa: E402
from backend.model.flame import FLAME, load_eyelid_deltas, load_flame  # noqa: E402
from backend.landmarks.embedding import LandmarkEmbedding  # noqa: E402
from test_fit_landmarks import (aligned_error_mm, fitted_vertices, synthetic_head,  # noqa: E402
                                synthetic_points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 1.5])
    ap.add_argument("--quality", nargs="+", default=["fast", "default", "best"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    assets = assets_dir()
    flame = FLAME(load_flame(asset_path("flame/flame_dev_model.npz")),
                  eyelid_deltas=load_eyelid_deltas(assets))
    emb = LandmarkEmbedding.load(assets)
    face = torch.from_numpy(np.load(asset_path("masks/flame_vertex_masks.npz"))["face"])
    camera = default_camera(512, 512)
    heads = [synthetic_head(flame, 100 + i, jaw=0.3, eyelids=(1.0, 1.0)) for i in range(args.heads)]
    data = [synthetic_points(flame, emb, h, camera) for h in heads]
    fit_landmarks(flame, emb, data[0][0], camera, "fast")  # warm-up (lazy torch imports)

    print(f"{args.heads} synthetic heads, torch threads {torch.get_num_threads()}")
    print(f"{'quality':8s} {'noise':>5s} {'s/fit':>6s} {'rigid':>6s} {'shape':>6s} {'cpu s':>6s} "
          f"{'rms px':>7s} "
          f"{'face mm':>8s} {'jaw rad':>8s} {'blink':>6s}")
    for quality in args.quality:
        for noise in args.noise:
            rows = []
            for i, (head, (pts, true_v)) in enumerate(zip(heads, data)):
                noisy = pts.copy()
                noisy[:, :2] += noise * np.random.default_rng(i).standard_normal((478, 2))
                t0, c0 = time.perf_counter(), time.process_time()
                res = fit_landmarks(flame, emb, noisy, camera, quality)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                p = res.params
                rows.append([dt, res.timings["fit_rigid"], res.timings["fit_shape"], cpu, res.rms_px,
                             aligned_error_mm(fitted_vertices(flame, p)[face], true_v[face]),
                             abs(float(p.pose[0, 2, 0]) - 0.3),
                             float((p.eyelids - head["eyelids"]).abs().max())])
            m = np.mean(rows, axis=0)
            print(f"{quality:8s} {noise:5.1f} {m[0]:6.2f} {m[1]:6.2f} {m[2]:6.2f} {m[3]:6.2f} "
                  f"{m[4]:7.2f} {m[5]:8.2f} {m[6]:8.3f} {m[7]:6.2f}", flush=True)


if __name__ == "__main__":
    main()
