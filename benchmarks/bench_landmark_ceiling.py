"""Where the AFLW2000-3D landmark error comes from: detector, fit or landmark definition.

    .venv/bin/python benchmarks/bench_landmark_ceiling.py [--quality default] [--learn]

For each AFLW2000-3D evaluation image (MediaPipe on the loaded photo, then ``fit_landmarks``;
no photometric stage) prints the NME (%, see backend/landmarks/ibug68.py) of
  mp      MediaPipe's 478 points mapped straight to the 68 (``MEDIAPIPE_TO_IBUG68``, no FLAME),
  static  the fitted head's static 68-point embedding (fixed surface points),
  dynamic the same with the yaw-dependent silhouette contour (the fitting targets' definition),
  oracle  the fitted shape in the rigid pose that best matches the ground truth (uses the GT:
          what a perfect pose would give with this shape),
  product ``Landmarks68`` (static + ``AFLW_OFFSETS_MM``), what result.json reports,
then per-region means and the means per |yaw| group.

``--learn`` fits, from the same starting fits, every image's FLAME parameters jointly with one
shared (68, 3) head-frame offset table to the ground truth (jaw, brows, nose and mouth; eyes
stay 0), prints the leave-one-out NME (offsets learnt on the other 7 images) and the table
learnt on all 8 as the Python literal for ``AFLW_OFFSETS_MM``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.model.assets import assets_dir, flame_model_path  # noqa: E402
from backend.fit.landmark_fit import fit_landmarks, project  # noqa: E402
from backend.model.flame import FLAME, load_eyelid_deltas, load_flame  # noqa: E402
from backend.files.photo import load_image  # noqa: E402
from backend.landmarks.embedding import LandmarkEmbedding, yaw_degrees  # noqa: E402
from backend.landmarks.ibug68 import (MEDIAPIPE_TO_IBUG68, REGIONS_68, Landmarks68,  # noqa: E402
                                   head_rotation, nme_percent, region_nme_percent)
from backend.landmarks.mediapipe_mesh import FaceLandmarker  # noqa: E402
from backend.model.params import FitParams  # noqa: E402

LEARN_REGIONS = ("jaw", "brows", "nose", "mouth")
OFFSET_PRIOR = 1e-4  # per squared centimetre of offset, against mean squared NME fractions
GROUPS = ((0, 30), (30, 60), (60, 91))


class Case:
    """One evaluation image: ground truth, MediaPipe points and the landmark fit."""

    def __init__(self, path: Path, landmarker: FaceLandmarker, flame: FLAME,
                 emb: LandmarkEmbedding, quality: str):
        mat = loadmat(str(path.with_suffix(".mat")))
        img = load_image(path)
        self.name = path.stem
        self.scale = img.scale
        self.gt = mat["pt3d_68"][:2].T.astype(np.float64) * img.scale  # in loaded-image pixels
        self.yaw = abs(float(np.degrees(mat["Pose_Para"][0][1])))
        self.points = landmarker.detect_face(img.rgb)[0].points
        h, w = img.rgb.shape[:2]
        t0 = time.perf_counter()
        self.fit: FitParams = fit_landmarks(flame, emb, self.points, image_size=(w, h),
                                            quality=quality).params
        self.seconds = time.perf_counter() - t0


def _predict(flame: FLAME, lmk: Landmarks68, p: FitParams, pose: torch.Tensor | None = None,
             translation: torch.Tensor | None = None) -> torch.Tensor:
    """(68, 2) product landmarks of ``p`` (optionally another pose / translation) in pixels."""
    pose = p.pose if pose is None else pose
    translation = p.translation if translation is None else translation
    v = flame(p.shape, p.expression, pose, translation, eyelids=p.eyelids).vertices
    return project(lmk(v, pose)[0], p.camera)


def _gt_error(uv: torch.Tensor, case: Case) -> torch.Tensor:
    gt = torch.as_tensor(case.gt, dtype=torch.float32)
    size = float(np.sqrt(np.prod(case.gt.max(0) - case.gt.min(0))))
    return (((uv - gt) / size) ** 2).sum(-1).mean()


def rigid_oracle(flame: FLAME, lmk: Landmarks68, case: Case, steps: int = 300) -> np.ndarray:
    """Landmarks of the fitted shape in the root pose / translation closest to the GT."""
    p = case.fit
    root = p.pose[:, :1].clone().requires_grad_()
    trans = p.translation.clone().requires_grad_()
    opt = torch.optim.Adam([root, trans], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = _gt_error(_predict(flame, lmk, p, torch.cat([root, p.pose[:, 1:]], 1), trans), case)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return _predict(flame, lmk, p, torch.cat([root, p.pose[:, 1:]], 1), trans).numpy()


def learn_offsets(flame: FLAME, lmk: Landmarks68, cases: list[Case], steps: int = 400) -> np.ndarray:
    """(68, 3) offsets in mm fitted jointly with every case's shape, expression, pose and
    translation to the ground truth (L2 priors on coefficients and offsets)."""
    mask = torch.zeros(68, 1)
    for name in LEARN_REGIONS:
        mask[REGIONS_68[name]] = 1.0
    off = torch.zeros(68, 3, requires_grad=True)
    per_case = [[t.clone().requires_grad_() for t in (c.fit.shape, c.fit.expression, c.fit.pose,
                                                       c.fit.translation)] for c in cases]
    opt = torch.optim.Adam([off] + [t for ts in per_case for t in ts], lr=0.005)
    for _ in range(steps):
        opt.zero_grad()
        loss = OFFSET_PRIOR * ((off * mask * 100.0) ** 2).sum()
        for c, (shape, expr, pose, trans) in zip(cases, per_case):
            v = flame(shape, expr, pose, trans, eyelids=c.fit.eyelids).vertices
            q = lmk.surface(v)[0] + (off * mask) @ head_rotation(pose)[0].T
            loss = loss + (_gt_error(project(q, c.fit.camera), c)
                           + 1e-3 * ((shape ** 2).sum() + (expr ** 2).sum())) / len(cases)
        loss.backward()
        opt.step()
    return (off * mask).detach().numpy() * 1000.0


def _row(name: str, values: list[float]) -> str:
    return f"{name:<12}" + "".join(f"{v:9.2f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", default="default")
    ap.add_argument("--eval", default=str(REPO.parent / "shared" / "eval"))
    ap.add_argument("--learn", action="store_true", help="learn the offset table (see above)")
    args = ap.parse_args()

    assets = assets_dir()
    model = load_flame(flame_model_path(None, assets))
    flame = FLAME(model, eyelid_deltas=load_eyelid_deltas(assets))
    emb = LandmarkEmbedding.load(assets)
    lmk = Landmarks68(assets, model.faces)
    sub_ids = torch.unique(lmk.tri)  # learning and oracle run on the landmark vertices only
    flame_sub = flame.subset(sub_ids.numpy())
    lookup = torch.full((int(sub_ids.max()) + 1,), -1, dtype=torch.long)
    lookup[sub_ids] = torch.arange(len(sub_ids))
    lmk_sub = Landmarks68(assets, model.faces)
    lmk_sub.tri = lookup[lmk.tri]

    landmarker = FaceLandmarker()
    cases = [Case(p, landmarker, flame, emb, args.quality)
             for p in sorted((Path(args.eval) / "aflw2000_3d").glob("*.jpg"))]
    kinds = ("mp", "static", "dynamic", "oracle", "product")
    table: dict[str, dict[str, np.ndarray]] = {}
    print(f"AFLW2000-3D NME (%), {len(cases)} images, quality {args.quality}, model {model.name}")
    print(f"{'image':<12}{'|yaw|':>9}" + "".join(f"{k:>9}" for k in kinds) + f"{'fit s':>9}")
    for c in cases:
        p = c.fit
        with torch.no_grad():
            v = flame(p.shape, p.expression, p.pose, p.translation, eyelids=p.eyelids).vertices
            table[c.name] = {
                "mp": c.points[list(MEDIAPIPE_TO_IBUG68), :2],
                "static": project(lmk.surface(v)[0], p.camera).numpy(),
                "dynamic": project(emb.lmk68(v, yaw_degrees(p.pose))[0], p.camera).numpy(),
                "product": project(lmk(v, p.pose)[0], p.camera).numpy()}
        table[c.name]["oracle"] = rigid_oracle(flame_sub, lmk_sub, c)
        print(_row(c.name, [c.yaw] + [nme_percent(table[c.name][k], c.gt) for k in kinds]
                   + [c.seconds]), flush=True)
    print("\nmean per region")
    print(f"{'':<12}" + "".join(f"{r:>9}" for r in REGIONS_68))
    for k in kinds:
        regs = [region_nme_percent(table[c.name][k], c.gt) for c in cases]
        print(_row(k, [np.mean([r[n] for r in regs]) for n in REGIONS_68]))
    print("\nmean per |yaw| group")
    print(f"{'':<12}" + "".join(f"{f'[{lo},{min(hi, 90)})':>9}" for lo, hi in GROUPS) + f"{'all':>9}")
    for k in kinds:
        per = {c.name: nme_percent(table[c.name][k], c.gt) for c in cases}
        print(_row(k, [np.mean([per[c.name] for c in cases if lo <= c.yaw < hi] or [np.nan])
                       for lo, hi in GROUPS] + [np.mean(list(per.values()))]))

    if args.learn:
        print("\nleave-one-out: offsets learnt on the other images (NME %)")
        print(f"{'image':<12}{'|yaw|':>9}{'static':>9}{'loo':>9}")
        loo = {}
        for c in cases:
            off = learn_offsets(flame_sub, lmk_sub, [o for o in cases if o is not c])
            with torch.no_grad():
                pred = _predict(flame, Landmarks68(assets, model.faces, off), c.fit).numpy()
            loo[c.name] = (nme_percent(table[c.name]["static"], c.gt), nme_percent(pred, c.gt))
            print(_row(c.name, [c.yaw, *loo[c.name]]), flush=True)
        for lo, hi in GROUPS:
            sel = [loo[c.name] for c in cases if lo <= c.yaw < hi]
            print(_row(f"[{lo},{min(hi, 90)})", [np.nan, *np.mean(sel, axis=0)]))
        print(_row("all", [np.nan, *np.mean(list(loo.values()), axis=0)]))
        off = learn_offsets(flame_sub, lmk_sub, cases)
        print("\nAFLW_OFFSETS_MM (learnt on all images):")
        print(np.array2string(off.round(2), separator=", ", max_line_width=100))


if __name__ == "__main__":
    main()
