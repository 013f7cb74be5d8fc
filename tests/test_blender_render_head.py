"""scripts/render_head.py as a user runs it (a separate process, Blender as a module).

The render must line up with the photo: the silhouette's bounding box equals the bounding
box of the bundle's posed mesh (mesh.obj + translation) projected with the bundle's pinhole
camera, within 2 pixels of the render (anti-aliased edges). The "photo" is an image made
here (a gradient), so the first panel can be compared with it exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from backend.bundle import read_obj, write_dev_bundle

pytestmark = pytest.mark.blender

HEIGHT = 160
GAP = 8
BACKGROUND = (46, 46, 46)
BBOX_TOL_PX = 2.0


def _projected_bbox(bundle: Path, scale: float) -> np.ndarray:
    """(x0, y0, x1, y1) of the posed mesh projected into the render (pixels, top-left origin)."""
    result = json.loads((bundle / "result.json").read_text())
    cam = result["camera"]
    q = read_obj(bundle / "mesh.obj").verts + np.array(result["translation"])
    f, (cx, cy) = cam["focal_px"], cam["principal_px"]
    u = (cx + f * q[:, 0] / -q[:, 2]) * scale
    v = (cy - f * q[:, 1] / -q[:, 2]) * scale
    w, h = cam["width"] * scale, cam["height"] * scale
    return np.array([max(u.min(), 0), max(v.min(), 0), min(u.max(), w), min(v.max(), h)])


def test_render_lines_up_with_the_photo_camera(tmp_path: Path, repo_root: Path, assets_dir: Path):
    bundle = tmp_path / "dev"
    write_dev_bundle(bundle, seed=4, assets=assets_dir)
    result = json.loads((bundle / "result.json").read_text())
    width, height = result["camera"]["width"], result["camera"]["height"]
    photo = tmp_path / "photo.png"
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1)).save(photo)
    out = tmp_path / "sheet.png"
    proc = subprocess.run(
        [sys.executable, "scripts/render_head.py", str(bundle), "-o", str(out), "--photo",
         str(photo), "--height", str(HEIGHT), "--preset", "JAW_OPEN"],
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout

    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    w = round(HEIGHT * width / height)
    assert sheet.shape == (HEIGHT, 4 * w + 3 * GAP, 3)  # photo | render | overlay | jaw open
    panels = [sheet[:, k * (w + GAP):k * (w + GAP) + w] for k in range(4)]
    expected_photo = np.asarray(Image.open(photo).convert("RGB").resize((w, HEIGHT), Image.LANCZOS))
    np.testing.assert_array_equal(panels[0], expected_photo)

    mask = np.abs(panels[1] - np.array(BACKGROUND)).max(axis=-1) > 8
    ys, xs = np.nonzero(mask)
    silhouette = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)
    np.testing.assert_allclose(silhouette, _projected_bbox(bundle, HEIGHT / height),
                               rtol=0, atol=BBOX_TOL_PX)
    # the overlay panel is the photo outside the head (and its anti-aliased rim) and differs
    # from it on the head; 3 levels: rim pixels of tiny alpha, invisible on the dark panel
    outside = ~binary_dilation(mask, iterations=2)
    np.testing.assert_allclose(panels[2][outside], expected_photo[outside], rtol=0, atol=3)
    assert np.abs(panels[2][mask] - expected_photo[mask]).mean() > 10
    # the jaw-open render differs from the captured one around the mouth and chin only
    changed = np.abs(panels[3] - panels[1]).max(axis=-1) > 30
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed.sum() > 50 and rows.min() > silhouette[1] + 0.3 * (silhouette[3] - silhouette[1])
