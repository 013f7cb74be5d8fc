"""Where the iris sits in the CC0 eye textures, and UVs that put it on FLAME's eyeballs.

Pure numpy (no bpy, no torch): the backend tints the texture's iris ring with these numbers
(backend/appearance/eye_texture.py) and the Blender eyes stage maps the texture onto FLAME's
eyeballs with :func:`eye_texture_uv` (builder/eyes.py).

The textures (MakeHuman, CC0; ``<assets>/eyes/*_eye.png``, 1024²) hold two eyeball discs laid
out for MakeHuman's ``eye_low_poly.obj``. Measured on that mesh (a sphere cap to 112.5 degrees
from its forward axis, rings every 11.25 / 22.5 degrees) the UV radius from a disc's centre is
close to an orthographic view of the front: ``r = 0.2735 sin(theta)`` up to 45 degrees, then
flatter (``LAYOUT_THETA_DEG`` / ``LAYOUT_RADIUS``). +U points away from the nose (temporal) in
both discs, +V up. The disc at (0.707, 0.704) belongs to the eye on the mesh's +X side (the
subject's left, FLAME +X). Measured on the five textures (radial brightness profile around the
pupil's centroid): pupil edge 0.030-0.035, iris 0.035-0.105, dark limbal ring to about 0.113,
sclera beyond; the iris is the same size and place in all five.

On FLAME the iris disc (human iris diameter ``IRIS_DIAMETER_M`` 11.7 mm) ends where the eyeball
sphere (radius R, about 12-13 mm; fitted per eyeball) has ``R sin(theta) = 5.85 mm``:
about 26.5 degrees on FLAME's eyeballs. Inside the iris the texture radius grows with
``sin(theta)`` (a flat disc seen from the front), outside it follows the MakeHuman layout
stretched so that its limbus meets FLAME's.
"""

from __future__ import annotations

import numpy as np

# Texture UV (origin bottom-left, as Blender and OBJ) of the pupil centres: subject's left, right.
DISC_CENTRES: tuple[tuple[float, float], tuple[float, float]] = ((0.707, 0.704), (0.295, 0.298))
PUPIL_RADIUS = 0.032  # texture UV units
IRIS_RADIUS = 0.113  # limbus (outer edge of the dark limbal ring), texture UV units
# MakeHuman's eye mesh: angle from the forward axis (degrees) -> texture UV radius (ring means)
LAYOUT_THETA_DEG = np.array([0.0, 11.25, 22.5, 45.0, 67.5, 90.0, 112.5])
LAYOUT_RADIUS = np.array([0.0, 0.0536, 0.1051, 0.1829, 0.2343, 0.2660, 0.2920])
BACK_RADIUS = 0.25  # faces reaching past BACK_DEG get one sclera point each (hidden inside the head)
BACK_DEG = 112.5
IRIS_DIAMETER_M = 0.0117  # human average (adults 11-12.5 mm)


def layout_iris_deg() -> float:
    """Angle (degrees) of the texture's limbus on MakeHuman's eye mesh (about 24.4)."""
    return float(np.interp(IRIS_RADIUS, LAYOUT_RADIUS, LAYOUT_THETA_DEG))


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points`` (N, 3), N >= 4: (centre (3,), radius)."""
    p = np.asarray(points, np.float64)
    a = np.c_[2.0 * p, np.ones(len(p))]
    sol = np.linalg.lstsq(a, (p * p).sum(axis=1), rcond=None)[0]
    centre = sol[:3]
    return centre, float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))


def texture_radius(theta_deg: np.ndarray, iris_deg: float) -> np.ndarray:
    """Texture UV radius for angles from an eyeball's forward axis.

    Args:
        theta_deg: (N,) angles in degrees; iris_deg: the limbus angle on this eyeball.
    Returns:
        (N,) radii: ``IRIS_RADIUS sin(theta) / sin(iris_deg)`` inside the iris, the MakeHuman
        layout (its limbus moved to ``iris_deg``) outside, clamped at ``BACK_DEG``.
    """
    theta = np.clip(np.asarray(theta_deg, np.float64), 0.0, BACK_DEG)
    inside = IRIS_RADIUS * np.sin(np.radians(theta)) / np.sin(np.radians(iris_deg))
    mh_iris = layout_iris_deg()
    warped = mh_iris + (theta - iris_deg) * (BACK_DEG - mh_iris) / (BACK_DEG - iris_deg)
    outside = np.interp(warped, LAYOUT_THETA_DEG, LAYOUT_RADIUS)
    return np.where(theta <= iris_deg, inside, outside)


def eye_texture_uv(verts: np.ndarray, faces: np.ndarray,
                   ranges: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner texture UVs putting each eyeball's front pole on its iris disc.

    Args:
        verts: (V, 3) FLAME frame (metres, +Z forward, +X the subject's left), the rest mesh.
        faces: (F, 3) vertex indices.
        ranges: half-open vertex ranges of the eyeballs, subject's left first
            (``naming.EYEBALL_VERTEX_RANGES``).
    Returns:
        ``(uv (F, 3, 2) float32, iris_deg (len(ranges),))``: UVs of every face corner (faces
        that are not wholly on an eyeball get (0.5, 0.5)) and each eyeball's limbus angle.
    """
    verts = np.asarray(verts, np.float64)
    faces = np.asarray(faces, np.int64)
    uv = np.full(faces.shape + (2,), 0.5, np.float32)
    iris_deg = np.zeros(len(ranges))
    for k, (start, stop) in enumerate(ranges):
        centre, radius = fit_sphere(verts[start:stop])
        radius = max(radius, IRIS_DIAMETER_M)  # a degenerate eyeball: iris over about 30 degrees
        iris_deg[k] = np.degrees(np.arcsin(0.5 * IRIS_DIAMETER_M / radius))
        d = verts - centre
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        theta = np.degrees(np.arccos(np.clip(d[:, 2], -1.0, 1.0)))
        side = np.stack([d[:, 0] if k == 0 else -d[:, 0], d[:, 1]], axis=1)  # temporal, up
        side /= np.linalg.norm(side, axis=1, keepdims=True) + 1e-12
        vert_uv = np.asarray(DISC_CENTRES[k]) + texture_radius(theta, iris_deg[k])[:, None] * side
        mine = ((faces >= start) & (faces < stop)).all(axis=1)
        uv[mine] = vert_uv[faces[mine]]
        # The back pole's fan would interpolate across the whole disc: one sclera point per face.
        back = mine & (theta[faces] > BACK_DEG).any(axis=1)
        if back.any():
            mean = side[faces[back]].mean(axis=1)
            norm = np.linalg.norm(mean, axis=1, keepdims=True)
            mean = np.where(norm > 0.1, mean / np.maximum(norm, 1e-12), (1.0, 0.0))
            uv[back] = (np.asarray(DISC_CENTRES[k]) + BACK_RADIUS * mean)[:, None, :]
    return uv, iris_deg
