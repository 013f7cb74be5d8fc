"""Time the ICT -> FLAME ARKit transfer (setup), its adaptation to an identity and the ARKit
fit to the landmarks of photos (identity from fit_landmarks first); print numbers.

    .venv/bin/python benchmarks/bench_arkit.py [--assets DIR] [--photos a.jpg b.jpg ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.model.arkit import (arkit_for_identity, build_arkit_on_flame,  # noqa: E402
                           eye_lids, load_flame_template)
from backend.model.assets import DEV_MODEL_RELPATH, asset_path, assets_dir  # noqa: E402
from backend.fit.arkit_fit import arkit_flame, fit_arkit  # noqa: E402
from backend.fit.landmark_fit import fit_landmarks  # noqa: E402
from backend.model.flame import FLAME, load_flame  # noqa: E402
from backend.files.photo import load_image  # noqa: E402
from backend.landmarks.embedding import LandmarkEmbedding  # noqa: E402
from backend.landmarks.mediapipe_mesh import detect_faces  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", default=None)
    parser.add_argument("--photos", nargs="*", type=Path, default=[
        REPO.parent / "shared" / "eval" / "photos" / f"expression_{i}.jpg" for i in range(3)])
    args = parser.parse_args()

    t0 = time.perf_counter()
    names, deltas, report = build_arkit_on_flame(args.assets)
    t_build = time.perf_counter() - t0
    print(f"build_arkit_on_flame: {t_build:.2f} s for {len(names)} shapes")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in report.items()},
                     indent=1))

    flame_t = load_flame_template(args.assets)
    lids = eye_lids(flame_t)
    model = load_flame(asset_path(DEV_MODEL_RELPATH, args.assets))
    rng = np.random.default_rng(0)
    ident = model.v_template + model.shapedirs @ rng.standard_normal(model.shapedirs.shape[2])
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        arkit_for_identity(deltas, ident, flame_t.verts, flame_t.faces, lids)
        times.append(time.perf_counter() - t0)
    print(f"arkit_for_identity: median {np.median(times) * 1e3:.1f} ms ({len(names)} shapes, "
          f"{deltas.shape[1]} vertices)")

    emb = LandmarkEmbedding.load(assets_dir(args.assets))
    for photo in args.photos:
        rgb = load_image(photo).rgb
        points = detect_faces(rgb)[0].points
        size = (rgb.shape[1], rgb.shape[0])
        base = fit_landmarks(FLAME(model), emb, points, image_size=size)
        ident = model.v_template + model.shapedirs @ base.params.shape[0].numpy()
        flame = arkit_flame(model, arkit_for_identity(deltas, ident, flame_t.verts, flame_t.faces, lids))
        t0 = time.perf_counter()
        fit = fit_arkit(flame, emb, points, base.params.shape, names, image_size=size)
        top = np.argsort(-fit.weights)[:5]
        print(f"fit_arkit {photo.name}: {time.perf_counter() - t0:.2f} s, rms {fit.rms_px:.2f} px "
              f"(identity fit {base.rms_px:.2f} px), top: "
              + ", ".join(f"{names[k]} {fit.weights[k]:.2f}" for k in top))


if __name__ == "__main__":
    main()
