"""Face-landmark benchmark: milliseconds per photo for ``detect_faces``.

    .venv/bin/python benchmarks/bench_landmarks.py [--photos DIR] [--max-side 1024] [--repeat 3]

Each photo is loaded as the pipeline loads it (``load_image(max_side)``), then
``FaceLandmarker.detect_faces`` is timed ``--repeat`` times after one warm-up call; the table
shows the best and mean time per photo, then the model load time and overall figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.files.photo import load_image  # noqa: E402
from backend.landmarks.mediapipe_mesh import FaceLandmarker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "eval" / "photos")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    landmarker = FaceLandmarker()
    load_s = time.perf_counter() - start

    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"{'photo':48s} {'size':>10s} {'faces':>5s} {'best ms':>8s} {'mean ms':>8s}")
    means = []
    for path in paths:
        rgb = load_image(path, max_side=args.max_side).rgb
        faces = landmarker.detect_faces(rgb)  # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            landmarker.detect_faces(rgb)
            times.append((time.perf_counter() - t0) * 1000.0)
        means.append(statistics.fmean(times))
        size = f"{rgb.shape[1]}x{rgb.shape[0]}"
        print(f"{path.name:48s} {size:>10s} {len(faces):5d} {min(times):8.1f} {means[-1]:8.1f}")
    landmarker.close()
    print(f"\nmodel load: {load_s * 1000:.0f} ms; {len(paths)} photos: "
          f"mean {statistics.fmean(means):.1f} ms, median {statistics.median(means):.1f} ms per photo")


if __name__ == "__main__":
    main()
