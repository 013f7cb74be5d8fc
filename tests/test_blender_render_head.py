"""scripts/render_head.py as a user runs it (a separate process, Blender as a module).

The render must line up with the photo: the silhouette's bounding box equals the bounding
box of the bundle's posed mesh (mesh.obj + translation) projected with the bundle's pinhole
camera into the script's crop region (its ``crop_box``), within 2 pixels of the panel
(anti-aliased edges, pixel rounding of the region). The "photo" is an image made here (a
gradient), so the first panel can be compared with the same region of it (3 levels: the
region's pixel rounding).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from backend.files.bundle import write_dev_bundle
from backend.files.obj import read_obj

pytestmark = pytest.mark.blender

HEIGHT = 160
GAP = 8
BACKGROUND = (46, 46, 46)
BBOX_TOL_PX = 2.0


def _script(repo_root: Path) -> object:
    spec = importlib.util.spec_from_file_location("render_head_script",
                                                  repo_root / "scripts" / "render_head.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _projected(bundle: Path) -> np.ndarray:
    """(V, 2) pixel coordinates of the posed mesh in the photo (top-left origin)."""
    result = json.loads((bundle / "result.json").read_text())
    cam = result["camera"]
    q = read_obj(bundle / "mesh.obj").verts + np.array(result["translation"])
    f, (cx, cy) = cam["focal_px"], cam["principal_px"]
    return np.stack([cx + f * q[:, 0] / -q[:, 2], cy - f * q[:, 1] / -q[:, 2]], axis=1)


@pytest.mark.parametrize("crop", [True, False])
def test_render_lines_up_with_the_photo_camera(tmp_path: Path, repo_root: Path, assets_dir: Path,
                                               crop: bool):
    bundle = tmp_path / "dev"
    write_dev_bundle(bundle, seed=4, assets=assets_dir)
    result = json.loads((bundle / "result.json").read_text())
    # a wider lens than the dev bundle's (the head fills its photo) so there is a crop to check
    result["camera"]["focal_px"] = 500.0
    (bundle / "result.json").write_text(json.dumps(result))
    width, height = result["camera"]["width"], result["camera"]["height"]
    photo = tmp_path / "photo.png"
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1)).save(photo)
    out = tmp_path / "sheet.png"
    proc = subprocess.run(
        [sys.executable, "scripts/render_head.py", str(bundle), "-o", str(out), "--photo",
         str(photo), "--height", str(HEIGHT), "--preset", "JAW_OPEN", "--crop" if crop else "--no-crop"],
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout

    uv = _projected(bundle)
    box = np.array(_script(repo_root).crop_box(uv, width, height) if crop
                   else (0.0, 0.0, width, height))
    if crop:
        assert box[0] > 0 and box[2] < width  # the head is framed, not the whole photo
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    w = (sheet.shape[1] - 3 * GAP) // 4  # photo | render | overlay | jaw open
    assert sheet.shape == (HEIGHT, 4 * w + 3 * GAP, 3)
    assert abs(w - HEIGHT * (box[2] - box[0]) / (box[3] - box[1])) <= 1
    panels = [sheet[:, k * (w + GAP):k * (w + GAP) + w] for k in range(4)]
    expected_photo = np.asarray(Image.open(photo).convert("RGB").resize(
        (w, HEIGHT), Image.LANCZOS, box=tuple(box))).astype(int)
    np.testing.assert_allclose(panels[0], expected_photo, rtol=0, atol=3)

    mask = np.abs(panels[1] - np.array(BACKGROUND)).max(axis=-1) > 8
    ys, xs = np.nonzero(mask)
    silhouette = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)
    scale = HEIGHT / (box[3] - box[1])
    projected = np.concatenate([uv.min(axis=0) - box[:2], uv.max(axis=0) - box[:2]]) * scale
    np.testing.assert_allclose(silhouette, np.clip(projected, 0, [w, HEIGHT, w, HEIGHT]), rtol=0,
                               atol=BBOX_TOL_PX)
    # the overlay panel is the photo outside the head (and its anti-aliased rim) and differs
    # from it on the head; 3 levels: rim pixels of tiny alpha, invisible on the dark panel
    outside = ~binary_dilation(mask, iterations=2)
    np.testing.assert_allclose(panels[2][outside], panels[0][outside], rtol=0, atol=3)
    assert np.abs(panels[2][mask] - panels[0][mask]).mean() > 10
    # the jaw-open render differs from the captured one around the mouth and chin only
    changed = np.abs(panels[3] - panels[1]).max(axis=-1) > 30
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed.sum() > 50 and rows.min() > silhouette[1] + 0.3 * (silhouette[3] - silhouette[1])
