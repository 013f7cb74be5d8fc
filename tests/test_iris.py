"""Iris colour from MediaPipe's iris landmarks (backend/appearance/iris.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.appearance.iris import IRISES, iris_color
from backend.files.photo import load_image
from backend.landmarks.mediapipe_mesh import get_landmarker


def _eyes(rgb: np.ndarray, radius: float, colour: tuple[int, int, int]) -> np.ndarray:
    """Paint two irises (pupil, highlight) on ``rgb``; return (478, 2) points with the iris
    centres and rings where they were painted (the other points are NaN: unused)."""
    pts = np.full((478, 2), np.nan)
    yy, xx = np.mgrid[0:rgb.shape[0], 0:rgb.shape[1]]
    for (centre_id, ring_ids), cx in zip(IRISES, (60.0, 140.0)):
        cy = 50.0
        d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
        rgb[d <= radius] = colour
        rgb[d <= 0.35 * radius] = (5, 5, 5)  # pupil
        rgb[(np.abs(xx + 0.5 - cx - 0.5 * radius) < 1.5) & (np.abs(yy + 0.5 - cy) < 1.5)] = 255
        pts[centre_id] = (cx, cy)
        for k, a in zip(ring_ids, np.linspace(0, 2 * np.pi, 4, endpoint=False)):
            pts[k] = (cx + radius * np.cos(a), cy + radius * np.sin(a))
    return pts


def test_painted_blue_irises_read_blue() -> None:
    rgb = np.full((100, 200, 3), (200, 170, 150), np.uint8)  # skin around the eyes
    pts = _eyes(rgb, 10.0, (40, 90, 170))
    colour = iris_color(rgb, pts)
    assert colour is not None
    np.testing.assert_allclose(colour, np.array([40, 90, 170]) / 255.0, atol=0.02)


def test_tiny_or_missing_irises_give_none() -> None:
    rgb = np.full((100, 200, 3), 128, np.uint8)
    assert iris_color(rgb, _eyes(rgb, 1.5, (40, 90, 170))) is None
    far = _eyes(rgb.copy(), 10.0, (40, 90, 170)) + 1000.0  # outside the image
    assert iris_color(rgb, far) is None


def test_brown_eyes_on_a_real_photo(eval_dir: Path) -> None:
    """IMG_0392 (dark brown eyes): dark, red above blue."""
    img = load_image(eval_dir / "photos" / "IMG_0392_inputs.jpg")
    face = get_landmarker().detect_faces(img.rgb)[0]
    r, g, b = iris_color(img.rgb, face.points)
    assert r > b and max(r, g, b) < 0.35, (r, g, b)
