"""Performance capture numbers; prints them.

1. Landmark error of the ARKit-driven fit (backend.capture, 51 ARKit weights + jaw/eyes/head)
   against the FLAME-expression fit (backend.fit.landmark_fit.fit_landmarks: identity, PCA
   expression, pose) on ../shared/eval/photos/expression_*.jpg. The ARKit fit uses the
   identity the FLAME fit found. Error: RMS over the 105 inner MediaPipe points (both fits
   report it the same way), in pixels and in % of the face size sqrt(w * h) of the
   MediaPipe points' bounding box.
2. Seconds per video frame of ``capture_sequence`` on a synthetic clip (one photo shifted and
   scaled a little per frame, written with OpenCV): first (cold) frame, the warm-started
   rest, and the whole clip per frame including detection and decoding.

    .venv/bin/python benchmarks/bench_capture.py [--max-side 512] [--frames 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.capture import CaptureModel, capture_sequence  # noqa: E402
from backend.fit.landmark_fit import fit_landmarks  # noqa: E402
from backend.files.photo import load_image  # noqa: E402
from backend.pipeline import Engine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def landmark_errors(engine: Engine, photos: list[Path], max_side: int) -> None:
    print(f"{'photo':18s} {'size':>9s} {'FLAME px':>9s} {'ARKit px':>9s} {'FLAME %':>8s} "
          f"{'ARKit %':>8s} {'FLAME s':>8s} {'ARKit s':>8s}")
    rows = []
    for photo in photos:
        rgb = load_image(photo, max_side=max_side).rgb
        face, _ = engine.detector.detect_face(rgb)
        x0, y0, x1, y1 = face.bbox
        size = float(np.sqrt((x1 - x0) * (y1 - y0)))
        t0 = time.perf_counter()
        base = fit_landmarks(engine.flame, engine.embedding, face.points,
                             image_size=(rgb.shape[1], rgb.shape[0]))
        t_flame = time.perf_counter() - t0
        model = CaptureModel(engine, base.params.shape[0].cpu().numpy())
        t0 = time.perf_counter()
        res, _ = model.fit(rgb, face.points, None, 40, None)
        t_arkit = time.perf_counter() - t0
        rows.append((base.rms_px, res.rms_px, 100 * base.rms_px / size, 100 * res.rms_px / size))
        print(f"{photo.name:18s} {rgb.shape[1]:4d}x{rgb.shape[0]:<4d} {base.rms_px:9.2f} "
              f"{res.rms_px:9.2f} {rows[-1][2]:8.2f} {rows[-1][3]:8.2f} {t_flame:8.1f} {t_arkit:8.1f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':18s} {'':9s} {mean[0]:9.2f} {mean[1]:9.2f} {mean[2]:8.2f} {mean[3]:8.2f}")


def _clip(photo: Path, n: int, path: Path) -> Path:
    import cv2

    rgb = load_image(photo, max_side=480).rgb
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for _ in range(n):
        dx, dy = rng.uniform(-4, 4, 2)
        s = rng.uniform(0.97, 1.03)
        m = np.array([[s, 0, dx + (1 - s) * w / 2], [0, s, dy + (1 - s) * h / 2]], np.float32)
        frame = cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_speed(engine: Engine, photo: Path, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(photo, n, Path(tmp) / "clip.avi")
        stamps: list[float] = []
        t0 = time.perf_counter()
        results, fps = capture_sequence(engine, [], clip, smoothing=1.0,
                                        progress=lambda *_: stamps.append(time.perf_counter()))
        total = time.perf_counter() - t0
    per = np.diff([t0] + stamps)
    print(f"video: {len(results)} frames of {photo.name} (480 px, {fps:g} fps): "
          f"{total / len(results):.2f} s/frame overall, first frame {per[0]:.2f} s "
          f"(includes ARKit adaptation), warm frames median {np.median(per[1:]):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--photos", nargs="*", type=Path, default=sorted(
        (REPO.parent / "shared" / "eval" / "photos").glob("expression_*.jpg")))
    args = parser.parse_args()
    engine = Engine()
    import torch

    print(f"torch threads {torch.get_num_threads()}, device {engine.device}")
    landmark_errors(engine, args.photos, args.max_side)
    video_speed(engine, args.photos[min(5, len(args.photos) - 1)], args.frames)


if __name__ == "__main__":
    main()
