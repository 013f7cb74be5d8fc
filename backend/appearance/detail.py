"""Detail stage: a UV displacement map recovered from the photo by shape-from-shading.

The coarse head (fitted FLAME + SH lighting) explains the photo's low frequencies. What is
left, fine shading such as wrinkles and folds, is explained by a displacement ``D`` along
the normal, stored as an ``R x R`` map in the FLAME UV layout.

The fit runs in UV space. The visible pixels of the head's detail region (UV ``face``
without eyes and mouth interior, seen at less than a grazing angle) are splatted bilinearly
into texels, so occluded or unseen texels simply have no data. Texels whose de-lit colour
is not skin-like (hair, brows, cast shadows; compared with the nose) give no data either.
Each remaining texel predicts ``albedo * sh_shading(n(D))``: ``n(D)`` tilts the texel
normal by the displacement's surface slopes (the tangent-space maths a renderer applies to
the normal map) and ``albedo`` is the photo divided by the coarse shading, median-filtered
over a few millimetres (albedo is assumed to change slowly or in wide patches; thin
features are detail shading). ``D`` minimises

    Cauchy photometric error + smoothness (Laplacian) + low-pass magnitude + magnitude
    + soft left-right symmetry (via the mirror texel map)

with Adam on a sum of upsampled maps at 1/8, 1/4, 1/2 and full resolution, so that broad
and fine features converge alike. Texels without data are shaped by the regularisers only
(and by their mirror texel through the symmetry term).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import Cancelled
from ..model.params import Camera, FitParams
from ..fit.render import rasterize, sh_shading
from ..model.uv import UVLayout
from .uvmaps import (TexelFrames, encode_displacement_png16, feather, gaussian_blur, mirror_map,
                     normal_map_to_rgb8, perturbed_normals, region_mask, tangent_normal_map,
                     texel_frames, uv_gradient, write_png16)

# UV regions where detail is recovered, and regions cut out of them (albedo edges and
# unmodelled cavities that shading cannot explain).
DETAIL_REGIONS: tuple[str, ...] = ("face",)
DETAIL_EXCLUDE: tuple[str, ...] = ("lip_inside", "eyeballs")
# Regions whose photo colours are not used (sharp albedo edges: lash lines, vermilion);
# their displacement comes from the regularisers.
DATA_EXCLUDE: tuple[str, ...] = ("eyelids", "lips_tight")
# Region whose median colour defines "skin" (rarely covered by hair or shadowed).
SKIN_REFERENCE: tuple[str, ...] = ("nose",)
# A texel is skin when its de-lit colour is within these bounds of the reference: chroma
# (log colour minus log luminance) within SKIN_CHROMA_MADS robust deviations (at least
# SKIN_CHROMA_MIN), log luminance within SKIN_LUMA_RANGE. Hair, brows, beard stubble and
# cast shadows fail and give no data (they would turn into displacement).
SKIN_CHROMA_MADS = 4.0
SKIN_CHROMA_MIN = 0.08
SKIN_LUMA_RANGE = (-0.6, 0.5)

Report = Callable[[float, str], None]


@dataclass(frozen=True)
class DetailConfig:
    """Settings of the shape-from-shading fit.

    Attributes:
        size: side of the displacement map in texels.
        iters: Adam iterations.
        lr: Adam step in millimetres.
        w_smooth: weight of the squared Laplacian (1/mm) of D.
        w_lowpass: weight of the squared low-pass of D (downsampled to texels of
            ``4 * albedo_radius_mm``), mm^2: D carries detail, not coarse shape.
        w_mag: weight of the squared magnitude of D, mm^2.
        w_sym: weight of the squared difference between D and its mirror image, mm^2.
        albedo_radius_mm: radius of the median filter separating albedo from detail shading.
        min_facing_cos: pixels seen at a grazing angle (cos below this) are ignored.
        robust_scale: scale of the Cauchy loss on the photometric residual (0..1 colour
            units); residuals much larger than this (albedo edges, shadows) lose influence.
    """

    size: int = 256
    iters: int = 80
    lr: float = 0.02
    w_smooth: float = 2.0
    w_lowpass: float = 0.5
    w_mag: float = 0.05
    w_sym: float = 0.1
    albedo_radius_mm: float = 4.0
    min_facing_cos: float = 0.35
    robust_scale: float = 0.05


QUALITY_CONFIGS: dict[str, DetailConfig] = {
    "fast": DetailConfig(size=256, iters=40),
    "default": DetailConfig(size=256, iters=80),
    "best": DetailConfig(size=512, iters=200),
}


# ----------------------------------------------------------------------------- image space


@dataclass
class FacePixels:
    """The visible pixels of the fitted head, with their UV coordinates and photo colour.

    Attributes:
        rows, cols: (N,) long pixel coordinates in the image.
        uv: (N, 2) UV coordinates.
        color: (N, 3) photo colour in [0, 1].
        facing: (N,) cosine between the normal and the direction to the camera.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    uv: torch.Tensor
    color: torch.Tensor
    facing: torch.Tensor

    def subset(self, keep: torch.Tensor) -> "FacePixels":
        """The pixels where the (N,) bool ``keep`` is True."""
        return FacePixels(*(getattr(self, k)[keep] for k in
                            ("rows", "cols", "uv", "color", "facing")))


def visible_pixels(verts_view: torch.Tensor, faces: torch.Tensor, layout: UVLayout,
                   camera: Camera, image: torch.Tensor) -> FacePixels:
    """Rasterize the head and collect UV, colour and facing of every covered pixel.

    Args:
        verts_view: (V, 3) view-frame vertices; faces: (F, 3) long.
        layout: FLAME UV layout; camera: pinhole camera of ``image``.
        image: (H, W, 3) float photo in [0, 1].
    Returns:
        FacePixels of the N pixels the head covers.
    """
    H, W = image.shape[:2]
    verts_view = verts_view.detach()
    frags = rasterize(verts_view[None], faces, camera.focal, camera.cx, camera.cy, H, W)
    rows, cols = frags.mask[0].nonzero(as_tuple=True)
    face = frags.face_idx[0, rows, cols]
    bary = frags.bary[0, rows, cols]
    uv_t = torch.from_numpy(layout.uv).to(verts_view)
    uv_faces = torch.from_numpy(layout.uv_faces).to(verts_view.device)
    uv = (uv_t[uv_faces[face]] * bary[..., None]).sum(1)
    tri = verts_view[faces[face]]
    points = (tri * bary[..., None]).sum(1)
    fn = F.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), dim=-1)
    facing = -(fn * F.normalize(points, dim=-1)).sum(-1)
    return FacePixels(rows, cols, uv, image[rows, cols], facing)


def texel_of(uv: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 2) UV coordinates -> (N,) long flat index of the texel containing them."""
    i = ((1.0 - uv[:, 1]) * size).long().clamp(0, size - 1)
    j = (uv[:, 0] * size).long().clamp(0, size - 1)
    return i * size + j


def splat(pix: FacePixels, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean photo colour per texel, each pixel spread bilinearly over 4 texels.

    Returns:
        color (R, R, 3) (0 where no pixel), weight (R, R) summed bilinear weights.
    """
    x = pix.uv[:, 0] * size - 0.5
    y = (1.0 - pix.uv[:, 1]) * size - 0.5
    x0, y0 = x.floor(), y.floor()
    acc = pix.color.new_zeros(size * size, 4)
    vals = torch.cat([pix.color, torch.ones_like(pix.color[:, :1])], dim=1)
    for dx in (0, 1):
        for dy in (0, 1):
            w = (1.0 - (x - x0 - dx).abs()) * (1.0 - (y - y0 - dy).abs())
            j, i = x0.long() + dx, y0.long() + dy
            ok = (j >= 0) & (j < size) & (i >= 0) & (i < size)
            acc.index_add_(0, (i * size + j)[ok], vals[ok] * w[ok, None])
    weight = acc[:, 3]
    color = acc[:, :3] / weight.clamp(min=1e-6)[:, None]
    return color.reshape(size, size, 3), weight.reshape(size, size)


def sample_uv(maps: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of UV-space maps at UV coordinates (edges clamped).

    Args:
        maps: (C, R, R) in image order (row 0 = top); uv: (N, 2).
    Returns:
        (N, C).
    """
    grid = torch.stack([uv[:, 0] * 2.0 - 1.0, 1.0 - uv[:, 1] * 2.0], dim=-1)[None, :, None]
    out = F.grid_sample(maps[None], grid.to(maps.dtype), mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T


def shade(normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """SH irradiance of (..., 3) unit normals under (1, 9, 3) lighting -> (..., 3)."""
    flat = normals.reshape(1, -1, 1, 3)
    return sh_shading(flat, sh.to(normals.dtype)).reshape(normals.shape)


def detailed_normals(frames: TexelFrames, disp: torch.Tensor | None,
                     size: int | None = None) -> torch.Tensor:
    """Texel normals tilted by a displacement map (the coarse normals when ``disp`` is None).

    Args:
        frames: texel frames of an (h, w) window of a size x size map (the whole map when
            ``size`` is None); disp: (h, w) displacement in metres.
    Returns:
        (h, w, 3) unit normals.
    """
    if disp is None:
        return frames.normal
    du, dv = uv_gradient(disp, size)
    return perturbed_normals(frames.normal, frames.tangent, frames.bitangent,
                             du / frames.len_u, dv / frames.len_v)


def render_pixels(pix: FacePixels, albedo: torch.Tensor, normals: torch.Tensor,
                  sh: torch.Tensor) -> torch.Tensor:
    """Re-render pixels: UV albedo times SH shading of UV-space normals, bilinear lookups.

    Args:
        pix: N pixels; albedo: (Ra, Ra, 3) UV map; normals: (R, R, 3) unit UV map;
        sh: (1, 9, 3).
    Returns:
        (N, 3) colours.
    """
    a = sample_uv(albedo.permute(2, 0, 1), pix.uv)
    n = F.normalize(sample_uv(normals.permute(2, 0, 1), pix.uv), dim=-1)
    return a * shade(n, sh)


# ----------------------------------------------------------------------------- the fit


def smooth_albedo(ratio: torch.Tensor, observed: torch.Tensor, radius: int) -> torch.Tensor:
    """Low-pass, edge-preserving albedo from ``photo / coarse shading`` over observed texels.

    A median over (2 radius + 1)^2 windows keeps albedo edges wider than the window (brows,
    lips) and drops thin shading features (wrinkles); a normalised Gaussian blur of sigma
    ``radius / 2`` then smooths it and extends it over texels without data.

    Args:
        ratio: (R, R, 3) photo / coarse shading; observed: (R, R) bool texels with data.
        radius: window radius in texels.
    Returns:
        (R, R, 3).
    """
    rows, cols = observed.nonzero(as_tuple=True)
    med = torch.zeros_like(ratio)
    if len(rows):
        nan = torch.where(observed[..., None], ratio, torch.full_like(ratio, float("nan")))
        padded = F.pad(nan.permute(2, 0, 1)[None], (radius,) * 4, value=float("nan"))[0]
        k = 2 * radius + 1
        dr, dc = torch.meshgrid(torch.arange(k, device=ratio.device),
                                torch.arange(k, device=ratio.device), indexing="ij")
        win = padded[:, rows[:, None] + dr.reshape(1, -1), cols[:, None] + dc.reshape(1, -1)]
        med[rows, cols] = win.nanmedian(dim=-1).values.T
    w = observed.to(ratio.dtype)[..., None]
    acc = gaussian_blur(torch.cat([med * w, w], -1), max(radius / 2.0, 0.5))
    mean = (med * w).sum((0, 1)) / w.sum().clamp(min=1.0)
    return (acc[..., :3] + 1e-3 * mean) / (acc[..., 3:] + 1e-3)


def skin_texels(ratio: torch.Tensor, seen: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Seen texels whose de-lit colour looks like the subject's skin.

    Args:
        ratio: (R, R, 3) photo / coarse shading; seen: (R, R) bool texels with data;
        reference: (R, R) bool texels that define the skin colour (median).
    Returns:
        (R, R) bool, eroded by one texel next to rejected texels (hair strands' edges).
    """
    ref = seen & reference
    if int(ref.sum()) < 10:
        return seen
    log = ratio.clamp(min=1e-3).log()
    luma = log.mean(-1, keepdim=True)
    chroma = log - luma
    c_med = chroma[ref].median(0).values
    l_med = luma[ref].median()
    c_mad = (chroma[ref] - c_med).abs().median(0).values * 1.4826
    c_tol = torch.maximum(SKIN_CHROMA_MADS * c_mad, torch.full_like(c_mad, SKIN_CHROMA_MIN))
    dl = luma[..., 0] - l_med
    skin = seen & ((chroma - c_med).abs() <= c_tol).all(-1) \
        & (dl >= SKIN_LUMA_RANGE[0]) & (dl <= SKIN_LUMA_RANGE[1])
    rejected = (seen & ~skin).to(ratio.dtype)[None, None]
    near = F.max_pool2d(rejected, 3, stride=1, padding=1)[0, 0] > 0
    return skin & ~near


def _laplacian(d: torch.Tensor) -> torch.Tensor:
    p = F.pad(d[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * d


def fit_displacement(frames: TexelFrames, color: torch.Tensor, observed: torch.Tensor,
                     albedo: torch.Tensor, sh: torch.Tensor, region: torch.Tensor,
                     mirror: torch.Tensor, texel_mm: float, cfg: DetailConfig,
                     report: Report | None = None,
                     cancel: Callable[[], bool] | None = None) -> torch.Tensor:
    """Shape-from-shading in UV space: the displacement that best explains the fine shading.

    All maps cover the same window (h, w) of the ``cfg.size``^2 UV map.

    Args:
        frames: texel frames of the fitted head.
        color: (h, w, 3) observed texel colours; observed: (h, w) bool texels with data.
        albedo: (h, w, 3) low-pass albedo; sh: (1, 9, 3) fitted lighting.
        region: (h, w) bool texels where D may be non-zero.
        mirror: (h, w) long flat index (into the window) of each texel's mirror (-1 = none).
        texel_mm: typical texel size in millimetres (scales the regularisers).
        cfg: weights and iterations; report(fraction, message); cancel() -> True to stop.
    Returns:
        (h, w) displacement in metres along the normal, zero outside ``region`` and faded
        towards its border.
    """
    h, w = region.shape
    dev, dt = color.device, color.dtype
    soft = (2.0 * feather(region, 2.0) - 1.0).clamp(min=0.0) * region
    regf = region.to(dt)
    n_reg = regf.sum().clamp(min=1.0)
    obs = observed & region
    n_obs = obs.sum().clamp(min=1)
    mirror_flat = mirror.clamp(min=0).reshape(-1)
    has_mirror = (mirror >= 0) & region & region.reshape(-1)[mirror_flat].reshape(h, w)
    n_sym = has_mirror.sum().clamp(min=1)
    low_scale = texel_mm / (4.0 * cfg.albedo_radius_mm)  # low-pass texels per texel
    low_hw = (max(2, round(h * low_scale)), max(2, round(w * low_scale)))
    levels = [torch.zeros(1, 1, max(2, h // k), max(2, w // k), device=dev, dtype=dt,
                          requires_grad=True) for k in (8, 4, 2, 1)]
    opt = torch.optim.Adam(levels, lr=cfg.lr)
    c2 = cfg.robust_scale ** 2

    def disp_mm() -> torch.Tensor:
        total = sum(F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
                    if p.shape[-2:] != (h, w) else p for p in levels)
        return total[0, 0] * soft

    for it in range(cfg.iters):
        if cancel is not None and cancel():
            raise Cancelled("Reconstruction cancelled.")
        opt.zero_grad(set_to_none=True)
        d = disp_mm()
        resid = albedo * shade(detailed_normals(frames, d * 1e-3, cfg.size), sh) - color
        data = (torch.log1p((resid * resid).sum(-1) / c2) * obs).sum() / n_obs
        smooth = ((_laplacian(d) / texel_mm ** 2) ** 2 * regf).sum() / n_reg
        low = F.interpolate((d * regf)[None, None], size=low_hw, mode="bilinear",
                            antialias=True, align_corners=False)
        lowpass = (low * low).sum() / (low_scale ** 2 * n_reg)
        mag = (d * d * regf).sum() / n_reg
        sym = (((d - d.reshape(-1)[mirror_flat].reshape(h, w)) ** 2) * has_mirror).sum() / n_sym
        loss = (data + cfg.w_smooth * smooth + cfg.w_lowpass * lowpass + cfg.w_mag * mag
                + cfg.w_sym * sym)
        loss.backward()
        opt.step()
        if report is not None and (it % 10 == 0 or it == cfg.iters - 1):
            report((it + 1) / cfg.iters, f"shape from shading {it + 1}/{cfg.iters}")
    with torch.no_grad():
        return disp_mm() * 1e-3


def detail_region(assets: str | Path, size: int) -> np.ndarray:
    """(size, size) bool UV texels where detail is recovered."""
    return region_mask(assets, DETAIL_REGIONS, size) & ~region_mask(assets, DETAIL_EXCLUDE, size)


@dataclass
class DetailResult:
    """Displacement and what the benchmark and result.json report.

    Attributes:
        displacement: (R, R) metres along the normal.
        frames: texel frames of the fitted head at R x R.
        albedo: (R, R, 3) the low-pass albedo used by the fit.
        pixels: image pixels of the region's skin texels (the data; for the image-space error).
        error_coarse, error_detail: mean absolute colour error (0..1 units) of the
            re-rendered head (``albedo * shading``, coarse / detailed normals) against the
            photo over ``pixels``.
    """

    displacement: torch.Tensor
    frames: TexelFrames
    albedo: torch.Tensor
    pixels: FacePixels
    error_coarse: float
    error_detail: float


def recover_displacement(verts_view: torch.Tensor, faces: torch.Tensor, template: np.ndarray,
                         layout: UVLayout, assets: str | Path, camera: Camera,
                         image: torch.Tensor, sh: torch.Tensor, cfg: DetailConfig,
                         report: Report | None = None,
                         cancel: Callable[[], bool] | None = None,
                         pixel_mask: torch.Tensor | None = None) -> DetailResult:
    """Shape-from-shading on a fitted head (the core of the detail stage; writes nothing).

    Args:
        verts_view: (V, 3) fitted view-frame vertices; faces: (F, 3) long.
        template: (V, 3) FLAME template (for the mirror map).
        layout: UV layout; assets: assets folder (region masks); camera: camera of ``image``.
        image: (H, W, 3) float photo in [0, 1]; sh: (1, 9, 3) fitted lighting.
        pixel_mask: optional (H, W) bool photo pixels that may be used (skin; hair and the
            rest of ``Segmentation.skin_mask``'s exclusions never shape the displacement).
    Returns:
        DetailResult.
    """
    dev, dt = verts_view.device, image.dtype
    R = cfg.size
    verts_view = verts_view.detach().to(dt)
    sh = sh.detach().to(dev, dt)
    region = torch.from_numpy(detail_region(assets, R)).to(dev)
    mirror = torch.from_numpy(mirror_map(template, faces.cpu().numpy(), layout, R)).to(dev)
    frames = texel_frames(verts_view, faces, layout, R)
    pix = visible_pixels(verts_view, faces, layout, camera, image)
    keep = region.reshape(-1)[texel_of(pix.uv, R)] & (pix.facing > cfg.min_facing_cos)
    if pixel_mask is not None:
        keep &= pixel_mask.to(dev)[pix.rows, pix.cols]
    pix = pix.subset(keep)
    color, weight = splat(pix, R)
    seen = (weight > 0.5) & ~torch.from_numpy(region_mask(assets, DATA_EXCLUDE, R)).to(dev)
    texel_mm = float(torch.median(frames.len_u[region])) * 1000.0 / R if bool(region.any()) else 1.0
    with torch.no_grad():
        shading0 = shade(frames.normal, sh)
        ratio = color / shading0.clamp(min=0.05)
        core = torch.from_numpy(region_mask(assets, SKIN_REFERENCE, R)).to(dev)
        observed = skin_texels(ratio, seen, core)
        albedo = smooth_albedo(ratio, observed, max(1, int(round(cfg.albedo_radius_mm / texel_mm))))
        pix = pix.subset(observed.reshape(-1)[texel_of(pix.uv, R)])
        err0 = float((render_pixels(pix, albedo, frames.normal, sh) - pix.color).abs().mean()) \
            if len(pix.rows) else 0.0
    if report is not None:
        report(0.0, f"{int(observed.sum())} texels seen")
    if not bool(observed.any()):
        return DetailResult(torch.zeros(R, R, device=dev, dtype=dt), frames, albedo, pix, err0, err0)
    rows, cols, mirror_crop = _crop_to(region, mirror, margin=4)
    disp = torch.zeros(R, R, device=dev, dtype=dt)
    disp[rows, cols] = fit_displacement(
        frames.crop(rows, cols), color[rows, cols], observed[rows, cols], albedo[rows, cols], sh,
        region[rows, cols], mirror_crop, texel_mm, cfg, report, cancel)
    with torch.no_grad():
        err1 = float((render_pixels(pix, albedo, detailed_normals(frames, disp), sh)
                      - pix.color).abs().mean())
    return DetailResult(disp, frames, albedo, pix, err0, err1)


def _crop_to(region: torch.Tensor, mirror: torch.Tensor,
             margin: int) -> tuple[slice, slice, torch.Tensor]:
    """The bounding window of ``region`` (plus a margin) and the mirror map inside it.

    Args:
        region: (R, R) bool, not empty; mirror: (R, R) long flat mirror index (-1 = none).
    Returns:
        row slice, column slice, and (h, w) long flat mirror index within the window (-1
        where the mirror texel lies outside it).
    """
    R = region.shape[0]
    rr, cc = region.nonzero(as_tuple=True)
    r0, r1 = max(int(rr.min()) - margin, 0), min(int(rr.max()) + margin + 1, R)
    c0, c1 = max(int(cc.min()) - margin, 0), min(int(cc.max()) + margin + 1, R)
    m = mirror[r0:r1, c0:c1]
    mr, mc = m.div(R, rounding_mode="floor") - r0, m.remainder(R) - c0
    inside = (m >= 0) & (mr >= 0) & (mr < r1 - r0) & (mc >= 0) & (mc < c1 - c0)
    local = torch.where(inside, mr * (c1 - c0) + mc, torch.full_like(m, -1))
    return slice(r0, r1), slice(c0, c1), local


# ----------------------------------------------------------------------------- files


def write_detail_maps(out_dir: Path, disp: torch.Tensor, frames: TexelFrames) -> dict[str, Any]:
    """Write displacement.npy (float32 metres), displacement.png (16-bit) and normal.png.

    Args:
        disp: (R, R) metres; frames: texel frames of the head the map was fitted on.
    Returns:
        file names, plus under "info" the ``displacement`` entry of result.json's "detail".
    """
    d = disp.detach().cpu().to(torch.float32)
    np.save(out_dir / "displacement.npy", d.numpy())
    q, scale = encode_displacement_png16(d.numpy())
    write_png16(out_dir / "displacement.png", q)
    nmap = tangent_normal_map(d, frames.len_u.cpu().float(), frames.len_v.cpu().float())
    Image.fromarray(normal_map_to_rgb8(nmap.numpy())).save(out_dir / "normal.png")
    nz = d[d != 0]
    return {
        "displacement": "displacement.npy",
        "displacement_png": "displacement.png",
        "normal": "normal.png",
        "info": {
            "size": int(d.shape[0]),
            "npy_units": "metres along the vertex normal",
            "png_scale_m": scale,
            "png_midlevel": 32768,
            "png_formula": "displacement_m = (value - 32768) * png_scale_m",
            "blender_displace": {"midlevel": 32768 / 65535, "strength": scale * 65535},
            "normal_map": "tangent space, OpenGL (+X = +U, +Y = +V), 8-bit RGB",
            "max_abs_mm": float(d.abs().max()) * 1000.0,
            "rms_mm": float(nz.pow(2).mean().sqrt()) * 1000.0 if len(nz) else 0.0,
        },
    }


def recover_detail(engine: Any, params: FitParams, rgb: np.ndarray, out_dir: str | Path,
                   progress: Callable[[str, float, str], None] | None = None,
                   cancel: Callable[[], bool] | None = None,
                   quality: str = "default", albedo: bool = True,
                   texture: np.ndarray | None = None,
                   skin_mask: np.ndarray | None = None) -> dict[str, Any]:
    """The pipeline's detail stage: displacement and normal maps, then the de-lit albedo.

    Args:
        engine: pipeline Engine (uses .flame, .model, .uv, .assets).
        params: fitted parameters (camera of ``rgb``, SH lighting).
        rgb: (H, W, 3) uint8 photo the parameters were fitted to.
        out_dir: bundle folder; progress(stage, fraction, message); cancel() -> bool.
        quality: "fast" | "default" | "best"; albedo: also write albedo.png, de-lit with
            the detailed normals; texture: the texture stage's photo texture, if computed.
        skin_mask: optional (H, W) bool photo pixels of skin (``Segmentation.skin_mask``);
            only those feed the displacement and, when sampled here, the albedo.
    Returns:
        {"displacement": "displacement.npy", "displacement_png": "displacement.png",
         "normal": "normal.png", "albedo": "albedo.png", "detail": {...}}: file names, and
        under "detail" the scales and numbers for result.json's "detail" section.
    """
    from .albedo import complete_albedo

    out = Path(out_dir)
    cfg = QUALITY_CONFIGS.get(quality, QUALITY_CONFIGS["default"])

    def report(frac: float, msg: str) -> None:
        if progress is not None:
            progress("detail", frac, msg)

    t0 = time.perf_counter()
    with torch.no_grad():
        verts = engine.flame(params.shape, params.expression, params.pose, params.translation,
                             eyelids=params.eyelids).vertices[0]
    faces = torch.from_numpy(engine.model.faces).to(verts.device)
    # A copy: the photo array is read-only, and torch.from_numpy warned about it on stderr.
    image = torch.tensor(rgb, dtype=torch.float32, device=verts.device) / 255.0
    res = recover_displacement(verts, faces, engine.model.v_template, engine.uv, engine.assets,
                               camera_for(params.camera, rgb), image, params.sh, cfg,
                               report=lambda f, m: report(0.7 * f, m), cancel=cancel,
                               pixel_mask=None if skin_mask is None
                               else torch.from_numpy(np.ascontiguousarray(skin_mask)))
    files = write_detail_maps(out, res.displacement, res.frames)
    info = files.pop("info")
    info.update({"photometric_error_coarse": res.error_coarse,
                 "photometric_error_detail": res.error_detail,
                 "seconds": round(time.perf_counter() - t0, 3)})
    detail: dict[str, Any] = {"displacement": info}
    report(0.75, "displacement written")
    if albedo:
        alb = complete_albedo(engine, params, rgb, out, displacement=res.displacement,
                              texture=texture, cancel=cancel, stage="detail",
                              skin_mask=skin_mask,
                              progress=lambda s, f, m: report(0.75 + 0.25 * f, m))
        detail.update(alb.pop("detail"))
        files.update(alb)
    report(1.0, "detail done")
    files["detail"] = json.loads(json.dumps(detail))  # plain JSON types only
    return files


def camera_for(camera: Camera, rgb: np.ndarray) -> Camera:
    """The fit's camera scaled to the pixel size of ``rgb``."""
    s = rgb.shape[1] / camera.width
    return camera.scaled(s) if abs(s - 1.0) > 1e-9 else camera
