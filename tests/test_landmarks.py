"""backend.landmarks.mediapipe_mesh (MediaPipe face mesh from weights/) and backend.setup_weights on real photos.

Needs ``python -m backend setup-weights`` (./setup.sh) to have filled weights/mediapipe.
Image variants (rotated, grey, RGBA, large canvas, side by side) are generated into tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from backend.model.assets import weights_dir
from backend.errors import BadInputError, ModelFileError
from backend.files.photo import load_image
from backend.landmarks.mediapipe_mesh import MODEL_FILES, N_POINTS, VERIFY_THRESHOLD, FaceLandmarker, FaceLandmarks, detect_face
from backend.landmarks.mediapipe_files import MEDIAPIPE_FILES, setup_mediapipe
from backend.model.pinned import sha256_of

# iBUG-68 index -> MediaPipe face-mesh index of the same anatomical point
# (eye corners, nose tip, subnasale, mouth corners, upper/lower lip middle, chin).
IBUG_TO_MEDIAPIPE = {36: 33, 39: 133, 42: 362, 45: 263, 30: 1, 33: 2, 48: 61, 54: 291, 51: 0, 57: 17, 8: 152}


@pytest.fixture(scope="module")
def landmarker() -> Iterator[FaceLandmarker]:
    """One instance for the module, as the service keeps it (models from weights/mediapipe)."""
    lm = FaceLandmarker()
    yield lm
    lm.close()


def _eval_images(eval_dir: Path) -> list[Path]:
    return sorted((eval_dir / "photos").iterdir()) + sorted((eval_dir / "aflw2000_3d").glob("*.jpg"))


def _mean_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean())


def test_every_eval_image_has_one_face(eval_dir: Path, landmarker: FaceLandmarker) -> None:
    images = _eval_images(eval_dir)
    assert len(images) == 26
    for path in images:
        loaded = load_image(path)
        faces = landmarker.detect_faces(loaded.rgb)
        assert len(faces) == 1, f"{path.name}: {len(faces)} faces"
        face = faces[0]
        h, w = loaded.rgb.shape[:2]
        assert face.points.shape == (N_POINTS, 3) and face.points.dtype == np.float32
        x0, y0, x1, y1 = face.bbox
        assert (x0, y0) == pytest.approx(tuple(face.points[:, :2].min(0)))
        assert (x1, y1) == pytest.approx(tuple(face.points[:, :2].max(0)))
        # tight crops may put the chin or forehead a few pixels beyond the border
        assert -0.05 * h < y0 < y1 < 1.05 * h and -0.05 * w < x0 < x1 < 1.05 * w, path.name
        assert face.size > 0.25 * min(h, w), path.name
        assert VERIFY_THRESHOLD <= face.score <= 1.0


def test_landmarks_match_aflw2000_ground_truth(eval_dir: Path, landmarker: FaceLandmarker) -> None:
    """Eleven mesh points vs the AFLW2000-3D 68-point annotation, error / sqrt(GT box area).

    Tolerances: 0.10 per image (profiles up to 71 deg yaw, where AFLW marks occluded
    points on the hidden side), 0.05 on average (measured 0.040).
    """
    errors = []
    for path in sorted((eval_dir / "aflw2000_3d").glob("*.jpg")):
        gt = scipy.io.loadmat(path.with_suffix(".mat"))["pt3d_68"][:2].T  # (68, 2) x, y
        face = landmarker.detect_faces(load_image(path).rgb)[0]
        size = float(np.sqrt(np.prod(gt.max(0) - gt.min(0))))
        ibug = list(IBUG_TO_MEDIAPIPE)
        err = _mean_dist(face.points[[IBUG_TO_MEDIAPIPE[i] for i in ibug]], gt[ibug]) / size
        assert err < 0.10, f"{path.name}: {err:.3f}"
        errors.append(err)
    assert len(errors) == 8
    assert float(np.mean(errors)) < 0.05


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photo(eval_dir: Path, tmp_path: Path, landmarker: FaceLandmarker, orientation: int) -> None:
    """The same pixels tagged with an EXIF rotation give the rotated landmarks."""
    src = eval_dir / "photos" / "expression_3.jpg"
    original = load_image(src)
    ref = landmarker.detect_faces(original.rgb)[0]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "tagged.jpg"
    Image.fromarray(original.rgb).save(path, quality=95, exif=exif)
    rotated = load_image(path)
    faces = landmarker.detect_faces(rotated.rgb)
    assert len(faces) == 1
    h, w = original.rgb.shape[:2]
    x, y = ref.points[:, 0], ref.points[:, 1]
    # displayed = stored turned by 180 deg (3), 90 deg clockwise (6), 90 deg counter-clockwise (8)
    expected = {3: (w - x, h - y), 6: (h - y, x), 8: (y, w - x)}[orientation]
    expected = np.stack(expected, 1)
    err = _mean_dist(faces[0].points, expected) / ref.size
    assert err < 0.03, err  # the mesh model is not exactly rotation-equivariant (measured < 0.01)


def test_gray_and_rgba_copies(eval_dir: Path, tmp_path: Path, landmarker: FaceLandmarker) -> None:
    src = eval_dir / "photos" / "expression_5.jpg"
    rgb = load_image(src).rgb
    ref = landmarker.detect_faces(rgb)[0]
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0  # transparent strip at the left edge, away from the face
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    for name in ("gray.png", "rgba.png"):
        faces = landmarker.detect_faces(load_image(tmp_path / name).rgb)
        assert len(faces) == 1, name
        assert _mean_dist(faces[0].points, ref.points) / ref.size < 0.03, name


def test_small_face_in_large_photo(eval_dir: Path, tmp_path: Path, landmarker: FaceLandmarker) -> None:
    """A 600 px portrait pasted into a 6000x4000 canvas: found at 1024 px and at full size.

    The canvas is smooth random clutter (a 60x40 noise image upscaled), fast to encode.
    """
    rng = np.random.default_rng(0)
    clutter = Image.fromarray(rng.integers(40, 220, (40, 60, 3), dtype=np.uint8))
    canvas = np.array(clutter.resize((6000, 4000), Image.Resampling.BICUBIC))
    portrait = Image.open(eval_dir / "photos" / "expression_2.jpg").convert("RGB").resize((600, 600))
    x0, y0 = 4000, 2500
    canvas[y0:y0 + 600, x0:x0 + 600] = np.asarray(portrait)
    path = tmp_path / "canvas.jpg"
    Image.fromarray(canvas).save(path, quality=90)
    loaded = load_image(path, max_side=1024)
    for rgb, scale in ((loaded.rgb, loaded.scale), (canvas, 1.0)):
        faces = landmarker.detect_faces(rgb)
        assert len(faces) == 1, rgb.shape
        bx0, by0, bx1, by1 = np.array(faces[0].bbox) / scale
        assert x0 < bx0 < bx1 < x0 + 600 and y0 < by0 < by1 < y0 + 600, (bx0, by0, bx1, by1)


def test_two_faces_largest_first(eval_dir: Path, landmarker: FaceLandmarker) -> None:
    """Two portraits side by side (the left one scaled down) give two faces, the right first."""
    big = np.asarray(Image.open(eval_dir / "photos" / "expression_6.jpg").convert("RGB"))  # 450 px
    small = np.asarray(Image.open(eval_dir / "photos" / "IMG_0392_inputs.jpg").convert("RGB"))  # 224 px
    canvas = np.full((450, 224 + 450, 3), 110, np.uint8)
    canvas[113:113 + 224, :224] = small
    canvas[:, 224:] = big
    faces = landmarker.detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].size > faces[1].size
    assert faces[0].bbox[0] > 224 and faces[1].bbox[2] < 224 + 10
    face, warnings = landmarker.detect_face(canvas)
    np.testing.assert_allclose(face.points, faces[0].points, atol=1e-3)
    assert warnings == ["2 faces found; using the largest."]


def test_no_face(landmarker: FaceLandmarker) -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    blank = np.full((480, 640, 3), 200, np.uint8)
    assert landmarker.detect_faces(noise) == []
    assert landmarker.detect_faces(blank) == []
    with pytest.raises(BadInputError, match="No face found in the photo."):
        detect_face(blank)  # the module-level function, with the shared instance


def test_concurrent_calls_match_serial(eval_dir: Path, landmarker: FaceLandmarker) -> None:
    """One instance used from four threads gives the same points as serial calls."""
    images = [load_image(p).rgb for p in _eval_images(eval_dir)[:8]]
    serial = [landmarker.detect_faces(rgb)[0].points for rgb in images]
    results: dict[int, list[FaceLandmarks]] = {}

    def work(i: int) -> None:
        results[i] = landmarker.detect_faces(images[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, points in enumerate(serial):
        np.testing.assert_allclose(results[i][0].points, points, atol=1e-3)


def test_missing_or_damaged_models(eval_dir: Path, tmp_path: Path) -> None:
    """A copied weights folder works; missing or damaged files raise ModelFileError."""
    with pytest.raises(ModelFileError, match="setup.sh"):
        FaceLandmarker(tmp_path / "nowhere")
    weights = tmp_path / "weights"
    models = weights / "mediapipe"
    shutil.copytree(weights_dir() / "mediapipe", models)
    copy = FaceLandmarker(weights)
    assert len(copy.detect_faces(load_image(eval_dir / "photos" / "expression_0.jpg").rgb)) == 1
    copy.close()
    (models / "face_detection_short_range.tflite").unlink()
    with pytest.raises(ModelFileError, match="face_detection_short_range.tflite missing"):
        FaceLandmarker(weights)
    shutil.copy(weights_dir() / "mediapipe" / "face_detection_short_range.tflite", models)
    with open(models / "face_landmark_with_attention.tflite", "r+b") as fh:
        fh.truncate(1000)  # TFLite itself would crash on this file
    with pytest.raises(ModelFileError, match="face_landmark_with_attention.tflite .* damaged"):
        FaceLandmarker(weights)


def test_packaged_models_are_not_used(eval_dir: Path, tmp_path: Path, repo_root: Path) -> None:
    """In a process whose mediapipe package has no .tflite files, faces are still found.

    The package is a symlink copy of the installed one without its model files, put first
    on the path of a real subprocess; the models then can only come from weights/mediapipe.
    """
    import mediapipe

    installed = Path(mediapipe.__file__).parent
    fake = tmp_path / "site" / "mediapipe"

    def mirror(src: Path, dst: Path) -> None:
        dst.mkdir(parents=True)
        for entry in src.iterdir():
            if entry.is_dir() and entry.name in ("modules", "face_detection", "face_landmark"):
                mirror(entry, dst / entry.name)
            elif entry.suffix != ".tflite":
                (dst / entry.name).symlink_to(entry)

    mirror(installed, fake)
    assert not list(fake.rglob("*.tflite"))
    script = (
        "import sys, mediapipe; from pathlib import Path\n"
        f"assert Path(mediapipe.__file__).parent == Path({str(fake)!r}), mediapipe.__file__\n"
        "from backend.files.photo import load_image\n"
        "from backend.landmarks.mediapipe_mesh import FaceLandmarker\n"
        f"faces = FaceLandmarker().detect_faces(load_image({str(eval_dir / 'photos' / 'expression_1.jpg')!r}).rgb)\n"
        "print('faces', len(faces))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(repo_root)])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("faces 1")


def test_setup_mediapipe_copies_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = setup_mediapipe(tmp_path / "mediapipe")
    for pin in MEDIAPIPE_FILES:
        assert sha256_of(target / pin.name) == pin.sha256
    assert set(MODEL_FILES) <= {p.name for p in target.iterdir()}
    assert "Apache License" in (target / "LICENSE").read_text()
    assert capsys.readouterr().out.count("copied") == len(MEDIAPIPE_FILES)
    (target / "face_landmark.tflite").write_bytes(b"damaged")
    setup_mediapipe(target)
    out = capsys.readouterr().out
    assert out.count("up to date") == len(MEDIAPIPE_FILES) - 1 and "copied face_landmark.tflite" in out
    assert sha256_of(target / "face_landmark.tflite") == MEDIAPIPE_FILES[3].sha256
