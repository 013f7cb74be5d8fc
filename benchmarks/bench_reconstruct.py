"""Reconstruction benchmark: prints a table of (a) NME on AFLW2000-3D, (b) shape error on
synthetic heads, (c) seconds per stage.

    .venv/bin/python benchmarks/bench_reconstruct.py [--quality default] [--synthetic 10]

(a) NME: mean 2D distance between ``landmarks_68`` of result.json and the ground-truth
    ``pt3d_68`` divided by sqrt(w*h) of the ground-truth landmarks' bounding box, in percent,
    grouped by |yaw| (Pose_Para[1]) in [0,30), [30,60), [60,90] degrees, for four sources:
    MediaPipe's points mapped to 68 (``mp68``), the large-pose network alone (``net``), the
    whole reconstruction with MediaPipe only (``fit_mp``, network switched off) and the fused
    reconstruction (``fused``, the product). A fit worse than its sources is a bug.
(b) Synthetic: random identity, expression and pose of the dev model rendered with the mean
    texture and random SH lighting, reconstructed through the same pipeline; error = vertex
    distance over the FLAME 'face' region between fitted and true *neutral* shapes after rigid
    (Procrustes, no scale) alignment, in mm; median and mean.
(c) Seconds per stage, averaged over all runs.
(d) Determinism: the first AFLW image reconstructed twice more by the same warm engine; "yes"
    when the two result.json agree exactly (timings aside), else the largest differences.
"""

from __future__ import annotations

import argparse
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


SOURCES = ("mp68", "net", "fit_mp", "fused")


def run_aflw(engine: Engine, opts: ReconstructOptions, eval_dir: Path, timings: dict) -> list[tuple]:
    """Per image: (name, |yaw| degrees, {source: NME %}, result.json of the fused run)."""
    from scipy.io import loadmat

    from backend.files.photo import load_image
    from backend.landmarks.ibug68 import MEDIAPIPE_TO_IBUG68

    rows = []
    network = engine.tddfa
    for img in sorted((eval_dir / "aflw2000_3d").glob("*.jpg")):
        mat = loadmat(str(img.with_suffix(".mat")))
        gt = mat["pt3d_68"][:2].T.astype(np.float64)
        yaw = abs(float(np.degrees(mat["Pose_Para"][0][1])))
        loaded = load_image(img)
        face, _ = engine.detector.detect_face(loaded.rgb)
        nme = {"mp68": nme_percent(face.points[list(MEDIAPIPE_TO_IBUG68), :2] / loaded.scale, gt)}
        with tempfile.TemporaryDirectory() as tmp:
            engine.tddfa = None
            try:
                res_mp = engine.reconstruct(img, Path(tmp) / "mp", opts)
            finally:
                engine.tddfa = network
            res = engine.reconstruct(img, Path(tmp) / "out", opts)
        for k, v in res["timings"].items():
            timings[k].append(v)
        nme["fit_mp"] = nme_percent(np.asarray(res_mp["landmarks_68"], np.float64), gt)
        nme["fused"] = nme_percent(np.asarray(res["landmarks_68"], np.float64), gt)
        net = res.get("landmark_sources", {}).get("tddfa")
        nme["net"] = nme_percent(np.asarray(net["landmarks_68"], np.float64), gt) if net else float("nan")
        rows.append((img.name, yaw, nme, res))
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
    print("\n(a) AFLW2000-3D NME (%), 68 points vs pt3d_68")
    print(f"{'image':<16}{'|yaw|':>8}" + "".join(f"{s:>9}" for s in SOURCES))
    for name, yaw, nme, _ in rows:
        print(f"{name:<16}{yaw:8.1f}" + "".join(f"{nme[s]:9.2f}" for s in SOURCES))
    for lo, hi in ((0, 30), (30, 60), (60, 91)):
        sel = [r[2] for r in rows if lo <= r[1] < hi]
        if sel:
            label = f"|yaw| [{lo},{min(hi, 90)}{']' if hi > 90 else ')'} ({len(sel)})"
            print(f"{label:<24}" + "".join(f"{np.mean([n[s] for n in sel]):9.2f}" for s in SOURCES))
    print(f"{'overall (' + str(len(rows)) + ')':<24}"
          + "".join(f"{np.mean([r[2][s] for r in rows]):9.2f}" for s in SOURCES))
    worse = [r[0] for r in rows if r[2]["fused"] > min(r[2]["mp68"], r[2]["net"]) + 0.5]
    if worse:
        print(f"fused fit worse than its best source by > 0.5 % on: {', '.join(worse)}")

    if args.synthetic > 0:
        errs = run_synthetic(engine, opts, args.synthetic, timings)
        print(f"\n(b) synthetic heads ({args.synthetic}), face-region neutral-shape error (mm)")
        for kind, per_head in errs.items():
            allv = np.concatenate(per_head)
            print(f"after {kind:<10} alignment: median {np.median(allv):.2f}  mean {allv.mean():.2f}  "
                  f"per-head medians {', '.join(f'{np.median(e):.2f}' for e in per_head)}")

    first = sorted((Path(args.eval) / "aflw2000_3d").glob("*.jpg"))[0]
    print(f"\n(d) deterministic: {check_determinism(engine, opts, first)}")

    print("\n(c) seconds per stage (mean over runs)")
    for k, v in timings.items():
        print(f"{k:<20}{np.mean(v):8.2f}")
    print(f"{'total':<20}{sum(np.mean(v) for v in timings.values()):8.2f}")


def check_determinism(engine: Engine, opts: ReconstructOptions, photo: Path) -> str:
    """Reconstruct ``photo`` twice: "yes" if result.json (timings aside) is identical."""
    results = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            res = engine.reconstruct(photo, Path(tmp) / "out", opts)
        res.pop("timings")
        res.get("detail", {}).get("displacement", {}).pop("seconds", None)
        results.append(res)
    a, b = results
    if a == b:
        return f"yes ({photo.name} twice on {engine.device}: identical result.json, timings aside)"
    diffs = {k: float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max())
             for k in ("identity", "expression", "landmarks_68")}
    return f"NO ({photo.name} twice on {engine.device}: max differences {diffs})"


if __name__ == "__main__":
    main()
