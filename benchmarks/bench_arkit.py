"""Time the ICT -> FLAME ARKit transfer (setup) and its adaptation to an identity; print numbers.

    .venv/bin/python benchmarks/bench_arkit.py [--assets DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.arkit import (arkit_for_identity, build_arkit_on_flame,  # noqa: E402
                           eye_lids, load_flame_template)
from backend.assets import DEV_MODEL_RELPATH, asset_path  # noqa: E402
from backend.flame import load_flame  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", default=None)
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


if __name__ == "__main__":
    main()
