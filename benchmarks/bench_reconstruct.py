"""Reconstruction benchmark: prints a table of (a) NME on AFLW2000-3D, (b) shape error on
synthetic heads, (c) seconds per stage.

    .venv/bin/python benchmarks/bench_reconstruct.py [--quality default] [--synthetic 10]

(a) NME: mean 2D distance between ``landmarks_68`` of result.json and the ground-truth
    ``pt3d_68`` divided by sqrt(w*h) of the ground-truth landmarks' bounding box, in percent,
    grouped by |yaw| (Pose_Para[1]) in [0,30), [30,60), [60,90] degrees.
(b) Synthetic: random identity, expression and pose of the dev model rendered with the mean
    texture and random SH lighting, reconstructed through the same pipeline; error = vertex
    distance over the FLAME 'face' region between fitted and true *neutral* shapes after rigid
    (Procrustes, no scale) alignment, in mm; median and mean.
(c) Seconds per stage, averaged over all runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.model.assets import assets_dir  # noqa: E402
from backend.options import ReconstructOptions  # noqa: E402
from backend.pipeline import Engine  # noqa: E402


def nme_percent(pred: np.ndarray, gt: np.ndarray) -> float:
    """NME of (68,2) predictions against (68,2) ground truth, bbox-size normalised, in %."""
    w, h = gt.max(0) - gt.min(0)
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.sqrt(w * h) * 100.0)


def rigid_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotate and translate (N,3) ``src`` onto ``dst`` (Kabsch, no scale)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - mu_s).T @ (dst - mu_d))
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return (src - mu_s) @ rot + mu_d


def similarity_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotate, translate and uniformly scale (N,3) ``src`` onto ``dst`` (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float((s * np.diag(d)).sum() / (a ** 2).sum())
    return scale * a @ rot + mu_d


def run_aflw(engine: Engine, opts: ReconstructOptions, eval_dir: Path, timings: dict) -> list[tuple]:
    from scipy.io import loadmat

    rows = []
    for img in sorted((eval_dir / "aflw2000_3d").glob("*.jpg")):
        mat = loadmat(str(img.with_suffix(".mat")))
        gt = mat["pt3d_68"][:2].T.astype(np.float64)
        yaw = abs(float(np.degrees(mat["Pose_Para"][0][1])))
        with tempfile.TemporaryDirectory() as tmp:
            res = engine.reconstruct(img, Path(tmp) / "out", opts)
        for k, v in res["timings"].items():
            timings[k].append(v)
        pred = np.asarray(res["landmarks_68"], dtype=np.float64)
        rows.append((img.name, yaw, nme_percent(pred, gt)))
    return rows


def run_synthetic(engine: Engine, opts: ReconstructOptions, n: int,
                  timings: dict) -> dict[str, list[np.ndarray]]:
    from backend.fit.synthetic import render_synthetic_head

    errors: dict[str, list[np.ndarray]] = {"rigid": [], "similarity": []}
    face_idx = np.load(assets_dir(opts.assets) / "masks" / "flame_vertex_masks.npz")["face"]
    rng = np.random.default_rng(opts.seed)
    for i in range(n):
        with tempfile.TemporaryDirectory() as tmp:
            photo = Path(tmp) / f"synthetic_{i}.png"
            truth = render_synthetic_head(engine, photo, rng)
            res = engine.reconstruct(photo, Path(tmp) / "out", opts)
            for k, v in res["timings"].items():
                timings[k].append(v)
            fitted = np.load(Path(tmp) / "out" / "rig.npz")["v_neutral"]
        true = truth["v_neutral"][face_idx]
        for kind, align in (("rigid", rigid_align), ("similarity", similarity_align)):
            errors[kind].append(np.linalg.norm(align(fitted[face_idx], true) - true, axis=1) * 1000.0)
    return errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quality", default="default")
    ap.add_argument("--synthetic", type=int, default=10, help="number of synthetic heads")
    ap.add_argument("--eval", default=str(REPO.parent / "shared" / "eval"))
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    opts = ReconstructOptions(quality=args.quality, device=args.device, detail=False)
    t0 = time.perf_counter()
    engine = Engine(opts)
    print(f"engine warm-up: {time.perf_counter() - t0:.2f} s on {engine.device}")
    timings: dict[str, list[float]] = defaultdict(list)

    rows = run_aflw(engine, opts, Path(args.eval), timings)
    print("\n(a) AFLW2000-3D NME (%), landmarks_68 vs pt3d_68")
    print(f"{'image':<16}{'|yaw|':>8}{'NME %':>8}")
    for name, yaw, nme in rows:
        print(f"{name:<16}{yaw:8.1f}{nme:8.2f}")
    for lo, hi in ((0, 30), (30, 60), (60, 91)):
        sel = [r[2] for r in rows if lo <= r[1] < hi]
        if sel:
            print(f"|yaw| in [{lo},{min(hi, 90)}{']' if hi > 90 else ')'}: {np.mean(sel):.2f} % over {len(sel)} images")
    print(f"overall NME: {np.mean([r[2] for r in rows]):.2f} % over {len(rows)} images")

    if args.synthetic > 0:
        errs = run_synthetic(engine, opts, args.synthetic, timings)
        print(f"\n(b) synthetic heads ({args.synthetic}), face-region neutral-shape error (mm)")
        for kind, per_head in errs.items():
            allv = np.concatenate(per_head)
            print(f"after {kind:<10} alignment: median {np.median(allv):.2f}  mean {allv.mean():.2f}  "
                  f"per-head medians {', '.join(f'{np.median(e):.2f}' for e in per_head)}")

    print("\n(c) seconds per stage (mean over runs)")
    for k, v in timings.items():
        print(f"{k:<20}{np.mean(v):8.2f}")
    print(f"{'total':<20}{sum(np.mean(v) for v in timings.values()):8.2f}")


if __name__ == "__main__":
    main()
