"""Fitting ARKit weights + pose to 2D landmarks for a known identity (backend/fit/arkit_fit.py).

Synthetic data: a random FLAME identity of the dev model, the ARKit shapes transferred from
ICT by backend/model/arkit.py and adapted to it, known weights, head pose and translation; its
landmarks are projected with the pipeline's camera and written into a 478-point MediaPipe
array (the points the fit does not use are NaN).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.model.arkit import arkit_for_identity, build_arkit_on_flame
from backend.errors import Cancelled
from backend.fit.arkit_fit import arkit_flame, fit_arkit
from backend.fit.landmark_fit import MP_CONTOUR, MP_IRIS, default_camera, project
from backend.model.flame import FLAME, load_flame
from backend.landmarks.embedding import LandmarkEmbedding, yaw_degrees
from backend.model.params import Camera, FitParams

# Tolerances for noise-free landmarks of a 512 px image (face about 200 px wide).
MAX_WEIGHT_ERR = 0.15  # any single ARKit weight (near-duplicate shapes trade a little)
MEAN_WEIGHT_ERR = 0.03  # over all 51 weights
MAX_ROOT_ERR = 0.01  # rad, root axis-angle components
MAX_TRANS_ERR = 0.002  # m
MAX_RMS_PX = 0.25


@pytest.fixture(scope="module")
def setup(assets_dir: Path, dev_model_path: Path):
    data = load_flame(dev_model_path)
    names, deltas, _ = build_arkit_on_flame(assets_dir)
    rng = np.random.default_rng(3)
    beta = rng.standard_normal(data.shapedirs.shape[2]).astype(np.float32)
    identity = data.v_template + data.shapedirs @ beta
    flame = arkit_flame(data, arkit_for_identity(deltas, identity, data.v_template, data.faces))
    emb = LandmarkEmbedding.load(assets_dir)
    return names, flame, emb, torch.from_numpy(beta)[None], default_camera(512, 512)


def _landmarks(flame: FLAME, emb: LandmarkEmbedding, beta: torch.Tensor, weights: np.ndarray,
               pose: np.ndarray, trans: np.ndarray, camera: Camera) -> np.ndarray:
    """(478, 2) MediaPipe-layout pixels of the model's landmarks, NaN where unused."""
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)[None]  # noqa: E731
    with torch.no_grad():
        v = flame(beta, f32(weights), f32(pose), f32(trans)).vertices
        pts = np.full((478, 2), np.nan)
        pts[emb.mp105_indices] = project(emb.mp105(v)[0], camera).numpy()
        contour = project(emb.lmk68(v, yaw_degrees(f32(pose)))[0, :17], camera).numpy()
        for group, p in zip(MP_CONTOUR, contour):
            pts[list(group)] = p
        pts[list(MP_IRIS)] = project(emb.pupils(v)[0], camera).numpy()
    return pts


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_known_weights_and_pose(setup, seed: int) -> None:
    names, flame, emb, beta, camera = setup
    rng = np.random.default_rng(seed)
    weights = np.zeros(len(names))
    active = rng.choice(len(names), 6, replace=False)
    weights[active] = rng.uniform(0.3, 0.9, 6)
    pose = np.zeros((5, 3))
    pose[0] = [0.05, 0.25, 0.02]  # about 14 degrees of yaw
    trans = np.array([0.01, -0.02, -0.6])
    fit = fit_arkit(flame, emb, _landmarks(flame, emb, beta, weights, pose, trans, camera),
                    beta, names, camera=camera)
    err = np.abs(fit.weights - weights)
    print(f"\nseed {seed}: rms {fit.rms_px:.3f} px, weight error max {err.max():.3f} "
          f"({names[int(err.argmax())]}), mean {err.mean():.4f}, timings {fit.timings}")
    for k in active:
        print(f"  {names[k]:20s} true {weights[k]:.2f} fitted {fit.weights[k]:.2f}")
    assert ((fit.weights >= 0) & (fit.weights <= 1)).all()
    assert err.max() < MAX_WEIGHT_ERR
    assert err.mean() < MEAN_WEIGHT_ERR
    assert np.abs(fit.params.pose[0, 0].numpy() - pose[0]).max() < MAX_ROOT_ERR
    assert np.abs(fit.params.translation[0].numpy() - trans).max() < MAX_TRANS_ERR
    assert fit.rms_px < MAX_RMS_PX
    np.testing.assert_allclose(fit.params.expression[0].numpy(), fit.weights)


def test_weights_stay_in_range_when_landmarks_exaggerate(setup) -> None:
    """Landmarks of jawOpen = 1.6 (beyond the shape's range) give jawOpen = 1 exactly, the
    jaw joint taking part of the rest (it is not held at 0)."""
    names, flame, emb, beta, camera = setup
    weights = np.zeros(len(names))
    weights[names.index("jawOpen")] = 1.6
    pose = np.zeros((5, 3))
    trans = np.array([0.0, 0.0, -0.6])
    fit = fit_arkit(flame, emb, _landmarks(flame, emb, beta, weights, pose, trans, camera),
                    beta, names, camera=camera)
    assert fit.weights[names.index("jawOpen")] == pytest.approx(1.0, abs=1e-6)
    assert fit.weights.min() >= 0.0 and fit.weights.max() <= 1.0
    assert fit.params.pose[0, 2, 0] > 0.02  # the jaw rotates open (+X rotation) for the rest


def test_init_and_cancel(setup) -> None:
    names, flame, emb, beta, camera = setup
    weights = np.zeros(len(names))
    weights[names.index("mouthSmileLeft")] = 0.7
    pose = np.zeros((5, 3))
    trans = np.array([0.0, 0.0, -0.6])
    pts = _landmarks(flame, emb, beta, weights, pose, trans, camera)
    init = FitParams.zeros(flame.n_shape, flame.n_expr, 5, camera)
    init.translation = torch.tensor([[0.0, 0.0, -0.6]])
    fit = fit_arkit(flame, emb, pts, beta, names, camera=camera, init=init)
    assert fit.weights[names.index("mouthSmileLeft")] == pytest.approx(0.7, abs=MAX_WEIGHT_ERR)
    assert "fit_arkit_rigid" in fit.timings
    with pytest.raises(Cancelled):
        fit_arkit(flame, emb, pts, beta, names, camera=camera, cancel=lambda: True)
