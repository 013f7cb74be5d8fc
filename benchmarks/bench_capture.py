"""Performance capture numbers; prints them.

1. Landmark error of the ARKit-driven fit (backend.capture, 51 ARKit weights + jaw/eyes/head)
   against the FLAME-expression fit (backend.fit.landmark_fit.fit_landmarks: identity, PCA
   expression, pose) on ../shared/eval/photos/expression_*.jpg. The ARKit fit uses the
   identity the FLAME fit found. Error: RMS over the 105 inner MediaPipe points (both fits
   report it the same way), in pixels and in % of the face size sqrt(w * h) of the
   MediaPipe points' bounding box.
2. Milliseconds per video frame of ``capture_sequence`` on a clip made from one photo (shifted
   and scaled a little per frame, written with OpenCV): MediaPipe's own detection of each
   frame (``detect_faces``, measured on the same frames separately), then in the capture loop
   the landmarks (tracking), the fit and the total wall time per frame (decoding included),
   the ratio total / detection and the landmark RMS over the frames. The same for the
   reference method (full detection every frame, only head pose warm-started, 12 iterations).
3. Jitter on a steady synthetic sequence: the dev model's mean head with fixed ARKit weights,
   rendered with fresh pixel noise per frame (``render_arkit_sequence``); mean absolute
   frame-to-frame change of the 51 weights (ARKit units) and of the jaw/eye/head rotations
   (degrees), without smoothing, for both methods.

    .venv/bin/python benchmarks/bench_capture.py [--max-side 512] [--frames 30] [--skip-photos]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.capture import (JOINTS, CaptureModel, SequenceTimings, capture_sequence,  # noqa: E402
                             single_thread)
from backend.files.photo import load_image  # noqa: E402
from backend.fit.landmark_fit import fit_landmarks  # noqa: E402
from backend.fit.synthetic import render_arkit_sequence  # noqa: E402
from backend.pipeline import Engine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
STEADY = {"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5, "jawOpen": 0.2, "browInnerUp": 0.4}


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
        with single_thread():
            t0 = time.perf_counter()
            res, _ = model.fit(rgb, face.points, None, 40, None)
            t_arkit = time.perf_counter() - t0
        rows.append((base.rms_px, res.rms_px, 100 * base.rms_px / size, 100 * res.rms_px / size))
        print(f"{photo.name:18s} {rgb.shape[1]:4d}x{rgb.shape[0]:<4d} {base.rms_px:9.2f} "
              f"{res.rms_px:9.2f} {rows[-1][2]:8.2f} {rows[-1][3]:8.2f} {t_flame:8.2f} {t_arkit:8.2f}")
    mean = np.mean(rows, axis=0)
    print(f"{'mean':18s} {'':9s} {mean[0]:9.2f} {mean[1]:9.3f} {mean[2]:8.2f} {mean[3]:8.2f}")


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


def _detection_ms(engine: Engine, clip: Path) -> float:
    """Median ms of MediaPipe's full detection (``detect_faces``) over the clip's frames."""
    from backend.capture import open_frames

    times = []
    for rgb in open_frames(clip).frames:
        t0 = time.perf_counter()
        engine.detector.detect_faces(rgb)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _run(engine: Engine, frames: object, fast: bool) -> tuple[list, SequenceTimings]:
    tm = SequenceTimings()
    res, _ = capture_sequence(engine, [], frames, smoothing=0.0, timings=tm,
                              track=fast, warm_all=fast)
    return res, tm


def video_speed(engine: Engine, photo: Path, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(photo, n, Path(tmp) / "clip.avi")
        _run(engine, clip, True)  # warm-up (graphs, caches)
        detect = _detection_ms(engine, clip)
        print(f"video: {n} frames of {photo.name} at 480 px; MediaPipe detect_faces median "
              f"{detect:.1f} ms/frame")
        print(f"{'method':10s} {'landmarks':>10s} {'fit':>8s} {'total':>8s} {'ratio':>6s} "
              f"{'RMS px':>7s} {'tracked':>8s}")
        for name, fast in (("fast", True), ("reference", False)):
            res, tm = _run(engine, clip, fast)
            rms = np.mean([r.rms_px for r in res if r.rms_px is not None])
            print(f"{name:10s} {tm.detect_ms:8.1f}ms {tm.fit_ms:6.1f}ms {tm.total_ms:6.1f}ms "
                  f"{tm.total_ms / detect:6.2f} {rms:7.3f} {tm.tracked:4d}/{tm.frames}")


def jitter(engine: Engine, n: int) -> None:
    model = CaptureModel(engine, [])
    weights = np.zeros((n, len(model.names)), np.float32)
    for name, value in STEADY.items():
        weights[:, model.names.index(name)] = value
    pose = np.zeros((model.flame.n_joints, 3), np.float32)
    pose[0] = (0.05, 0.12, 0.0)
    frames = render_arkit_sequence(engine, model.flame, weights, pose, seed=1)
    print(f"steady synthetic sequence: {n} frames, 384 px, pixel noise 2/255 per frame, "
          f"weights {STEADY}")
    for name, fast in (("fast", True), ("reference", False)):
        res, tm = _run(engine, frames, fast)
        w = np.array([[r.weights[k] for k in model.names] for r in res])
        rot = np.degrees(np.array([[r.rotations[j] for j in JOINTS] for r in res]))
        dw = np.abs(np.diff(w, axis=0)).mean()
        drot = np.abs(np.diff(rot, axis=0)).mean()
        err = np.abs(w - weights).mean(axis=0)
        driven = [model.names.index(k) for k in STEADY]
        print(f"{name:10s} jitter: weights {dw:.4f} /frame, rotations {drot:.3f} deg/frame; "
              f"driven-weight error {err[driven].mean():.3f}, total ms/frame {tm.total_ms:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--skip-photos", action="store_true")
    parser.add_argument("--photos", nargs="*", type=Path, default=sorted(
        (REPO.parent / "shared" / "eval" / "photos").glob("expression_*.jpg")))
    args = parser.parse_args()
    engine = Engine()
    import torch

    print(f"torch threads {torch.get_num_threads()} (capture runs on 1), device {engine.device}")
    if not args.skip_photos:
        landmark_errors(engine, args.photos, args.max_side)
    video_speed(engine, args.photos[min(5, len(args.photos) - 1)], args.frames)
    jitter(engine, max(8, args.frames // 2))


if __name__ == "__main__":
    main()
