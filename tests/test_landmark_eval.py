"""backend.landmarks.ibug68: the result.json 68-point definition and the AFLW2000-3D scoring.

The definition is checked on the dev FLAME model; the AFLW2000-3D checks run MediaPipe and the
landmark fit on the real evaluation photos (low-yaw ones, ~1 s each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from backend.errors import ModelFileError
from backend.fit.landmark_fit import fit_landmarks, project
from backend.model.flame import FLAME, load_flame
from backend.files.photo import load_image
from backend.landmarks.embedding import LandmarkEmbedding
from backend.landmarks.ibug68 import (AFLW_OFFSETS_MM, EMBEDDING_68, MEDIAPIPE_TO_IBUG68, REGIONS_68,
                                   Landmarks68, nme_percent, region_nme_percent)
from backend.landmarks.mediapipe_mesh import FaceLandmarker


@pytest.fixture(scope="module")
def model(dev_model_path: Path):
    return load_flame(dev_model_path)


@pytest.fixture(scope="module")
def flame(model) -> FLAME:
    return FLAME(model)


def _random_pose(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 5, 3, generator=g) - 0.5) * 0.8


def test_surface_points_are_the_static_embedding(assets_dir: Path, model, flame: FLAME) -> None:
    """Without offsets the points are the embedding's barycentric points (numpy, float64);
    agreement to 1e-6 m."""
    lmk = Landmarks68(assets_dir, model.faces, offsets_mm=np.zeros((68, 3)))
    pose = _random_pose(0)
    v = flame(torch.zeros(2, 60), torch.zeros(2, 50), pose).vertices
    got = lmk(v, pose).numpy()
    data = np.load(assets_dir / EMBEDDING_68)
    tri = model.faces[data["full_lmk_faces_idx"].reshape(-1)]
    bary = data["full_lmk_bary_coords"].reshape(-1, 3)
    want = (v.double().numpy()[:, tri] * bary[None, ..., None]).sum(-2)
    assert got.shape == (2, 68, 3)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_offsets_turn_with_the_head(assets_dir: Path, model, flame: FLAME) -> None:
    """Point minus surface point = R_root R_neck offset (1e-6 m): in the frontal pose the offset
    itself, in a turned pose the turned offset; the jaw does not turn it."""
    lmk = Landmarks68(assets_dir, model.faces)
    assert np.abs(AFLW_OFFSETS_MM[REGIONS_68["eyes"]]).max() == 0.0
    assert 1.0 < np.abs(AFLW_OFFSETS_MM).max() < 5.0  # millimetres
    pose = torch.zeros(2, 5, 3)
    pose[1, 0] = torch.tensor([0.1, 0.9, -0.2])
    pose[1, 1] = torch.tensor([0.2, 0.1, 0.0])
    pose[:, 2, 0] = 0.3
    v = flame(torch.zeros(2, 60), torch.zeros(2, 50), pose).vertices
    delta = (lmk(v, pose) - lmk.surface(v)).double().numpy()
    off = AFLW_OFFSETS_MM.astype(np.float64) / 1000.0
    np.testing.assert_allclose(delta[0], off, atol=1e-6)
    from scipy.spatial.transform import Rotation
    rot = (Rotation.from_rotvec(pose[1, 0].double().numpy())
           * Rotation.from_rotvec(pose[1, 1].double().numpy())).as_matrix()
    np.testing.assert_allclose(delta[1], off @ rot.T, atol=1e-6)


def test_missing_embedding_raises(tmp_path: Path, model) -> None:
    with pytest.raises(ModelFileError, match="cannot be read"):
        Landmarks68(tmp_path, model.faces)


def test_nme_formula() -> None:
    """A (3, 4) px shift of every point over a 40 x 90 px box is 5 / 60 = 8.33 %; regions
    cover the 68 points once."""
    rng = np.random.default_rng(0)
    gt = rng.uniform([0, 0], [40, 90], (68, 2))
    gt[0], gt[1] = (0, 0), (40, 90)
    pred = gt + np.array([3.0, 4.0])
    assert nme_percent(pred, gt) == pytest.approx(500.0 / 60.0, rel=1e-9)
    regions = region_nme_percent(pred, gt)
    assert regions.keys() == REGIONS_68.keys()
    assert all(v == pytest.approx(500.0 / 60.0) for v in regions.values())
    assert sorted(i for s in REGIONS_68.values() for i in range(68)[s]) == list(range(68))
    with pytest.raises(ValueError):
        nme_percent(pred[:10], gt[:10])


@pytest.fixture(scope="module")
def low_yaw_cases(eval_dir: Path) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """(MediaPipe points, GT (68, 2), image size) of the AFLW2000-3D images below 20 deg yaw."""
    lm = FaceLandmarker()
    cases = []
    for path in sorted((eval_dir / "aflw2000_3d").glob("*.jpg")):
        mat = scipy.io.loadmat(path.with_suffix(".mat"))
        if abs(np.degrees(mat["Pose_Para"][0][1])) >= 20.0:
            continue
        img = load_image(path)
        assert img.scale == 1.0
        h, w = img.rgb.shape[:2]
        cases.append((lm.detect_face(img.rgb)[0].points, mat["pt3d_68"][:2].T, (w, h)))
    lm.close()
    return cases


def test_mediapipe_table_on_aflw(low_yaw_cases) -> None:
    """The straight 478 -> 68 table is the right way round: NME below 6 % on each low-yaw
    image (measured 2.3-5.3 %), far above (> 15 %) with left and right swapped."""
    assert len(low_yaw_cases) == 3
    table = np.array(MEDIAPIPE_TO_IBUG68)
    mirror = np.r_[16 - np.arange(17), 26 - np.arange(10), 27, 28, 29, 30, 35, 34, 33, 32, 31,
                   45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                   54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    assert sorted(mirror) == list(range(68))
    for points, gt, _ in low_yaw_cases:
        assert nme_percent(points[table, :2], gt) < 6.0
        assert nme_percent(points[table[mirror], :2], gt) > 15.0


def test_fitted_landmarks_on_low_yaw_photos(assets_dir: Path, model, low_yaw_cases) -> None:
    """Landmark fit -> result.json definition on the AFLW2000-3D images below 20 deg yaw: mean
    NME below 3.6 % (measured 3.3 %; the offsets were learnt on these images among others,
    leave-one-out they gave 3.3 % on the [0, 30) group) and not above the bare static
    embedding's (3.8 %)."""
    from backend.model.flame import load_eyelid_deltas

    flame = FLAME(model, eyelid_deltas=load_eyelid_deltas(assets_dir))
    emb = LandmarkEmbedding.load(assets_dir)
    lmk = Landmarks68(assets_dir, model.faces)
    ours, static = [], []
    for points, gt, size in low_yaw_cases:
        p = fit_landmarks(flame, emb, points, image_size=size).params
        with torch.no_grad():
            v = flame(p.shape, p.expression, p.pose, p.translation, eyelids=p.eyelids).vertices
            ours.append(nme_percent(project(lmk(v, p.pose)[0], p.camera).numpy(), gt))
            static.append(nme_percent(project(lmk.surface(v)[0], p.camera).numpy(), gt))
    assert np.mean(ours) < 3.6, ours
    assert np.mean(ours) <= np.mean(static), (ours, static)
