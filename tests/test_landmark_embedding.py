"""Landmark embeddings on the dev FLAME model: layout, yaw convention, subsets, errors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import ModelFileError
from backend.model.flame import FLAME, load_flame
from backend.landmarks.embedding import LandmarkEmbedding, yaw_bin, yaw_degrees


@pytest.fixture(scope="module")
def flame(dev_model_path: Path) -> FLAME:
    return FLAME(load_flame(dev_model_path))


@pytest.fixture(scope="module")
def emb(assets_dir: Path) -> LandmarkEmbedding:
    return LandmarkEmbedding.load(assets_dir)


def _pose(**joints: tuple[float, float, float]) -> torch.Tensor:
    names = ("root", "neck", "jaw", "eye_L", "eye_R")
    pose = torch.zeros(1, 5, 3)
    for name, value in joints.items():
        pose[0, names.index(name)] = torch.tensor(value)
    return pose


def _vertex_normals(v: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B,V,3) area-weighted unit vertex normals."""
    tri = v[:, faces]
    fn = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    n = torch.zeros_like(v)
    for k in range(3):
        n.index_add_(1, faces[:, k], fn)
    return torch.nn.functional.normalize(n, dim=-1)


def test_yaw_degrees_and_bins() -> None:
    pose = torch.cat([_pose(root=(0, 0.5, 0)), _pose(root=(0, -0.5, 0)),
                      _pose(root=(0, 0.2, 0), neck=(0, 0.1, 0)), _pose(root=(0.4, 0, 0)),
                      _pose(neck=(0, -1.2, 0))])
    expected = torch.tensor([math.degrees(0.5), -math.degrees(0.5), math.degrees(0.3), 0.0,
                             -math.degrees(1.2)])
    torch.testing.assert_close(yaw_degrees(pose), expected, atol=1e-4, rtol=0)
    bins = yaw_bin(torch.tensor([0.0, 0.4, 10.0, 39.4, 70.0, -0.6, -10.0, -39.0, -80.0]))
    assert bins.tolist() == [0, 0, 10, 39, 39, 40, 49, 78, 78]


def test_static_layout_and_sides(flame: FLAME, emb: LandmarkEmbedding) -> None:
    """Rest pose: iBUG contour runs from the subject's right (-X) to left (+X) through the chin
    (8, lowest point); 36 / 45 are the right / left outer eye corners; the MediaPipe points
    33 / 263 / 61 / 291 coincide with iBUG 36 / 45 / 48 / 54 within 6 mm."""
    zero = torch.zeros(1, 5, 3)
    v = flame(torch.zeros(1, 60), torch.zeros(1, 50), zero).vertices
    l68 = emb.lmk68(v, torch.zeros(1))[0]
    x = l68[:17, 0]
    assert x[0] < -0.04 and x[16] > 0.04 and abs(float(x[8])) < 3e-3
    assert int(l68[:17, 1].argmin()) == 8
    assert l68[36, 0] < -0.02 and l68[45, 0] > 0.02
    torch.testing.assert_close(l68[36, 0], -l68[45, 0], atol=3e-3, rtol=0)
    mp = emb.mp105(v)[0]
    where = {int(k): i for i, k in enumerate(emb.mp105_indices)}
    for mp_idx, ibug in ((33, 36), (263, 45), (61, 48), (291, 54)):
        assert (mp[where[mp_idx]] - l68[ibug]).norm() < 6e-3, (mp_idx, ibug)


@pytest.mark.parametrize("yaw_rad", [0.52, -0.52])
def test_far_side_contour_lies_on_the_silhouette(flame: FLAME, emb: LandmarkEmbedding,
                                                 yaw_rad: float) -> None:
    """Head turned by 30 degrees in front of a camera at the origin: on the far side the
    contour points chosen by yaw_degrees() are where the surface turns away from the view ray
    (mean |cos(normal, ray)| < 0.1; measured 0.03), much closer to it than with the frontal bin
    or the opposite yaw's bin (measured 0.35 / 0.41), and closer than bins 10 degrees off."""
    pose = _pose(root=(0.0, yaw_rad, 0.0))
    t = torch.tensor([[0.0, 0.05, -0.6]])
    v = flame(torch.zeros(1, 60), torch.zeros(1, 50), pose, t).vertices
    normals = _vertex_normals(v, flame.faces)
    far = slice(9, 16) if yaw_rad > 0 else slice(1, 8)  # subject's left turns away for yaw > 0

    def grazing(yaw_deg: float) -> float:
        y = torch.tensor([yaw_deg])
        p = emb.lmk68(v, y)[0, far]
        n = torch.nn.functional.normalize(emb.lmk68(normals, y)[0, far], dim=-1)
        ray = torch.nn.functional.normalize(p, dim=-1)
        return float((n * ray).sum(-1).abs().mean())

    yaw = float(yaw_degrees(pose)[0])
    assert abs(yaw - math.degrees(yaw_rad)) < 1e-3
    chosen = grazing(yaw)
    assert chosen < 0.1
    assert chosen < grazing(0.0) - 0.2
    assert chosen < grazing(-yaw) - 0.2
    assert chosen < min(grazing(yaw - 10.0), grazing(yaw + 10.0))


def test_pupils_follow_the_eye_joints(flame: FLAME, emb: LandmarkEmbedding) -> None:
    """Pupil 0 is the subject's left (+X) and turns with eye_L only."""
    args = (torch.zeros(1, 60), torch.zeros(1, 50))
    rest = emb.pupils(flame(*args, _pose()).vertices)[0]
    assert rest[0, 0] > 0.02 and rest[1, 0] < -0.02
    turned = emb.pupils(flame(*args, _pose(eye_L=(0.0, 0.3, 0.0))).vertices)[0]
    assert turned[0, 0] - rest[0, 0] > 2e-3  # ~1.2 cm radius * sin(0.3)
    torch.testing.assert_close(turned[1], rest[1], atol=1e-7, rtol=0)


def test_subset_and_remap_match_full_model(flame: FLAME, emb: LandmarkEmbedding) -> None:
    gen = torch.Generator().manual_seed(0)
    shape, expr = torch.randn(2, 60, generator=gen), torch.randn(2, 50, generator=gen)
    pose = 0.3 * torch.randn(2, 5, 3, generator=gen)
    yaw = yaw_degrees(pose)
    full = flame(shape, expr, pose).vertices
    ids = emb.vertex_ids()
    assert len(ids) < 1000
    sub_v = flame.subset(ids)(shape, expr, pose).vertices
    sub = emb.remapped(ids)
    torch.testing.assert_close(sub.lmk68(sub_v, yaw), emb.lmk68(full, yaw), atol=1e-7, rtol=0)
    torch.testing.assert_close(sub.mp105(sub_v), emb.mp105(full), atol=1e-7, rtol=0)
    torch.testing.assert_close(sub.pupils(sub_v), emb.pupils(full), atol=1e-7, rtol=0)
    # per-batch contour bins: element 1 evaluated alone gives the same points
    torch.testing.assert_close(emb.lmk68(full[1:], yaw[1:]), emb.lmk68(full, yaw)[1:],
                               atol=0, rtol=0)
    with pytest.raises(ValueError, match="must contain"):
        emb.remapped(ids[1:])


def test_missing_embedding_raises(assets_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "landmarks").mkdir()
    (tmp_path / "flame").mkdir()
    shutil.copy(assets_dir / "flame" / "flame_dev_model.npz", tmp_path / "flame")
    for name in ("flame_landmark_embedding_68.npz", "flame_landmark_embedding_70_with_eyes.npz"):
        shutil.copy(assets_dir / "landmarks" / name, tmp_path / "landmarks")
    with pytest.raises(ModelFileError, match="mediapipe_landmark_embedding.npz cannot be read"):
        LandmarkEmbedding.load(tmp_path)
    with pytest.raises(ModelFileError, match="beyond the model"):
        LandmarkEmbedding.load(assets_dir, faces=np.zeros((100, 3), dtype=np.int64))
