"""Albedo of the lips on a real photo: the inner lips, which a closed mouth hides from the
photo, are completed with the lip colour the photo shows, not with skin (issue: a light grey
band inside the lips of an opened mouth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.appearance.uvmaps import region_mask
from backend.options import ReconstructOptions
from backend.pipeline import reconstruct

UPPER_LIP, LOWER_LIP, SKIN = 12, 13, 1  # face parser labels (result.json segmentation.labels)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    return rgb / max(float(rgb.sum()), 1e-6)


@pytest.mark.parametrize("name", ["expression_5.jpg"])
def test_inner_lips_take_the_photos_lip_colour(name: str, eval_dir: Path, assets_dir: Path,
                                               tmp_path: Path) -> None:
    """On a real eval photo (closed lips over smiling teeth) the unseen inner-lip texels of
    albedo.png (``lip_inside`` and the unseen part of ``lips_tight``) have a mean chromaticity
    closer to the photo's lip pixels (face parser labels) than to its skin pixels (on a
    default-quality bundle: 0.008 against 0.113) (before: the unseen band outside ``lip_inside`` was filled from the
    tinted mean skin texture); and the lip colour reported in result.json is redder than the skin."""
    photo = eval_dir / "photos" / name
    out = tmp_path / "bundle"
    reconstruct(str(photo), str(out), ReconstructOptions(device="cpu", quality="fast", detail=False,
                                                         assets=str(assets_dir)))
    seg = np.asarray(Image.open(out / "segmentation.png"))
    rgb = np.asarray(Image.open(photo).convert("RGB")).astype(np.float64) / 255.0
    assert seg.shape == rgb.shape[:2]
    photo_lip = np.median(rgb[np.isin(seg, (UPPER_LIP, LOWER_LIP))], axis=0)
    photo_skin = np.median(rgb[seg == SKIN], axis=0)
    albedo = np.asarray(Image.open(out / "albedo.png")).astype(np.float64) / 255.0
    size = albedo.shape[0]
    with Image.open(out / "texture.png") as im:
        seen = np.asarray(im.resize((size, size), Image.NEAREST))[..., 3] > 127
    inner = region_mask(assets_dir, ("lip_inside",), size) \
        | (region_mask(assets_dir, ("lips_tight",), size) & ~seen)
    assert int(inner.sum()) > 2000
    mean = albedo[inner].mean(0)
    to_lip = np.linalg.norm(_chroma(mean) - _chroma(photo_lip))
    to_skin = np.linalg.norm(_chroma(mean) - _chroma(photo_skin))
    assert to_lip < 0.5 * to_skin, (mean, photo_lip, photo_skin, to_lip, to_skin)
    lip = json.loads((out / "result.json").read_text())["detail"]["albedo"]["lip_rgb"]
    assert _chroma(np.asarray(lip))[0] > _chroma(photo_skin)[0]
