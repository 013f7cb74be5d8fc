"""Performance capture (backend/capture.py) on real photos of ../shared/eval/photos.

Identity: the dev model's mean head (no coefficients) for the photo tests, a development
bundle's random identity for the CLI. The "video" is made in the test from one real photo
(expression_5.jpg, a smile): small shifts and scalings of it per frame, one grey frame
without a face, written with cv2.VideoWriter (MJPG) to tmp_path.

Thresholds: weights are ARKit units (0..1); a smile / an open mouth must raise its weights
by a clear margin over a photo without it. Landmark RMS in pixels of the fitted image.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.files.bundle import write_dev_bundle
from backend.capture import (JOINTS, CaptureModel, FrameResult, SequenceTimings, capture_photo,
                             capture_sequence, gaussian_smooth, image_files, progress_bar,
                             progress_text, smooth_results)
from backend.fit.synthetic import render_arkit_sequence
from backend.errors import BadInputError, Cancelled
from backend.files.photo import load_image
from backend.pipeline import Engine
from headrecon_addon import livelink

MAX_SIDE = 512
MAX_RMS_PX = 4.0
MARGIN = 0.3  # smile / jawOpen weight above the photo without it
JITTER_FACTOR = 2.0  # smoothing (sigma 2 frames) lowers the mean frame-to-frame change by this
FPS = 24


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def photos(eval_dir: Path) -> dict[int, Path]:
    return {i: eval_dir / "photos" / f"expression_{i}.jpg" for i in (4, 5, 6)}


@pytest.fixture(scope="module")
def fits(engine: Engine, photos: dict[int, Path]) -> dict[int, FrameResult]:
    """The landmark ARKit fit on the head's identity (``own_identity=False``)."""
    return {i: capture_photo(engine, [], p, max_side=MAX_SIDE, own_identity=False)
            for i, p in photos.items()}


def _smile(r: FrameResult) -> float:
    return 0.5 * (r.weights["mouthSmileLeft"] + r.weights["mouthSmileRight"])


def test_photo_weights_rotations_and_fit(fits: dict[int, FrameResult]) -> None:
    for i, r in fits.items():
        w = np.array(list(r.weights.values()))
        print(f"expression_{i}: rms {r.rms_px:.2f} px, smile {_smile(r):.2f}, "
              f"jawOpen {r.weights['jawOpen']:.2f}, root {np.round(r.rotations['root'], 3)}")
        assert r.face_found and len(w) >= 51
        assert ((w >= 0.0) & (w <= 1.0)).all()
        assert set(r.rotations) == set(JOINTS) and r.rotations["neck"] == [0.0, 0.0, 0.0]
        assert r.rms_px < MAX_RMS_PX
        assert r.translation[2] < 0  # in front of the camera


def test_smile_raises_mouth_smile(fits: dict[int, FrameResult]) -> None:
    """expression_5 smiles, expression_4 (surprised, rounded mouth) does not."""
    assert _smile(fits[5]) > 0.4
    assert _smile(fits[5]) > _smile(fits[4]) + MARGIN


def test_open_mouth_raises_jaw_open(fits: dict[int, FrameResult]) -> None:
    """expression_6 laughs with the mouth wide open, expression_5 smiles with closed lips.
    The open mouth shows up in jawOpen plus the jaw joint's opening rotation (+X)."""
    opening = {i: fits[i].weights["jawOpen"] + fits[i].rotations["jaw"][0] for i in (5, 6)}
    assert fits[6].weights["jawOpen"] > 0.2
    assert opening[6] > opening[5] + 0.2


def _frames(photo: Path) -> list[np.ndarray]:
    """7 frames of 320x320: the photo shifted and scaled a little per frame; frame 3 is grey."""
    rgb = load_image(photo, max_side=320).rgb
    h, w = rgb.shape[:2]
    out = []
    for i, (dx, dy, s) in enumerate([(0, 0, 1.0), (3, -2, 1.02), (-2, 3, 0.98), (0, 0, 1.0),
                                     (4, 1, 1.03), (-3, -3, 0.97), (1, 2, 1.01)]):
        if i == 3:
            out.append(np.full((320, 320, 3), 128, np.uint8))
            continue
        m = np.array([[s, 0, dx + (1 - s) * w / 2], [0, s, dy + (1 - s) * h / 2]], np.float32)
        out.append(cv2.resize(cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE),
                              (320, 320), interpolation=cv2.INTER_AREA))
    return out


def _write_video(frames: list[np.ndarray], path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (320, 320))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _jitter(results: list[FrameResult]) -> float:
    w = np.array([list(r.weights.values()) for r in results])
    return float(np.abs(np.diff(w, axis=0)).mean())


def test_video_sequence_missing_frame_and_smoothing(engine: Engine, photos: dict[int, Path],
                                                    tmp_path: Path) -> None:
    video = _write_video(_frames(photos[5]), tmp_path / "take.avi")
    seen: list[tuple[float, str]] = []
    raw, fps = capture_sequence(engine, [], video, smoothing=0.0,
                                progress=lambda s, f, m: seen.append((f, m)))
    assert fps == FPS and len(raw) == 7
    assert [r.index for r in raw] == list(range(7))
    assert [r.time_s for r in raw] == pytest.approx([i / FPS for i in range(7)])
    assert [r.face_found for r in raw] == [True, True, True, False, True, True, True]
    assert raw[3].rms_px is None
    # the missing frame is the mean of its neighbours (linear interpolation, 1e-9)
    for name in raw[0].weights:
        assert raw[3].weights[name] == pytest.approx(
            0.5 * (raw[2].weights[name] + raw[4].weights[name]), abs=1e-9)
    assert raw[3].rotations["jaw"] == pytest.approx(
        (0.5 * (np.array(raw[2].rotations["jaw"]) + raw[4].rotations["jaw"])).tolist(), abs=1e-9)
    assert seen[-1][0] == 1.0
    assert re.fullmatch(r"frame 7/7, \d+\.\d frames/s, 0:00 left", seen[-1][1]), seen[-1]
    for r in raw:
        if r.face_found:
            assert r.rms_px < MAX_RMS_PX
            assert _smile(r) > 0.4  # the smile is captured in every frame
    smoothed = smooth_results(raw, 2.0)
    print(f"jitter raw {_jitter(raw):.4f}, smoothed {_jitter(smoothed):.4f}")
    assert _jitter(smoothed) * JITTER_FACTOR < _jitter(raw)
    assert all(0.0 <= v <= 1.0 for r in smoothed for v in r.weights.values())


def test_gaussian_smooth() -> None:
    const = np.full((9, 2), 0.7)
    np.testing.assert_allclose(gaussian_smooth(const, 1.5), const, atol=1e-12)
    impulse = np.zeros(41)
    impulse[20] = 1.0
    out = gaussian_smooth(impulse, 2.0)
    assert out.sum() == pytest.approx(1.0, abs=1e-6) and out.argmax() == 20
    assert out[18] == pytest.approx(out[22], abs=1e-12)  # zero phase
    np.testing.assert_array_equal(gaussian_smooth(impulse, 0.0), impulse)


def test_bad_inputs_and_cancel(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not found"):
        capture_sequence(engine, [], tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="holds no images"):
        capture_sequence(engine, [], tmp_path / "empty")
    (tmp_path / "notvideo.mp4").write_text("hello")
    with pytest.raises(BadInputError, match="cannot be read as a video"):
        capture_sequence(engine, [], tmp_path / "notvideo.mp4")
    with pytest.raises(BadInputError, match="coefficients"):
        CaptureModel(engine, np.zeros(engine.model.shapedirs.shape[2] + 1))
    grey = [np.full((64, 64, 3), 100, np.uint8)] * 2
    with pytest.raises(BadInputError, match="No face was found in any frame"):
        capture_sequence(engine, [], grey)
    with pytest.raises(Cancelled):
        capture_sequence(engine, [], grey, cancel=lambda: True)
    with pytest.raises(BadInputError, match="uint8 RGB"):
        capture_sequence(engine, [], [np.zeros((8, 8), np.float32)])


def test_image_files_natural_order(tmp_path: Path) -> None:
    for name in ("f10.png", "f2.png", "f1.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files(tmp_path)] == ["f1.jpg", "f2.png", "f10.png"]


def test_cli_capture_folder_to_csv_and_json(repo_root: Path, assets_dir: Path,
                                            photos: dict[int, Path], tmp_path: Path) -> None:
    """A real backend process on a 2-image folder (natural order f2 before f10), for a dev
    bundle's identity; the CSV reads back with the Live Link reader and matches the JSON."""
    write_dev_bundle(tmp_path / "bundle", seed=2, assets=assets_dir)
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = _frames(photos[5])
    cv2.imwrite(str(folder / "f2.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "f10.png"), cv2.cvtColor(frames[1], cv2.COLOR_RGB2BGR))
    out_csv, out_json = tmp_path / "out" / "take.csv", tmp_path / "out" / "take.json"
    cmd = [sys.executable, "-m", "backend", "capture", str(folder), "--bundle",
           str(tmp_path / "bundle"), "-o", str(out_csv), "-o", str(out_json), "--fps", "30",
           "--smooth", "0"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out_json.read_text())
    assert doc["format"] == "headrecon-capture" and doc["fps"] == 30 and len(doc["frames"]) == 2
    take = livelink.read_csv(out_csv, 30.0)
    assert [f.frame for f in take.frames] == [0, 1]
    with out_csv.open() as f:
        assert next(csv.reader(f)) == list(livelink.HEADER)
    for fr, js in zip(take.frames, doc["frames"]):
        for name, v in js["weights"].items():
            assert fr.weights[name] == pytest.approx(v, rel=1e-7, abs=1e-9)
        head = livelink.axis_angle_to_euler(js["rotations"]["root"])
        assert fr.rotations["Head"] == pytest.approx(head, abs=1e-7)

    bad = subprocess.run(cmd[:-8] + ["-o", str(tmp_path / "x.txt")], cwd=repo_root,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "must end in .csv" in bad.stderr


# ---------------------------------------------------------------- speed path (issue 13)
def test_track_face_follows_detection(engine: Engine, photos: dict[int, Path]) -> None:
    """Tracking from the previous frame's face lands where full detection does (within 2 px
    RMS on a 320 px frame shifted by a few pixels), and loses a face-less frame."""
    frames = _frames(photos[5])
    first = engine.detector.detect_faces(frames[0])[0]
    tracked = engine.detector.track_face(frames[1], first)
    detected = engine.detector.detect_faces(frames[1])[0]
    assert tracked is not None and tracked.score >= 0.7
    rms = float(np.sqrt(((tracked.points[:, :2] - detected.points[:, :2]) ** 2).sum(1).mean()))
    print(f"tracked vs detected: {rms:.2f} px RMS")
    assert rms < 2.0
    assert engine.detector.track_face(frames[3], first) is None  # the grey frame


def test_stop_keeps_the_frames_so_far(engine: Engine, photos: dict[int, Path]) -> None:
    frames = [f for i, f in enumerate(_frames(photos[5])) if i != 3]
    done: list[int] = []
    timings = SequenceTimings()
    res, _ = capture_sequence(engine, [], frames, smoothing=1.0, timings=timings,
                              progress=lambda s, f, m: done.append(1),
                              stop=lambda: len(done) >= 3)
    assert len(res) == 3 and [r.index for r in res] == [0, 1, 2]
    assert timings.stopped and timings.frames == 3 and timings.tracked == 2
    assert all(r.face_found and _smile(r) > 0.4 for r in res)


def test_progress_text_and_bar() -> None:
    assert progress_text(42, 900, 2.0) == "frame 42/900, 21.0 frames/s, 0:41 left"
    assert progress_text(5, None, 1.0) == "frame 5, 5.0 frames/s"
    assert progress_bar(0.5, 10) == "[#####-----]" and progress_bar(1.2, 4) == "[####]"


def test_cli_stop_file_writes_frames_so_far(repo_root: Path, assets_dir: Path,
                                            photos: dict[int, Path], tmp_path: Path) -> None:
    """The Blender video operator's Esc: the stop file appears after the first progress line;
    the process writes the frames captured so far (``stopped``) and exits 0. Progress lines
    carry a bar, frames/s and time left."""
    write_dev_bundle(tmp_path / "bundle", seed=2, assets=assets_dir)
    frames = [f for i, f in enumerate(_frames(photos[5])) if i != 3] * 5  # 30 frames
    video = _write_video(frames, tmp_path / "long.avi")
    out_json, stop = tmp_path / "take.json", tmp_path / "stop"
    cmd = [sys.executable, "-m", "backend", "capture", str(video), "--bundle",
           str(tmp_path / "bundle"), "-o", str(out_json), "--stop-file", str(stop)]
    proc = subprocess.Popen(cmd, cwd=repo_root, stderr=subprocess.PIPE, text=True)
    lines = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if "frames/s" in line and not stop.exists():
            stop.touch()
    assert proc.wait(timeout=300) == 0, "".join(lines[-20:])
    first = next(ln for ln in lines if "frames/s" in ln)
    assert re.search(r"capture: \[[#-]{20}\] frame \d+/30, [\d.]+ frames/s, \d+:\d\d left", first)
    doc = json.loads(out_json.read_text())
    assert doc["stopped"] is True and 1 <= len(doc["frames"]) < 30
    assert set(doc["ms_per_frame"]) == {"landmarks", "fit", "total"}


def test_synthetic_sequence_recovers_known_weights(engine: Engine) -> None:
    """A performance rendered from the dev model's mean head with known ARKit weights (smile
    ramping up, brows down, one head pose, fresh pixel noise per frame), captured without
    smoothing. The 2D landmarks do not pin every one of 51 redundant shapes, so the stated
    tolerances are on what they do pin: every frame re-projects within 1.5 px RMS, the driven
    smile follows its ramp (correlation > 0.9, mean error < 0.2), the mean error over the
    driven weights is < 0.2, the head rotation is within 2 degrees, and tracked frames with
    the full warm start jitter no more than the reference method on the steady frames."""
    model = CaptureModel(engine, [])
    n, names = 8, model.names
    truth = np.zeros((n, len(names)), np.float32)
    ramp = np.linspace(0.0, 1.0, n)
    driven = {"mouthSmileLeft": 0.6 * ramp, "mouthSmileRight": 0.6 * ramp,
              "browInnerUp": 0.5 * (1 - ramp)}
    for name, values in driven.items():
        truth[:, names.index(name)] = values
    pose = np.zeros((model.flame.n_joints, 3), np.float32)
    pose[0] = (0.05, 0.15, 0.0)
    frames = render_arkit_sequence(engine, model.flame, truth, pose, seed=3)
    timings = SequenceTimings()
    res, _ = capture_sequence(engine, [], frames, smoothing=0.0, timings=timings)
    est = np.array([[r.weights[k] for k in names] for r in res])
    idx = [names.index(k) for k in driven]
    smile = est[:, idx[:2]].mean(1)
    err = np.abs(est[:, idx] - truth[:, idx]).mean()
    root = np.array([r.rotations["root"] for r in res])
    print(f"rms {[r.rms_px for r in res]}, smile {np.round(smile, 2)}, driven error {err:.3f}, "
          f"{timings}")
    assert timings.tracked == n - 1
    assert max(r.rms_px for r in res) < 1.5
    assert np.corrcoef(smile, 0.6 * ramp)[0, 1] > 0.9
    assert np.abs(smile - 0.6 * ramp).mean() < 0.2 and err < 0.2
    assert np.degrees(np.abs(root - pose[0]).max()) < 2.0

    steady = render_arkit_sequence(engine, model.flame, np.repeat(truth[n // 2:n // 2 + 1], 6, 0),
                                   pose, seed=4)
    jit = {}
    for fast in (True, False):
        out, _ = capture_sequence(engine, [], steady, smoothing=0.0, track=fast, warm_all=fast)
        jit[fast] = _jitter(out)
    print(f"steady jitter fast {jit[True]:.4f}, reference {jit[False]:.4f}")
    assert jit[True] <= jit[False] * 1.1


# Expression from a photo of another person (issue 13 item 4): identity first, then ARKit.
TRANSFER_SMILE_MIN = 0.3
# cheekPuff, mouthPucker, eyeWide on a closed-lips smile. Measured: 0.03 with the first fusion
# weights, 0.14 (eyeWideLeft) with the final ones (the network's eye points weigh less near
# frontal); the landmark ARKit fit on the target identity gives 0.78-1.0 there.
TRANSFER_SPURIOUS_MAX = 0.2


def test_expression_transfer_to_another_head(engine: Engine, photos: dict[int, Path]) -> None:
    """expression_5 (a closed-lips smile) on another identity (random dev-model-sized shape,
    seed 1): with the photo's own identity fitted first the smile transfers without the other
    face's shape read as cheekPuff / pout / wide eyes, and with far fewer active shapes than
    the landmark ARKit fit on the target identity."""
    target = np.random.default_rng(1).normal(0.0, 1.0, 20)
    new = capture_photo(engine, target, photos[5], max_side=MAX_SIDE)
    old = capture_photo(engine, target, photos[5], max_side=MAX_SIDE, own_identity=False)
    spurious = ("cheekPuff", "mouthPucker", "eyeWideLeft", "eyeWideRight")
    for name, r in (("own identity", new), ("target identity", old)):
        print(f"{name}: smile {_smile(r):.2f}, " + ", ".join(
            f"{n} {r.weights[n]:.2f}" for n in spurious) + f", sum {sum(r.weights.values()):.2f}")
    assert _smile(new) > TRANSFER_SMILE_MIN
    assert max(new.weights[n] for n in spurious) < TRANSFER_SPURIOUS_MAX
    assert sum(new.weights.values()) < 0.5 * sum(old.weights.values())
    assert new.weights["jawOpen"] == 0.0  # the jaw opens by its rotation (FLAME fit's jaw)
    assert set(new.rotations) == set(JOINTS) and new.rms_px < MAX_RMS_PX
