"""Landmarks on the FLAME surface: 68 iBUG points (static + yaw-dependent contour), the
MediaPipe-105 subset and the two pupils, each as barycentric points on FLAME triangles.

The MediaPipe-105 points come from ``weights/mediapipe_flame_embedding_calibrated.npz`` when
setup wrote it (the assets embedding re-fitted to what MediaPipe detects on synthetic FLAME
renders, backend/landmarks/calibration.py), else from the assets embedding. Likewise the 68
points fixed on the surface (:meth:`LandmarkEmbedding.fixed68`, result.json's ``landmarks_68``)
come from ``weights/tddfa_flame_embedding_68_calibrated.npz`` (re-fitted to what the large-pose
network detects), else from the assets' ``full_lmk_*``.

Yaw convention (checked against the surface normals, see tests/test_landmark_embedding.py):
yaw > 0 is a rotation about +Y that turns the face (+Z) towards +X, i.e. the subject looks to
their left and their left (+X) cheek turns away from the camera. The 79 contour bins are
``0`` for 0 degrees, ``k`` (1..39) for +k degrees and ``39 + k`` (40..78) for -k degrees; in
bins 1..39 the contour points 9..16 (subject's left) slide forward onto the far silhouette.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..model.assets import weights_dir
from ..errors import ModelFileError
from ..model.lbs import rodrigues

EMBEDDING_68 = "landmarks/flame_landmark_embedding_68.npz"
EMBEDDING_70 = "landmarks/flame_landmark_embedding_70_with_eyes.npz"  # + pupils (right, left)
EMBEDDING_MP = "landmarks/mediapipe_landmark_embedding.npz"
EMBEDDING_MP_CALIBRATED = "mediapipe_flame_embedding_calibrated.npz"  # in weights/, from setup
# in weights/, from setup: the fixed 68 re-fitted to the large-pose network (AFLW2000-3D's points)
EMBEDDING_68_CALIBRATED = "tddfa_flame_embedding_68_calibrated.npz"
FACES_SOURCE = "flame/flame_dev_model.npz"  # FLAME faces are the same in every FLAME version
MAX_YAW_BIN = 39


def yaw_degrees(pose: torch.Tensor) -> torch.Tensor:
    """Head yaw from the root and neck rotations (see the module docstring for the sign).

    The head's forward axis ``f = R_root R_neck (0, 0, 1)`` gives ``yaw = atan2(f_x, f_z)``.

    Args:
        pose: (B, J, 3) axis-angle, joint 0 the root and joint 1 the neck.
    Returns:
        (B,) yaw in degrees.
    """
    rot = rodrigues(pose[:, 0]) @ rodrigues(pose[:, 1])
    return torch.rad2deg(torch.atan2(rot[:, 0, 2], rot[:, 2, 2]))


def yaw_bin(yaw_deg: torch.Tensor) -> torch.Tensor:
    """Contour bin (0..78) for yaw angles in degrees, clamped at +-39.

    Args:
        yaw_deg: (B,) yaw in degrees.
    Returns:
        (B,) long bin indices.
    """
    y = torch.round(yaw_deg.detach()).long().clamp(-MAX_YAW_BIN, MAX_YAW_BIN)
    return torch.where(y >= 0, y, MAX_YAW_BIN - y)


def _load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in keys}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"Landmark embedding {path} cannot be read ({exc}).") from None


class LandmarkEmbedding:
    """Barycentric landmark definitions resolved to vertex triplets.

    Args:
        static_ids, static_w: (51, 3) vertex ids / barycentric weights of iBUG points 17..67.
        contour_ids, contour_w: (79, 17, 3) the same for iBUG points 0..16 per yaw bin.
        mp_ids, mp_w: (105, 3) the MediaPipe-105 points.
        mp105_indices: (105,) indices of those points among MediaPipe's 478.
        pupil_ids, pupil_w: (2, 3) pupils (subject's left, right).
        fixed_ids, fixed_w: (68, 3) all 68 iBUG points fixed on the surface (AFLW2000-3D's
            definition: the contour does not follow the silhouette), the assets' ``full_lmk_*``.
    """

    def __init__(self, static_ids: np.ndarray, static_w: np.ndarray, contour_ids: np.ndarray,
                 contour_w: np.ndarray, mp_ids: np.ndarray, mp_w: np.ndarray,
                 mp105_indices: np.ndarray, pupil_ids: np.ndarray, pupil_w: np.ndarray,
                 fixed_ids: np.ndarray, fixed_w: np.ndarray):
        self._ids = {k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in (
            ("static", static_ids), ("contour", contour_ids), ("mp", mp_ids), ("pupil", pupil_ids),
            ("fixed", fixed_ids))}
        self._w = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in (
            ("static", static_w), ("contour", contour_w), ("mp", mp_w), ("pupil", pupil_w),
            ("fixed", fixed_w))}
        self.mp105_indices: np.ndarray = np.asarray(mp105_indices, dtype=np.int64)
        self._cache: dict[tuple[str, str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def load(cls, assets: str | os.PathLike[str], faces: np.ndarray | None = None,
             weights: str | os.PathLike[str] | None = None, calibrated: bool = True
             ) -> "LandmarkEmbedding":
        """Read the embeddings from the assets folder (MediaPipe-105: see the module docstring).

        Args:
            assets: the assets folder.
            faces: (F, 3) FLAME triangles; None reads them from the dev model in the assets.
            weights: the weights folder holding the calibrated MediaPipe embedding (None: default).
            calibrated: False always reads the assets' MediaPipe embedding.
        Raises:
            ModelFileError: a file is missing, unreadable or refers to missing triangles.
        """
        root = Path(assets)
        if faces is None:
            faces = _load_npz(root / FACES_SOURCE, ("f",))["f"]
        faces = np.asarray(faces, dtype=np.int64)
        e68 = _load_npz(root / EMBEDDING_68, ("static_lmk_faces_idx", "static_lmk_bary_coords",
                                             "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
                                             "full_lmk_faces_idx", "full_lmk_bary_coords"))
        e70 = _load_npz(root / EMBEDDING_70, ("static_lmk_faces_idx", "static_lmk_bary_coords"))
        mp_keys = ("lmk_face_idx", "lmk_b_coords", "landmark_indices")
        emp = _load_npz(root / EMBEDDING_MP, mp_keys)
        cal68_path = weights_dir(weights) / EMBEDDING_68_CALIBRATED
        if calibrated and cal68_path.is_file():
            cal68 = _load_npz(cal68_path, ("full_lmk_faces_idx", "full_lmk_bary_coords"))
            e68.update(cal68)
        cal_path = weights_dir(weights) / EMBEDDING_MP_CALIBRATED
        if calibrated and cal_path.is_file():
            cal = _load_npz(cal_path, mp_keys)
            if not np.array_equal(cal["landmark_indices"], emp["landmark_indices"]):
                raise ModelFileError(f"{cal_path} lists other MediaPipe points than the assets; "
                                     "run setup-weights again.")
            emp = cal
        e68["full_lmk_faces_idx"] = e68["full_lmk_faces_idx"].reshape(-1).astype(np.int64)
        e68["full_lmk_bary_coords"] = e68["full_lmk_bary_coords"].reshape(-1, 3)
        face_ids = [e68["static_lmk_faces_idx"], e68["dynamic_lmk_faces_idx"], e68["full_lmk_faces_idx"],
                    emp["lmk_face_idx"], e70["static_lmk_faces_idx"][51:53]]
        if any(ids.size == 0 or ids.max() >= len(faces) for ids in face_ids):
            raise ModelFileError(f"Landmark embeddings in {root / 'landmarks'} refer to triangles "
                                 f"beyond the model's {len(faces)}.")
        shapes_ok = (e68["static_lmk_faces_idx"].shape == (51,)
                     and e68["dynamic_lmk_faces_idx"].shape == (2 * MAX_YAW_BIN + 1, 17)
                     and e68["full_lmk_faces_idx"].shape == (68,)
                     and emp["landmark_indices"].shape == (105,)
                     and e70["static_lmk_faces_idx"].shape == (53,))
        if not shapes_ok:
            raise ModelFileError(f"Landmark embeddings in {root / 'landmarks'} have unexpected sizes.")
        # The 70-point file lists the pupils as (right, left); store (left, right).
        pupil = slice(52, 50, -1)
        return cls(
            faces[e68["static_lmk_faces_idx"]], e68["static_lmk_bary_coords"],
            faces[e68["dynamic_lmk_faces_idx"]], e68["dynamic_lmk_bary_coords"],
            faces[emp["lmk_face_idx"].astype(np.int64)], emp["lmk_b_coords"],
            emp["landmark_indices"],
            faces[e70["static_lmk_faces_idx"][pupil]], e70["static_lmk_bary_coords"][pupil],
            faces[e68["full_lmk_faces_idx"]], e68["full_lmk_bary_coords"])

    # -------------------------------------------------------------------- evaluation
    def _get(self, key: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache_key = (key, str(like.device), like.dtype)
        if cache_key not in self._cache:
            self._cache[cache_key] = (self._ids[key].to(like.device),
                                      self._w[key].to(like.device, like.dtype))
        return self._cache[cache_key]

    @staticmethod
    def _interp(vertices: torch.Tensor, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Barycentric interpolation.

        Args:
            vertices: (B, V, C) per-vertex values.
            ids, w: (N, 3) shared by the batch, or (B, N, 3) per batch element.
        Returns:
            (B, N, C).
        """
        if ids.dim() == 2:
            tri = vertices[:, ids]
        else:
            batch = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
            tri = vertices[batch, ids]
        return (tri * w[..., None]).sum(-2)

    def lmk68(self, vertices: torch.Tensor, yaw_deg: torch.Tensor) -> torch.Tensor:
        """The 68 iBUG landmarks, contour points chosen by head yaw.

        Args:
            vertices: (B, V, 3) FLAME vertices (or any per-vertex attribute).
            yaw_deg: (B,) head yaw in degrees, e.g. :func:`yaw_degrees` of the pose.
        Returns:
            (B, 68, 3) landmarks.
        """
        ids, w = self._get("contour", vertices)
        bins = yaw_bin(yaw_deg).to(vertices.device)
        contour = self._interp(vertices, ids[bins], w[bins])
        s_ids, s_w = self._get("static", vertices)
        return torch.cat([contour, self._interp(vertices, s_ids, s_w)], dim=1)

    def fixed68(self, vertices: torch.Tensor) -> torch.Tensor:
        """The 68 iBUG landmarks fixed on the surface (AFLW2000-3D's definition, the large-pose
        network's targets and result.json's ``landmarks_68``).

        Args:
            vertices: (B, V, 3).
        Returns:
            (B, 68, 3).
        """
        return self._interp(vertices, *self._get("fixed", vertices))

    def mp105(self, vertices: torch.Tensor) -> torch.Tensor:
        """The 105 MediaPipe points listed in ``mp105_indices``.

        Args:
            vertices: (B, V, 3).
        Returns:
            (B, 105, 3).
        """
        return self._interp(vertices, *self._get("mp", vertices))

    def pupils(self, vertices: torch.Tensor) -> torch.Tensor:
        """Pupil centres on the eyeballs (front-most eyeball vertex).

        Args:
            vertices: (B, V, 3).
        Returns:
            (B, 2, 3), subject's left then right.
        """
        return self._interp(vertices, *self._get("pupil", vertices))

    # -------------------------------------------------------------------- subsets
    def vertex_ids(self) -> np.ndarray:
        """(K,) sorted ids of every vertex any landmark uses (all contour bins included)."""
        return np.unique(np.concatenate([t.reshape(-1).numpy() for t in self._ids.values()]))

    def remapped(self, vertex_ids: np.ndarray) -> "LandmarkEmbedding":
        """The same landmarks for a vertex subset, e.g. the output of ``FLAME.subset(vertex_ids)``.

        Args:
            vertex_ids: (K,) ids that include :meth:`vertex_ids`.
        """
        vertex_ids = np.asarray(vertex_ids, dtype=np.int64)
        lookup = np.full(int(max(vertex_ids.max(), self.vertex_ids().max())) + 1, -1, np.int64)
        lookup[vertex_ids] = np.arange(len(vertex_ids))
        new = {k: lookup[v.numpy()] for k, v in self._ids.items()}
        if any((v < 0).any() for v in new.values()):
            raise ValueError("vertex_ids must contain every vertex the landmarks use")
        w = {k: v.numpy() for k, v in self._w.items()}
        return LandmarkEmbedding(new["static"], w["static"], new["contour"], w["contour"],
                                 new["mp"], w["mp"], self.mp105_indices, new["pupil"], w["pupil"],
                                 new["fixed"], w["fixed"])
