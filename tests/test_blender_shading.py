"""Shading of the example head: EEVEE shows no cracks or specks (issue 14 part 4).

scripts/render_head.py renders the example bundle (the example photo reconstructed by the real
CLI into a temporary folder, as ``./setup.sh`` does into ``out/example``) from
its photo camera in EEVEE and in Cycles (32 samples, OpenImageDenoise), 160 px, under the same
sky and key light. The high-frequency energy over the cheeks (two boxes inside the silhouette,
where the skin is smooth and the artefacts showed) is the mean squared Laplacian of the
luminance. Measured on this machine (EEVEE on Mesa's software OpenGL, bpy 5.0.1):
EEVEE/Cycles = 0.87 with one source of detail (the normal map); normal map plus bump of the
same displacement (the old material): 1.75; anisotropic texture filtering of the software
driver (dark specks): 7.4. Bound: within [0.5, 1.3].
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

pytestmark = pytest.mark.blender

HEIGHT = 160
RATIO_RANGE = (0.5, 1.3)
CHEEK_ROWS = (0.42, 0.66)  # of the silhouette's height
CHEEK_COLS = ((0.12, 0.36), (0.64, 0.88))  # of its width


def cheek_energy(path: Path) -> float:
    """Mean squared Laplacian of the luminance (0..1) over the cheek boxes of an RGBA render."""
    rgba = np.asarray(Image.open(path).convert("RGBA")).astype(float)
    silhouette = rgba[..., 3] == 255
    ys, xs = np.nonzero(silhouette)
    y0, h, x0, w = ys.min(), np.ptp(ys), xs.min(), np.ptp(xs)
    mask = np.zeros_like(silhouette)
    rows = slice(int(y0 + CHEEK_ROWS[0] * h), int(y0 + CHEEK_ROWS[1] * h))
    for c0, c1 in CHEEK_COLS:
        mask[rows, int(x0 + c0 * w):int(x0 + c1 * w)] = True
    mask &= ndimage.binary_erosion(silhouette, iterations=4)
    assert mask.sum() > 500
    lum = rgba[..., :3] @ np.array([0.2126, 0.7152, 0.0722]) / 255.0
    return float((ndimage.laplace(lum)[mask] ** 2).mean())


def _render(repo_root: Path, bundle: Path, out: Path, *args: str) -> Path:
    proc = subprocess.run(
        [sys.executable, "scripts/render_head.py", str(bundle), "-o", str(out / "sheet.png"),
         "--height", str(HEIGHT), "--keep-renders", str(out), *args],
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out / "render_0.png"


@pytest.fixture(scope="module")
def example_bundle(tmp_path_factory: pytest.TempPathFactory, eval_dir: Path) -> Path:
    """The README's example photo reconstructed with the default settings (detail on)."""
    bundle = tmp_path_factory.mktemp("example") / "bundle"
    proc = subprocess.run([str(Path(sys.executable).parent / "headrecon"), "reconstruct",
                           str(eval_dir / "photos" / "IMG_0392_inputs.jpg"), "-o", str(bundle)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return bundle


def test_eevee_high_frequency_energy_matches_cycles(repo_root: Path, tmp_path: Path,
                                                    example_bundle: Path):
    bundle = example_bundle
    eevee = cheek_energy(_render(repo_root, bundle, tmp_path / "eevee", "--engine", "EEVEE",
                                 "--samples", "16"))
    cycles = cheek_energy(_render(repo_root, bundle, tmp_path / "cycles", "--engine", "CYCLES",
                                  "--samples", "32", "--denoise"))
    ratio = eevee / cycles
    print(f"cheek high-frequency energy: EEVEE {eevee:.3e}, Cycles {cycles:.3e}, ratio {ratio:.2f}")
    assert RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1]
