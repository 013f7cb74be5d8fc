"""MediaPipe-105 embedding calibration on synthetic dev-model renders.

Speed: the calibration here uses 6 renders (setup uses 40) and is scored on 4 held-out
renders of another seed; the fit on so few renders is noisier but must still beat the
assets embedding on images it has not seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.landmarks.calibration import (CALIBRATED_NAME, Parts, calibrate_mediapipe_embedding,
                                          render_calibration_set, reprojection_errors)
from backend.landmarks.embedding import EMBEDDING_MP, LandmarkEmbedding


@pytest.fixture(scope="module")
def parts(assets_dir: Path) -> Parts:
    return Parts.from_assets(assets_dir)


@pytest.fixture(scope="module")
def calibrated(parts: Parts) -> dict[str, np.ndarray]:
    return calibrate_mediapipe_embedding(parts, n_heads=6, seed=2000)


def test_calibration_lowers_held_out_reprojection_error(parts: Parts, assets_dir: Path,
                                                        calibrated: dict[str, np.ndarray]) -> None:
    faces = parts.model.faces.astype(np.int64)
    with np.load(assets_dir / EMBEDDING_MP) as data:
        face_idx, bary = data["lmk_face_idx"].astype(np.int64), data["lmk_b_coords"]
        mp_indices = data["landmark_indices"]
    np.testing.assert_array_equal(calibrated["landmark_indices"], mp_indices)
    assert calibrated["lmk_face_idx"].shape == (105,)
    assert calibrated["lmk_face_idx"].max() < len(faces)
    np.testing.assert_allclose(calibrated["lmk_b_coords"].sum(1), 1.0, atol=1e-9)
    assert calibrated["lmk_b_coords"].min() >= 0.0
    # On its own renders the fit never gets worse per point (the old point competes).
    assert (calibrated["error_after_px"] <= calibrated["error_before_px"] + 1e-9).all()

    held_out = render_calibration_set(parts, n_heads=4, seed=2001)
    assert len(held_out) == 4
    before = reprojection_errors(held_out, faces, face_idx, bary, mp_indices)
    after = reprojection_errors(held_out, faces, calibrated["lmk_face_idx"].astype(np.int64),
                                calibrated["lmk_b_coords"], mp_indices)
    print(f"held-out mean reprojection error: assets {before.mean():.2f} px, "
          f"calibrated {after.mean():.2f} px")
    # Measured: 2.2 -> 1.9 px with 6 calibration renders; require a 5 % gain at least.
    assert after.mean() < 0.95 * before.mean(), (before.mean(), after.mean())


def test_load_prefers_the_calibrated_file(parts: Parts, assets_dir: Path, tmp_path: Path,
                                          calibrated: dict[str, np.ndarray]) -> None:
    np.savez(tmp_path / CALIBRATED_NAME, **{k: calibrated[k] for k in
                                           ("lmk_face_idx", "lmk_b_coords", "landmark_indices")})
    verts = torch.as_tensor(parts.model.v_template)[None]
    faces = parts.model.faces.astype(np.int64)
    expected = (verts[0].numpy()[faces[calibrated["lmk_face_idx"].astype(np.int64)]]
                * calibrated["lmk_b_coords"][..., None]).sum(1)
    used = LandmarkEmbedding.load(assets_dir, weights=tmp_path).mp105(verts)[0].numpy()
    np.testing.assert_allclose(used, expected, atol=1e-6)
    fallback = LandmarkEmbedding.load(assets_dir, weights=tmp_path / "empty").mp105(verts)[0].numpy()
    assets_only = LandmarkEmbedding.load(assets_dir, weights=tmp_path, calibrated=False)
    np.testing.assert_allclose(assets_only.mp105(verts)[0].numpy(), fallback, atol=0.0)
    assert np.abs(fallback - used).max() > 1e-3  # metres: the calibration moved some points
