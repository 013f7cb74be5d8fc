"""Reading OBJ meshes: the bundle's triangle meshes and the mouth's triangle-and-quad assets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import BadInputError


@dataclass
class ObjMesh:
    """Triangle mesh read from an OBJ.

    Attributes:
        verts: (V, 3) float64; faces: (F, 3) int64 (0-based).
        uv: (T, 2) float64 or None; uv_faces: (F, 3) int64 or None (None unless every face has UVs).
    """

    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    uv_faces: np.ndarray | None


def read_obj(path: str | os.PathLike[str], quads: bool = False) -> ObjMesh:
    """Read a ``v``/``vt``/``f`` OBJ of triangles (with ``quads``, quads too, each split into
    the triangles (0, 1, 2) and (0, 2, 3)).

    Raises:
        BadInputError: unreadable file or a face of another size.
    """
    verts: list[list[float]] = []
    uv: list[list[float]] = []
    fv: list[list[int]] = []
    ft: list[list[int]] = []
    sizes = (3, 4) if quads else (3,)
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if not parts:
                    continue
                if parts[0] == "v":
                    verts.append([float(p) for p in parts[1:4]])
                elif parts[0] == "vt":
                    uv.append([float(p) for p in parts[1:3]])
                elif parts[0] == "f":
                    corners = [p.split("/") for p in parts[1:]]
                    if len(corners) not in sizes:
                        kind = "triangle or quad" if quads else "triangle"
                        raise BadInputError(f"OBJ {path} has a face that is not a {kind}.")
                    fan = [(0, 1, 2)] + ([(0, 2, 3)] if len(corners) == 4 else [])
                    v = [int(c[0]) - 1 for c in corners]
                    fv += [[v[k] for k in tri] for tri in fan]
                    if all(len(c) > 1 and c[1] for c in corners):
                        t = [int(c[1]) - 1 for c in corners]
                        ft += [[t[k] for k in tri] for tri in fan]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"OBJ {path} cannot be read ({exc}).") from None
    has_uv = bool(uv) and len(ft) == len(fv)
    return ObjMesh(np.asarray(verts, np.float64).reshape(-1, 3), np.asarray(fv, np.int64).reshape(-1, 3),
                   np.asarray(uv, np.float64) if has_uv else None,
                   np.asarray(ft, np.int64) if has_uv else None)
