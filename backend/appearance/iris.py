"""The iris colour of a photo, from MediaPipe's iris landmarks (result.json ``iris_color``).

MediaPipe's 478 points end with two irises: 468 (centre) and 469-472 (a ring on the iris edge) for
the subject's right eye, 473 and 474-477 for the left. Per eye, the pixels between 40 % and 85 %
of the iris radius (outside the pupil, inside the limbus) that are neither highlights nor deep
shadow are pooled; the colour is their per-channel median in sRGB, 0..1.
"""

from __future__ import annotations

import numpy as np

IRISES: tuple[tuple[int, tuple[int, ...]], ...] = ((468, (469, 470, 471, 472)),
                                                   (473, (474, 475, 476, 477)))
INNER, OUTER = 0.40, 0.85  # fractions of the iris radius kept (pupil and limbus left out)
MIN_PIXELS = 12  # fewer usable pixels over both eyes: no colour


def iris_color(rgb: np.ndarray, points478: np.ndarray) -> list[float] | None:
    """Median iris colour of both eyes.

    Args:
        rgb: (H, W, 3) uint8 photo; points478: (478, 2|3) MediaPipe points in its pixels.
    Returns:
        [r, g, b] sRGB in 0..1 (3 decimals), or None when the irises are too small or unseen.
    """
    h, w = rgb.shape[:2]
    pts = np.asarray(points478, dtype=np.float64)[:, :2]
    samples = []
    for centre_id, ring_ids in IRISES:
        centre = pts[centre_id]
        radius = float(np.linalg.norm(pts[list(ring_ids)] - centre, axis=1).mean())
        if not np.isfinite(radius) or radius < 2.0:
            continue
        x0, y0 = np.floor(centre - radius).astype(int)
        x1, y1 = np.ceil(centre + radius).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = np.hypot(xx + 0.5 - centre[0], yy + 0.5 - centre[1]) / radius
        ring = (dist >= INNER) & (dist <= OUTER)
        pix = rgb[y0:y1, x0:x1][ring].astype(np.float64)
        value = pix.max(axis=1)
        keep = (value > 25) & (value < 235)  # no deep shadow, no specular highlight
        samples.append(pix[keep])
    pooled = np.concatenate(samples) if samples else np.zeros((0, 3))
    if len(pooled) < MIN_PIXELS:
        return None
    return [round(float(c) / 255.0, 3) for c in np.median(pooled, axis=0)]
