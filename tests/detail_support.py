"""Synthetic scenes for tests/test_detail.py and tests/test_albedo.py, imported as
``tests.detail_support``.

A scene is the dev FLAME head (fixed random identity and expression, turned by a yaw) in
front of the pinhole camera, rendered by the warp ray caster (backend.fit.render) with a known
UV albedo, known SH lighting and optionally a known UV displacement map (normals tilted by
its slopes, bilinear lookups of 1024^2 maps per pixel), quantised to uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from backend.appearance.detail import detailed_normals, render_pixels, visible_pixels
from backend.model.flame import FLAME, load_flame
from backend.model.params import Camera, FitParams
from backend.model.uv import UVLayout, load_uv_layout
from backend.appearance.uvmaps import gaussian_blur, region_mask, texel_frames

SIZE = 512  # image side in pixels
MAP = 1024  # side of the ground-truth UV maps

# Two lightings (white-ambient gauge like the photometric fit): key light from the upper
# left-front, and a warmer one from the right with some band-2 energy.
SH_A = torch.zeros(1, 9, 3)
SH_A[0, 0] = 0.5 / 0.886227
SH_A[0, 1], SH_A[0, 2], SH_A[0, 3], SH_A[0, 4] = 0.25, 0.35, 0.30, 0.05
SH_B = torch.zeros(1, 9, 3)
SH_B[0, 0] = 0.55 / 0.886227
SH_B[0, 1], SH_B[0, 2], SH_B[0, 3], SH_B[0, 8] = 0.10, 0.30, -0.35, 0.08
SH_B[0, :, 0] *= 1.1
SH_B[0, :, 2] *= 0.9


@dataclass
class Scene:
    """A posed dev head and its camera.

    Attributes:
        params: FitParams of the head (camera, lighting SH_A).
        verts: (V, 3) view-frame vertices; faces: (F, 3) long.
        layout: FLAME UV layout; flame: the FLAME layer; assets: assets folder.
    """

    params: FitParams
    verts: torch.Tensor
    faces: torch.Tensor
    layout: UVLayout
    flame: FLAME
    assets: Path


def make_scene(assets: Path, yaw: float = 0.3, seed: int = 0) -> Scene:
    """The dev head turned by ``yaw`` radians (to the subject's left), 0.6 m from the camera."""
    data = load_flame(assets / "flame" / "flame_dev_model.npz")
    flame = FLAME(data)
    gen = torch.Generator().manual_seed(seed)
    pose = torch.zeros(1, 5, 3)
    pose[0, 0] = torch.tensor([0.1, yaw, 0.0])
    params = FitParams(shape=torch.randn(1, 60, generator=gen) * 0.5,
                       expression=torch.randn(1, 50, generator=gen) * 0.3, pose=pose,
                       translation=torch.tensor([[0.0, 0.02, -0.6]]),
                       camera=Camera(1100.0, SIZE / 2, SIZE / 2, SIZE, SIZE), sh=SH_A.clone(),
                       eyelids=torch.zeros(1, 2))
    with torch.no_grad():
        verts = flame(params.shape, params.expression, params.pose, params.translation).vertices[0]
    return Scene(params, verts, torch.from_numpy(data.faces), load_uv_layout(assets), flame, assets)


def mean_albedo(assets: Path, blur: float = 0.0) -> torch.Tensor:
    """(MAP, MAP, 3) painted mean texture in [0, 1], optionally blurred: Gaussian of sigma
    ``blur`` texels, applied at 1/16 resolution and upsampled bilinearly when ``blur`` >= 16."""
    with Image.open(assets / "uv" / "tex_mean_painted_2048.png") as im:
        tex = torch.from_numpy(np.asarray(im.convert("RGB").resize((MAP, MAP), Image.BOX),
                                          np.float32) / 255.0)
    if blur < 16.0:
        return gaussian_blur(tex, blur)
    small = F.interpolate(tex.permute(2, 0, 1)[None], size=(MAP // 16, MAP // 16), mode="area")
    small = gaussian_blur(small[0].permute(1, 2, 0), blur / 16.0).permute(2, 0, 1)[None]
    return F.interpolate(small, size=(MAP, MAP), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)


def bump_map(assets: Path, seed: int = 0) -> torch.Tensor:
    """(MAP, MAP) displacement in metres over the UV face region: 60 Gaussian bumps and
    dents (sigma 1 to 2.5 mm, up to 0.5 mm high) plus horizontal forehead wrinkles
    (0.3 mm, period about 5 mm)."""
    gen = torch.Generator().manual_seed(seed)
    face = torch.from_numpy(region_mask(assets, ("face",), MAP))
    ii, jj = torch.meshgrid(torch.arange(MAP, dtype=torch.float32),
                            torch.arange(MAP, dtype=torch.float32), indexing="ij")
    disp = torch.zeros(MAP, MAP)
    cand = face.nonzero().float()
    for c in cand[torch.randint(len(cand), (60,), generator=gen)]:
        sigma = float(torch.rand(1, generator=gen)) * 6.0 + 4.0  # texels, 4 per mm
        amp = (float(torch.rand(1, generator=gen)) - 0.5) * 1.0e-3
        disp += amp * torch.exp(-((ii - c[0]) ** 2 + (jj - c[1]) ** 2) / (2.0 * sigma ** 2))
    forehead = torch.from_numpy(region_mask(assets, ("forehead",), MAP)).float()
    fade = gaussian_blur(forehead[..., None], 8.0)[..., 0]
    disp += 0.3e-3 * torch.sin(ii / MAP * 2.0 * np.pi * 40.0) * fade
    return disp * face


def render(scene: Scene, albedo: torch.Tensor, sh: torch.Tensor,
           disp: torch.Tensor | None = None) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 image of the head on a grey background.

    Args:
        albedo: (R, R, 3) UV albedo; sh: (1, 9, 3); disp: (R', R') metres or None.
    """
    cam = scene.params.camera
    image = torch.full((cam.height, cam.width, 3), 0.3)
    pix = visible_pixels(scene.verts, scene.faces, scene.layout, cam, image)
    size = MAP if disp is None else disp.shape[0]
    frames = texel_frames(scene.verts, scene.faces, scene.layout, size)
    image[pix.rows, pix.cols] = render_pixels(pix, albedo, detailed_normals(frames, disp), sh)
    return (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
