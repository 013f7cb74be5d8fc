"""The FLAME UV layout (assets ``uv/head_template.obj``) and rasterization of UV space.

Only the OBJ's ``vt`` records and the ``vt`` indices of its ``f`` records are used (its
vertex positions are offset). The OBJ's faces are matched to the FLAME faces so that
``uv_faces[k]`` holds the UV corners of FLAME face ``k`` in the same corner order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .assets import asset_path
from ..errors import ModelFileError

UV_OBJ_RELPATH = "uv/head_template.obj"


@dataclass
class UVLayout:
    """UV coordinates of a mesh, split at seams.

    Attributes:
        uv: (T, 2) float32 UV coordinates, v up (OBJ convention), in [0, 1].
        uv_faces: (F, 3) int64 indices into ``uv``, corner k of face f matches faces[f, k].
    """

    uv: np.ndarray
    uv_faces: np.ndarray
    _raster_cache: dict[int, "UVRaster"] = field(default_factory=dict, repr=False, compare=False)

    def face_uvs(self) -> np.ndarray:
        """UV of each face corner: (F, 3, 2) float32."""
        return self.uv[self.uv_faces]


@dataclass
class UVRaster:
    """Which face covers each texel centre of a square texture, and where.

    Attributes:
        face_idx: (size, size) int64, -1 where no face covers the texel.
        bary: (size, size, 3) float32 barycentrics of the texel centre in that face's
            UV triangle (0 where uncovered). Row 0 is the top of the image (v near 1).
    """

    face_idx: np.ndarray
    bary: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(size, size) bool, True where a face covers the texel."""
        return self.face_idx >= 0


def _parse_obj(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read vt and the f records of an OBJ: (T, 2) uv, (F, 3) vertex idx, (F, 3) vt idx (0-based)."""
    uv: list[tuple[float, float]] = []
    fv: list[list[int]] = []
    ft: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("vt "):
                parts = line.split()
                uv.append((float(parts[1]), float(parts[2])))
            elif line.startswith("f "):
                corners = line.split()[1:]
                if len(corners) != 3 or any(c.count("/") < 1 for c in corners):
                    raise ModelFileError(f"UV template {path} has a face that is not a textured triangle.")
                fv.append([int(c.split("/")[0]) - 1 for c in corners])
                ft.append([int(c.split("/")[1]) - 1 for c in corners])
    if not uv or not fv:
        raise ModelFileError(f"UV template {path} has no texture coordinates or faces.")
    return np.asarray(uv, np.float32), np.asarray(fv, np.int64), np.asarray(ft, np.int64)


def _match_faces(model_faces: np.ndarray, obj_faces: np.ndarray, obj_ft: np.ndarray) -> np.ndarray:
    """UV indices ordered like ``model_faces``: (F, 3), corners rotated to match.

    Raises:
        ModelFileError: the OBJ's triangles are not the model's triangles.
    """
    if np.array_equal(model_faces, obj_faces):
        return obj_ft
    if model_faces.shape != obj_faces.shape:
        raise ModelFileError("The UV template's faces do not match the FLAME model's faces.")
    # Key each triangle by its sorted vertex triple, then map model face -> OBJ face.
    n = int(max(model_faces.max(), obj_faces.max())) + 1
    radix = np.array([n * n, n, 1], dtype=np.int64)
    obj_keys, model_keys = np.sort(obj_faces, axis=1) @ radix, np.sort(model_faces, axis=1) @ radix
    order = np.argsort(obj_keys)
    pos = np.searchsorted(obj_keys[order], model_keys)
    pos = np.clip(pos, 0, len(order) - 1)
    src = order[pos]
    if not np.array_equal(obj_keys[src], model_keys):
        raise ModelFileError("The UV template's faces do not match the FLAME model's faces.")
    out = np.empty_like(model_faces)
    matched = np.zeros(len(model_faces), bool)
    for rot in range(3):  # corner k of the model face = corner (k + rot) % 3 of the OBJ face
        ok = ~matched & np.all(np.roll(obj_faces[src], -rot, axis=1) == model_faces, axis=1)
        out[ok] = np.roll(obj_ft[src], -rot, axis=1)[ok]
        matched |= ok
    if not matched.all():
        raise ModelFileError("The UV template's faces have the opposite winding to the FLAME faces.")
    return out


def load_uv_layout(assets: str | os.PathLike[str] | None = None,
                   model_faces: np.ndarray | None = None) -> UVLayout:
    """Load the FLAME UV layout from the assets folder.

    Args:
        assets: assets folder (None = default resolution of backend.model.assets).
        model_faces: (F, 3) FLAME faces to order the UV faces by; None = the OBJ's order
            (identical to the FLAME faces for the shipped template).
    Returns:
        UVLayout with (T, 2) uv and (F, 3) uv_faces.
    """
    uv, fv, ft = _parse_obj(asset_path(UV_OBJ_RELPATH, assets))
    if ft.min() < 0 or ft.max() >= len(uv):
        raise ModelFileError("The UV template has texture indices out of range.")
    if model_faces is not None:
        ft = _match_faces(np.asarray(model_faces, np.int64), fv, ft)
    return UVLayout(uv=uv, uv_faces=ft)


def uv_rasterize(layout: UVLayout, size: int) -> UVRaster:
    """Face index and barycentrics at every texel centre of a size x size UV image.

    Texel (i, j) has centre u = (j + 0.5) / size, v = 1 - (i + 0.5) / size (row 0 is the
    top of the image, as in image files). Cached per layout and size.

    Returns:
        UVRaster with (size, size) face_idx and (size, size, 3) bary.
    """
    if size in layout._raster_cache:
        return layout._raster_cache[size]
    from ..fit.render import raycast_uv

    face_idx = raycast_uv(torch.from_numpy(layout.uv), torch.from_numpy(layout.uv_faces), size).numpy()
    rows, cols = np.nonzero(face_idx >= 0)
    p = np.stack([(cols + 0.5) / size, 1.0 - (rows + 0.5) / size], axis=1)
    tri = layout.uv[layout.uv_faces[face_idx[rows, cols]]].astype(np.float64)  # (N, 3, 2)
    e1, e2, d = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], p - tri[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    det = np.where(np.abs(det) < 1e-20, 1e-20, det)
    b1 = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
    b2 = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
    bary = np.zeros((size, size, 3), np.float32)
    bary[rows, cols] = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
    raster = UVRaster(face_idx=face_idx, bary=bary)
    layout._raster_cache[size] = raster
    return raster
