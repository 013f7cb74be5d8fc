"""Albedo stage: de-lighting agrees across lightings, completion fills every texel without
seams, eyes and mouth get their colours, albedo.png is written. Synthetic renders of the dev
head with the painted mean texture as ground-truth albedo (tests/detail_support.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_erosion

from backend.appearance.albedo import (DEFAULT_IRIS_RGB, INNER_LIP_GAIN, SCLERA_RGB, TEETH_RGB, complete_albedo,
                            complete_albedo_maps, delit_texels)
from backend.options import ReconstructOptions
from backend.pipeline import Engine
from backend.appearance.texture import sample_photo_texture
from backend.model.uv import uv_rasterize
from backend.appearance.uvmaps import mirror_map, pull_push_fill, region_mask
from tests.detail_support import SH_A, SH_B, make_scene, mean_albedo, render

SIZE = 1024


def _delit(scene, albedo: torch.Tensor, sh: torch.Tensor,
           delit_sh: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render under ``sh``, sample the photo texture, divide by ``delit_sh`` (default ``sh``)."""
    rgb = render(scene, albedo, sh)
    tex = sample_photo_texture(rgb, scene.verts.numpy(), scene.faces.numpy(), scene.layout,
                               scene.params.camera, size=SIZE)
    return delit_texels(tex, scene.verts, scene.faces, scene.layout,
                        sh if delit_sh is None else delit_sh)


def test_pull_push_fill() -> None:
    """Known texels (weight 1) are kept exactly; a constant field stays constant; a ramp
    with a large hole is filled inside the known range without jumps (max step between
    neighbours < 4x the ramp's own step)."""
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(200, 300, 3, generator=gen)
    weight = (torch.rand(200, 300, generator=gen) > 0.7).float()
    out = pull_push_fill(values, weight)
    assert torch.equal(out[weight == 1], values[weight == 1])
    assert bool(torch.isfinite(out).all())
    const = pull_push_fill(torch.full((200, 300, 3), 0.3), weight)
    torch.testing.assert_close(const, torch.full_like(const, 0.3), atol=1e-6, rtol=0)
    ramp = torch.linspace(0.0, 1.0, 300).expand(200, 300)[..., None]
    hole = torch.ones(200, 300)
    hole[40:160, 60:240] = 0.0
    filled = pull_push_fill(ramp, hole)[..., 0]
    assert float(filled.min()) >= 0.0 and float(filled.max()) <= 1.0
    step = 1.0 / 299
    assert float((filled[:, 1:] - filled[:, :-1]).abs().max()) < 4 * step
    assert float((filled[1:] - filled[:-1]).abs().max()) < 4 * step


def test_albedo_agrees_under_two_lightings(assets_dir: Path) -> None:
    """The same head (mean texture albedo) rendered under two different SH lightings gives
    the same de-lit albedo where both renders see it (confidence > 0.5): median difference
    < 0.005 and 95th percentile < 0.02 (0..1 units; measured 0.002 / 0.006), and both match
    the true albedo within the same bounds."""
    scene = make_scene(assets_dir, yaw=0.3)
    truth = mean_albedo(assets_dir)
    a1, c1 = _delit(scene, truth, SH_A)
    a2, c2 = _delit(scene, truth, SH_B)
    both = (c1 > 0.5) & (c2 > 0.5)
    assert int(both.sum()) > 100_000
    for diff in ((a1 - a2).abs()[both], (a1 - truth).abs()[both], (a2 - truth).abs()[both]):
        assert float(diff.median()) < 0.005
        assert float(diff.quantile(0.95)) < 0.02
    # dividing by the wrong light does not agree: the test can tell
    wrong, cw = _delit(scene, truth, SH_B, delit_sh=SH_A)
    assert float((wrong - truth).abs()[(cw > 0.5) & both].median()) > 0.02


@pytest.fixture(scope="module")
def completed(assets_dir: Path):
    """A subject darker and warmer than the mean texture (truth = mean x (0.8, 0.7, 0.6)),
    head turned by 0.7 rad so one side is seen only through the mirror, completed."""
    scene = make_scene(assets_dir, yaw=0.7)
    truth = mean_albedo(assets_dir) * torch.tensor([0.8, 0.7, 0.6])
    albedo, conf = _delit(scene, truth, SH_A)
    mirror = mirror_map(scene.flame.data.v_template, scene.flame.data.faces, scene.layout, SIZE)
    covered = torch.from_numpy(uv_rasterize(scene.layout, SIZE).mask)
    maps = complete_albedo_maps(albedo, conf, mirror, covered, assets_dir)
    return maps, truth, covered


def test_completion_leaves_no_empty_texel(assets_dir: Path, completed) -> None:
    """Every texel of the 1024^2 map gets a colour in [0, 1]; the only black texels are the
    pupils of the mean texture's eyes."""
    maps, _, _ = completed
    out = maps.albedo
    assert out.shape == (SIZE, SIZE, 3) and bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    black = out.sum(-1) == 0
    irises = torch.from_numpy(region_mask(assets_dir, ("irises",), SIZE))
    assert not bool((black & ~irises).any())


def test_completion_mirror_tint_and_seams(completed) -> None:
    """Unseen texels with a seen mirror texel take its albedo (median error vs truth < 0.01,
    measured 0.003); the mean texture is tinted to the subject (gain within 3% of
    (0.8, 0.7, 0.6)) so texels seen from neither side are close to the truth too (median
    < 0.01); and across the border between seen and filled texels neighbours differ by
    < 0.01 on average (measured 0.006; without tint and correction the border would jump
    by 0.2 or more)."""
    maps, truth, covered = completed
    out = maps.albedo
    mirrored = covered & (maps.own < 0.01) & (maps.mirror > 0.9)
    filled = covered & (maps.own == 0) & (maps.mirror == 0)
    assert int(mirrored.sum()) > 50_000 and int(filled.sum()) > 50_000
    assert float((out - truth).abs()[mirrored].median()) < 0.01
    torch.testing.assert_close(maps.gain, torch.tensor([0.8, 0.7, 0.6]), atol=0.03 * 0.8, rtol=0)
    assert float((out - truth).abs()[filled].median()) < 0.01
    seen = covered & (maps.own > 0)
    jumps = []
    for a, b in (((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
                 ((slice(0, -1), slice(None)), (slice(1, None), slice(None)))):
        pair = (seen[a] & filled[b]) | (filled[a] & seen[b])
        jumps.append((out[a] - out[b]).abs().amax(-1)[pair])
    assert float(torch.cat(jumps).mean()) < 0.01


def test_eyes_and_mouth_colours(assets_dir: Path, completed) -> None:
    """Sclerae and teeth take their fixed albedos; the iris is recoloured to the iris colour
    (the photo's when enough iris is seen, else the default); the lips' unseen inner surface
    takes the seen lips' colour (up to INNER_LIP_GAIN darker towards the mouth opening)."""
    maps = completed[0]
    out = maps.albedo

    def median_in(name: str, erode: int = 0) -> torch.Tensor:
        mask = region_mask(assets_dir, (name,), SIZE)
        if erode:  # away from the feathered border
            mask = binary_erosion(mask, iterations=erode)
        return out[torch.from_numpy(mask)].median(0).values

    torch.testing.assert_close(median_in("sclerae"), torch.tensor(SCLERA_RGB), atol=0.01, rtol=0)
    torch.testing.assert_close(median_in("teeth"), torch.tensor(TEETH_RGB), atol=0.01, rtol=0)
    # the unseen inner lips: the seen lips' colour, darkened towards the mouth opening
    lips = torch.from_numpy(region_mask(assets_dir, ("lips_tight",), SIZE)) & (maps.own > 0.5)
    torch.testing.assert_close(maps.lip, completed[1][lips].median(0).values, atol=0.02, rtol=0)
    inside = median_in("lip_inside", erode=4)
    assert bool((inside <= maps.lip + 0.02).all())
    assert bool((inside >= maps.lip * torch.tensor(INNER_LIP_GAIN) - 0.02).all())
    irises = torch.from_numpy(region_mask(assets_dir, ("irises",), SIZE)) & (out.sum(-1) > 0.05)
    torch.testing.assert_close(out[irises].median(0).values, maps.iris, atol=0.02, rtol=0)


def test_iris_default_when_unseen(assets_dir: Path, completed) -> None:
    """With no iris texel seen the iris gets DEFAULT_IRIS_RGB."""
    _, truth, covered = completed
    scene = make_scene(assets_dir, yaw=0.7)
    mirror = mirror_map(scene.flame.data.v_template, scene.flame.data.faces, scene.layout, SIZE)
    albedo = truth.clone()
    conf = torch.from_numpy(region_mask(assets_dir, ("face",), SIZE)).float()
    maps = complete_albedo_maps(albedo, conf, mirror, covered, assets_dir)
    torch.testing.assert_close(maps.iris, torch.tensor(DEFAULT_IRIS_RGB))


def test_complete_albedo_writes_png(assets_dir: Path, tmp_path: Path) -> None:
    """The no-detail path (pipeline texture stage): albedo.png, RGB 1024^2, plus its
    numbers; about a third of the head is seen in a frontal-ish photo."""
    scene = make_scene(assets_dir, yaw=0.3)
    rgb = render(scene, mean_albedo(assets_dir), SH_A)
    engine = Engine(ReconstructOptions(device="cpu", assets=str(assets_dir)))
    reports: list[float] = []
    files = complete_albedo(engine, scene.params, rgb, tmp_path,
                            progress=lambda s, f, m="": reports.append(f))
    assert files["albedo"] == "albedo.png"
    info = files["detail"]["albedo"]
    assert info["size"] == SIZE and info["detail_normals"] is False
    assert 0.15 < info["seen_fraction"] < 0.6
    with Image.open(tmp_path / "albedo.png") as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)
        img = np.asarray(im).astype(np.float32) / 255.0
    truth = mean_albedo(assets_dir).numpy()
    face = region_mask(assets_dir, ("face",), SIZE)
    assert np.median(np.abs(img - truth)[face]) < 0.02
    assert reports == sorted(reports) and reports[-1] == 1.0
