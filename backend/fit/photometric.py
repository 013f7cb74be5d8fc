"""Photometric refinement (analysis by synthesis) after the landmark fit.

The head is rendered over a square crop around the face at a small resolution and compared
with the photo on skin pixels only (the UV ``face`` region: no eyes, mouth interior, hair,
ears or neck). Image model per pixel::

    I = albedo(uv) * sh_shading(normal, sh),  albedo = mean_texture(uv) * gain_c * exp(C(uv))

with ``mean_texture`` the assets' UV mean texture (there is no albedo model), ``gain`` a
per-channel gain and ``C`` a low-resolution (16 x 16) UV correction, bilinearly interpolated
so it stays smooth. The losses are robust, so hair, glasses or shadows that the model cannot
explain count little: the appearance solves reweight like Charbonnier (IRLS), and the geometry
term is Geman-McClure, whose pull stops growing beyond ``GM_SIGMA`` (a cast shadow must not
reshape the face); saturated photo pixels are left out. Steps:

1. appearance, for fixed geometry, in closed form: the SH lighting is the robust (IRLS)
   linear least-squares fit against the prior albedo (the mean texture); then the gain and
   ``C`` are fitted to what the lighting leaves (IRLS Gauss-Newton, L2 priors on log-gain and
   ``C``, smoothness prior on ``C``). Lighting first, so the smooth correction cannot absorb
   the shading.
2. geometry (default/best quality): Adam on small updates of identity, expression, pose and
   translation, with L2 priors on the updates and the landmark fit's own loss as an anchor
   (the shading must not pull the head off the landmarks); the appearance is re-solved every
   ``RESOLVE_EVERY`` iterations.

Gauge: albedo gain and light colour/brightness are interchangeable per channel. The result
is reported with the light scaled so that the mean shading over the skin pixels is 1 in each
channel, so the skin's colour and brightness are in the albedo. (The constant SH term alone
would be a poor gauge: with normals mostly facing the camera it trades off against the
z term.)
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..model.assets import asset_path
from ..determinism import deterministic
from ..errors import BadInputError, Cancelled, ModelFileError
from ..model.flame import FLAME
from ..options import CancelFn, ProgressFn
from ..model.params import Camera, FitParams
from .render import rasterize, sh_basis, sh_shading, vertex_normals
from ..model.uv import UVLayout

MEAN_TEXTURE_RELPATH = "uv/mean_texture.jpg"
SKIN_MASK_MIN = 0.99  # a crop pixel is used when its resampled skin-mask value exceeds this
UV_MASKS_RELPATH = "masks/flame_uv_masks_2048.npz"
VERTEX_MASKS_RELPATH = "masks/flame_vertex_masks.npz"
STAGE = "fit_photometric"


@dataclass(frozen=True)
class Settings:
    """Per-quality settings: render size (square crop side, px), appearance solve rounds,
    geometry iterations."""

    size: int
    rounds: int
    iters_geometry: int


QUALITY_SETTINGS: dict[str, Settings] = {
    "fast": Settings(size=192, rounds=6, iters_geometry=0),
    "default": Settings(size=256, rounds=8, iters_geometry=120),
    "best": Settings(size=320, rounds=10, iters_geometry=250),
}
CROP_MARGIN = 1.25  # crop side = margin x the larger side of the face-vertex bounding box
CORRECTION_RES = 16  # side of the low-resolution UV albedo correction grid
CHARBONNIER_EPS = 0.01
# Regularisation weights (the photometric term is a mean colour error in [0, 1] units).
W_GAIN, W_CORR, W_CORR_SMOOTH = 1e-3, 5.0, 0.5
W_SHAPE, W_EXPR, W_POSE, W_TRANS = 1e-4, 1e-4, 0.05, 10.0
# Tuned together on 8 synthetic heads (face-region error, benchmarks/bench_reconstruct.py) and the
# AFLW2000-3D images (NME): a landmark anchor of 300 held the shape at the landmark fit (2.27 ->
# 2.22 mm); 20 lets the shading move it (1.68 mm) without the pose drifting on real photos
# (NME 5.50 -> 5.29 %); a stiffer albedo correction (5 instead of 0.05) keeps the correction
# from absorbing shading that the geometry should explain.
W_LANDMARKS = 20.0
# The geometry's photo term is Geman-McClure, s r^2 / (r^2 + sigma^2) per pixel (r: RGB residual
# norm): it stops growing beyond ~sigma, so cast shadows, specular highlights and make-up, which
# the SH model cannot explain, no longer pull the shape (Charbonnier, ~|r|, kept pulling). On the
# 8 AFLW2000-3D images the stage now improves the landmark fit instead of worsening it: NME
# landmark fit 3.33 % -> 3.24 % after this stage (Charbonnier: -> 3.41 %; image03614, hard
# sunlight, 3.72 -> 3.61 instead of -> 4.22); synthetic heads: median face-region error 1.30 ->
# 1.18 mm (benchmarks/bench_reconstruct.py). With sigma 0.03-0.1, s 0.05-0.1 and a landmark
# refit after this stage, NME was 3.32-3.33 %; s = 0.1 kept the most synthetic gain.
GM_SIGMA, GM_SCALE = 0.05, 0.1
LR_COEFF, LR_POSE, LR_TRANS = 0.03, 0.002, 0.0005  # Adam step sizes of the geometry updates
RESOLVE_EVERY = 10  # geometry iterations between appearance re-solves
RIDGE = 1e-3  # ridge on the non-constant SH terms (relative to the normal matrix's scale)
MIN_SKIN_PIXELS = 50
ALBEDO_STEPS = 3  # Gauss-Newton steps of the albedo gain and correction
SATURATED = 0.985  # photo pixels with a channel above this are not used


@dataclass
class PhotometricResult:
    """Output of :func:`fit_photometric`.

    Attributes:
        params: refined FitParams (detached) with ``sh`` (1, 9, 3), mean skin shading 1.
        albedo_uv: (Ht, Wt, 3) float32 albedo in [0, 1], UV image order (row 0 = top, v = 1).
        rendered: (S, S, 3) float32 render of the final fit over the face crop.
        mask: (S, S) bool skin pixels the photometric term used (final state).
        crop_camera: camera of the crop (``rendered`` / ``mask`` pixels).
        photo_error: (initial, final) mean absolute colour error over the skin pixels, [0, 1]
            units; initial is measured with the incoming lighting, mean-texture albedo.
        timings: seconds per step ("setup", "lighting", "geometry").
    """

    params: FitParams
    albedo_uv: np.ndarray
    rendered: np.ndarray
    mask: np.ndarray
    crop_camera: Camera
    photo_error: tuple[float, float]
    timings: dict[str, float]


@functools.lru_cache(maxsize=4)
def _load_priors(assets: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Ht, Wt, 3) float32 mean texture, (Ht, Wt) bool UV skin mask, (K,) face vertex ids."""
    try:
        tex = np.asarray(Image.open(asset_path(MEAN_TEXTURE_RELPATH, assets)).convert("RGB"),
                         np.float32) / 255.0
        with np.load(asset_path(UV_MASKS_RELPATH, assets)) as masks:
            face = masks["face"]
        with np.load(asset_path(VERTEX_MASKS_RELPATH, assets)) as vmasks:
            face_vids = vmasks["face"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"Photometric fitting assets cannot be read ({exc}).") from None
    step = face.shape[0] // tex.shape[0]
    skin = face[step // 2::step, step // 2::step][: tex.shape[0], : tex.shape[1]]
    return tex, np.ascontiguousarray(skin), face_vids


def _project(points: torch.Tensor, cam: Camera) -> torch.Tensor:
    """(N, 3) view-frame points -> (N, 2) pixels."""
    z = (-points[:, 2]).clamp_min(1e-6)
    return torch.stack([cam.cx + cam.focal * points[:, 0] / z, cam.cy - cam.focal * points[:, 1] / z], 1)


def face_crop_camera(face_points: torch.Tensor, cam: Camera, size: int) -> tuple[Camera, float, float, float]:
    """Square crop around the projected face, as a camera of a size x size image.

    Args:
        face_points: (K, 3) view-frame face vertices.
    Returns:
        crop camera, and the crop's left, top and side in photo pixels.
    """
    uv = _project(face_points, cam)
    lo, hi = uv.min(0).values, uv.max(0).values
    centre = (lo + hi) / 2
    side = float((hi - lo).max()) * CROP_MARGIN
    if not np.isfinite(side) or side < 4.0:
        raise BadInputError("The fitted face is too small in the photo for photometric fitting.")
    x0, y0 = float(centre[0]) - side / 2, float(centre[1]) - side / 2
    s = size / side
    crop = Camera(focal=cam.focal * s, cx=(cam.cx - x0) * s, cy=(cam.cy - y0) * s, width=size, height=size)
    return crop, x0, y0, side


def crop_image(image: torch.Tensor, x0: float, y0: float, side: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample a square photo region to size x size (antialiased), with a validity mask.

    Args:
        image: (H, W, 3) float in [0, 1].
    Returns:
        (size, size, 3) crop, (size, size) bool: pixel centre inside the photo.
    """
    H, W = image.shape[:2]
    scale = size / side
    img = image.permute(2, 0, 1)[None]
    if scale < 1.0:  # pre-filter, then sample
        img = F.interpolate(img, size=(max(1, round(H * scale)), max(1, round(W * scale))),
                            mode="bilinear", antialias=True, align_corners=False)
    centres = (torch.arange(size, device=image.device, dtype=image.dtype) + 0.5) / scale
    xs, ys = x0 + centres, y0 + centres  # photo pixel coordinates of the crop pixel centres
    gx = xs / W * 2 - 1
    gy = ys / H * 2 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    valid = ((xs >= 0) & (xs < W))[None, :] & ((ys >= 0) & (ys < H))[:, None]
    return out[0].permute(1, 2, 0), valid


def _sample_uv(tex: torch.Tensor, uv: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample a UV image (C, Ht, Wt) (row 0 = v 1) at uv (..., 2) -> (..., C), border-clamped."""
    shape = uv.shape[:-1]
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1).reshape(1, -1, 1, 2)
    out = F.grid_sample(tex[None], grid.to(tex.dtype), mode=mode, padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T.reshape(*shape, tex.shape[0])


def _bilinear_weights(uv: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 grid cells and weights :func:`_sample_uv` blends for a res x res UV grid.

    Args:
        uv: (N, 2).
    Returns:
        (N, 4) long flat cell indices (row * res + col), (N, 4) weights summing to 1.
    """
    x = (uv[:, 0] * res - 0.5).clamp(0, res - 1)
    y = ((1 - uv[:, 1]) * res - 0.5).clamp(0, res - 1)
    x0, y0 = x.floor().long().clamp(max=res - 2), y.floor().long().clamp(max=res - 2)
    fx, fy = x - x0, y - y0
    idx = torch.stack([y0 * res + x0, y0 * res + x0 + 1, (y0 + 1) * res + x0, (y0 + 1) * res + x0 + 1], 1)
    w = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    return idx, w


def _geman_mcclure(r2: torch.Tensor, sigma: float) -> torch.Tensor:
    """Bounded robust loss of squared residuals ``r2`` (any shape): r2 / (r2 + sigma^2)."""
    return r2 / (r2 + sigma * sigma)


def _irls_weights(residual: torch.Tensor) -> torch.Tensor:
    """Weights that make weighted least squares match the Charbonnier loss locally."""
    return 1.0 / torch.sqrt(residual * residual + CHARBONNIER_EPS ** 2)


class _Albedo:
    """albedo(uv) = mean_texture(uv) * exp(log_gain_c + C_c(uv)), C bilinear on a coarse grid.

    Attributes:
        mean_tex: (3, Ht, Wt) prior texture; log_gain: (3,); corr: (3, R, R) with R =
            CORRECTION_RES, cells centred like texels (bilinear, border-clamped).
    """

    def __init__(self, mean_tex: torch.Tensor):
        self.mean_tex = mean_tex
        dev = mean_tex.device
        self.log_gain = torch.zeros(3, device=dev)
        self.corr = torch.zeros(3, CORRECTION_RES, CORRECTION_RES, device=dev)
        self._prior = _correction_prior(CORRECTION_RES).to(dev)

    def reset(self) -> None:
        """Back to the prior: gain 1, no correction."""
        self.log_gain.zero_()
        self.corr.zero_()

    def at(self, uv: torch.Tensor) -> torch.Tensor:
        """(..., 3) albedo at uv (..., 2), differentiable w.r.t. uv."""
        log_scale = _sample_uv(self.corr, uv) + self.log_gain
        return _sample_uv(self.mean_tex, uv) * torch.exp(log_scale)

    def texture(self) -> torch.Tensor:
        """(3, Ht, Wt) albedo texture (the same bilinear correction at texel centres)."""
        up = F.interpolate(self.corr[None], size=self.mean_tex.shape[1:], mode="bilinear",
                           align_corners=False)[0]
        return self.mean_tex * torch.exp(self.log_gain[:, None, None] + up)

    def gauss_newton_step(self, uv: torch.Tensor, shading: torch.Tensor, target: torch.Tensor) -> None:
        """One IRLS Gauss-Newton step on (log_gain, C) for fixed geometry and lighting.

        Args:
            uv: (N, 2), shading: (N, 3), target: (N, 3) at the skin pixels.
        """
        n_cells = CORRECTION_RES * CORRECTION_RES
        idx, w = _bilinear_weights(uv, CORRECTION_RES)
        pred = self.at(uv) * shading  # (N, 3)
        cols = torch.cat([torch.zeros_like(idx[:, :1]), idx + 1], 1)  # unknown 0 = log gain
        vals = torch.cat([torch.ones_like(w[:, :1]), w], 1)  # (N, 5)
        pair = (cols[:, :, None] * (n_cells + 1) + cols[:, None, :]).reshape(-1)
        n = target.shape[0]
        for ch in range(3):
            r = (target[:, ch] - pred[:, ch]).double()
            omega = _irls_weights(r) / n
            jac = pred[:, ch:ch + 1].double() * vals.double()  # (N, 5) d pred / d unknowns
            jtj = torch.zeros((n_cells + 1) ** 2, dtype=torch.float64, device=uv.device)
            jtj.index_add_(0, pair, (omega[:, None, None] * jac[:, :, None] * jac[:, None, :]).reshape(-1))
            jtr = torch.zeros(n_cells + 1, dtype=torch.float64, device=uv.device)
            jtr.index_add_(0, cols.reshape(-1), (omega[:, None] * jac * r[:, None]).reshape(-1))
            x = torch.cat([self.log_gain[ch:ch + 1], self.corr[ch].reshape(-1)]).double()
            lhs = jtj.reshape(n_cells + 1, n_cells + 1) + self._prior
            step = torch.linalg.solve(lhs, jtr - self._prior @ x)
            x = (x + step).float()
            self.log_gain[ch] = x[0]
            self.corr[ch] = x[1:].reshape(CORRECTION_RES, CORRECTION_RES)


def _correction_prior(res: int) -> torch.Tensor:
    """(res^2 + 1)^2 float64 prior matrix on (log_gain, C): W_GAIN, W_CORR I + W_CORR_SMOOTH D^T D."""
    n = res * res
    grid = torch.arange(n).reshape(res, res)
    rows = []
    for a, b in ((grid[:, 1:], grid[:, :-1]), (grid[1:, :], grid[:-1, :])):
        d = torch.zeros(a.numel(), n, dtype=torch.float64)
        k = torch.arange(a.numel())
        d[k, a.reshape(-1)] = 1.0
        d[k, b.reshape(-1)] = -1.0
        rows.append(d)
    diff = torch.cat(rows)
    prior = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    prior[0, 0] = W_GAIN
    prior[1:, 1:] = W_CORR / n * torch.eye(n, dtype=torch.float64) + W_CORR_SMOOTH / len(diff) * diff.T @ diff
    return prior


class _Scene:
    """Renders the FLAME head with an albedo and SH lighting over the face crop."""

    def __init__(self, flame: FLAME, layout: UVLayout, cam: Camera, skin_uv: torch.Tensor):
        self.flame = flame
        self.faces = flame.faces.long()
        self.cam = cam
        self.face_uvs = torch.from_numpy(layout.face_uvs()).to(flame.v_template.device)
        self.skin_uv = skin_uv  # (1, Ht, Wt) float

    def geometry(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The M pixels the head covers: flat pixel index "pix" (M,), "uv" (M, 2), unit
        "normal" (M, 3) (differentiable w.r.t. the parameters) and "skin" (M,) bool."""
        eyelids = p["eyelids"] if self.flame.eyelid_deltas is not None else None
        verts = self.flame(p["shape"], p["expression"], p["pose"], p["translation"], eyelids=eyelids).vertices
        c = self.cam
        frags = rasterize(verts, self.faces, c.focal, c.cx, c.cy, c.height, c.width)
        pix = frags.mask[0].reshape(-1).nonzero()[:, 0]
        face = frags.face_idx[0].reshape(-1)[pix]
        bary = frags.bary[0].reshape(-1, 3)[pix, :, None]  # (M, 3, 1)
        uv = (self.face_uvs[face] * bary).sum(1)
        vn = vertex_normals(verts, self.faces)[0]
        normal = F.normalize((vn[self.faces[face]] * bary).sum(1), dim=-1)
        skin = _sample_uv(self.skin_uv, uv.detach(), mode="nearest")[:, 0] > 0.5
        return {"pix": pix, "uv": uv, "normal": normal, "skin": skin}


def _solve_sh(normal: torch.Tensor, albedo: torch.Tensor, target: torch.Tensor,
              omega: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted least-squares SH for fixed geometry and albedo: min sum w (a_c B.s_c - I_c)^2.

    Args:
        normal, albedo, target: (N, 3) at the skin pixels; omega: (N, 3) weights or None.
    Returns:
        (1, 9, 3).
    """
    basis = sh_basis(normal).double()  # (N, 9)
    out = []
    for ch in range(3):
        a = basis * albedo[:, ch:ch + 1].double()
        wa = a if omega is None else a * omega[:, ch:ch + 1].double()
        ata = wa.T @ a
        ridge = torch.full((9,), RIDGE, dtype=ata.dtype, device=ata.device)
        ridge[0] = 1e-6  # the constant term is well determined; keep it unbiased
        out.append(torch.linalg.solve(ata + torch.diag(ridge * ata.diagonal().mean()),
                                      wa.T @ target[:, ch].double()))
    return torch.stack(out, 1)[None].to(target.dtype)


def _solve_appearance(uv: torch.Tensor, normal: torch.Tensor, tgt: torch.Tensor, albedo: _Albedo,
                      rounds: int) -> torch.Tensor:
    """Lighting, then albedo, for fixed geometry (both robust, IRLS).

    The SH lighting is solved against the prior albedo (the mean texture), so it explains as
    much of the image as lighting can; the albedo gain and correction are then fitted to what
    remains. Done the other way round, the smooth correction would absorb the shading.

    Args:
        uv (N, 2), normal (N, 3), tgt (N, 3): the skin pixels.
    Returns:
        sh (1, 9, 3); ``albedo`` is refitted in place.
    """
    prior = _sample_uv(albedo.mean_tex, uv)
    omega = None
    for _ in range(rounds):
        sh = _solve_sh(normal, prior, tgt, omega)
        omega = _irls_weights(tgt - prior * sh_shading(normal[None, None], sh)[0, 0])
    shading = sh_shading(normal[None, None], sh)[0, 0]
    albedo.reset()
    for _ in range(ALBEDO_STEPS):
        albedo.gauss_newton_step(uv, shading, tgt)
    return sh


def _unit_shading_gauge(sh: torch.Tensor, log_gain: torch.Tensor,
                        normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale each channel so the mean shading over ``normals`` is 1, the factor going into
    the albedo gain (the rendered image is unchanged).

    Args:
        sh: (1, 9, 3); log_gain: (3,); normals: (N, 3) skin normals.
    Returns:
        sh (1, 9, 3), log_gain (3,).
    """
    mean = sh_shading(normals[None, None], sh)[0, 0].mean(0)  # (3,)
    k = torch.where(mean > 1e-6, 1.0 / mean.clamp_min(1e-6), torch.ones_like(mean))
    return sh * k, log_gain - torch.log(k)


@deterministic()
def fit_photometric(flame: FLAME, params: FitParams, image: torch.Tensor | np.ndarray, layout: UVLayout,
                    landmark_loss: Callable[[FitParams], torch.Tensor] | None, quality: str,
                    assets_dir: str | os.PathLike[str], progress: ProgressFn | None = None,
                    cancel: CancelFn | None = None,
                    pixel_mask: torch.Tensor | np.ndarray | None = None) -> PhotometricResult:
    """Refine lighting, albedo and (slightly) geometry against the photo.

    Args:
        flame: FLAME layer (with faces) on the working device.
        params: landmark-fit parameters (batch 1); its camera belongs to ``image``.
        image: (H, W, 3) float in [0, 1] (or uint8), torch or numpy, the camera belongs to.
        layout: FLAME UV layout (faces in FLAME order).
        landmark_loss: the landmark fit's data term ``f(params) -> scalar``, kept low while the
            geometry moves; None = geometry anchored by the priors only.
        quality: "fast" (lighting and albedo only), "default" or "best".
        assets_dir: assets folder (mean texture, UV and vertex masks).
        progress: ``progress(stage, fraction, message)``; cancel: ``cancel() -> bool``, checked
            every iteration (raises Cancelled).
        pixel_mask: optional (H, W) bool photo pixels the photo loss may use (skin, from
            ``Segmentation.skin_mask``): hair, glasses and clothing stay out of the fit.
    Returns:
        PhotometricResult.
    """
    if quality not in QUALITY_SETTINGS:
        raise ValueError(f"quality must be one of {', '.join(QUALITY_SETTINGS)}")
    settings = QUALITY_SETTINGS[quality]
    t_start = time.perf_counter()
    device = flame.v_template.device
    img = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if img.ndim != 3 or img.shape[2] != 3:
        raise BadInputError("The photo must be an (H, W, 3) image.")
    scale = 1.0 / 255.0 if img.dtype == torch.uint8 else 1.0  # accept 8-bit photos as well
    img = img.to(device=device, dtype=torch.float32) * scale
    cam = params.camera
    if abs(img.shape[1] / cam.width - img.shape[0] / cam.height) > 0.02:
        raise BadInputError("The photo and the camera have different aspect ratios.")
    cam = cam.scaled(img.shape[1] / cam.width) if img.shape[1] != cam.width else cam

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(STAGE, fraction, message)

    def check() -> None:
        if cancel is not None and cancel():
            raise Cancelled("Reconstruction cancelled.")

    tex_np, skin_np, face_vids = _load_priors(str(Path(assets_dir).resolve()))
    mean_tex = torch.from_numpy(tex_np).permute(2, 0, 1).contiguous().to(device)
    skin_uv = torch.from_numpy(skin_np.astype(np.float32))[None].to(device)
    start = params.detached()
    p0 = {"shape": start.shape, "expression": start.expression, "pose": start.pose,
          "translation": start.translation, "eyelids": start.eyelids}
    p0 = {k: v.to(device) for k, v in p0.items()}
    with torch.no_grad():
        eyelids = p0["eyelids"] if flame.eyelid_deltas is not None else None
        verts0 = flame(p0["shape"], p0["expression"], p0["pose"], p0["translation"], eyelids=eyelids).vertices[0]
        crop_cam, x0, y0, side = face_crop_camera(verts0[torch.from_numpy(face_vids).to(device)], cam,
                                                  settings.size)
        target, valid = crop_image(img, x0, y0, side, settings.size)
        valid &= target.max(-1).values < SATURATED  # clipped highlights carry no shading
        if pixel_mask is not None:  # crop pixels wholly inside the skin mask
            m = pixel_mask.to(device=device, dtype=torch.float32) if isinstance(
                pixel_mask, torch.Tensor) else torch.tensor(
                np.asarray(pixel_mask), dtype=torch.float32, device=device)
            if m.shape != img.shape[:2]:
                raise ValueError("pixel_mask must have the photo's (H, W).")
            valid &= crop_image(m[..., None].expand(-1, -1, 3), x0, y0, side,
                                settings.size)[0][..., 0] > SKIN_MASK_MIN
        target, valid = target.reshape(-1, 3), valid.reshape(-1)
    scene = _Scene(flame, layout, crop_cam, skin_uv)
    albedo = _Albedo(mean_tex)
    timings = {"setup": time.perf_counter() - t_start}
    report(0.05, "lighting")

    # ---- step 1: lighting, then albedo, on the landmark geometry (closed form)
    t0 = time.perf_counter()
    with torch.no_grad():
        geo = scene.geometry(p0)
        uv, normal, tgt = _skin(geo, target, valid)
        if len(tgt) < MIN_SKIN_PIXELS:
            raise BadInputError("Too little skin of the fitted face is visible for photometric fitting.")
        err0 = _photo_error(uv, normal, tgt, albedo, start.sh.to(device))
        check()
        sh = _solve_appearance(uv, normal, tgt, albedo, settings.rounds)
    timings["lighting"] = time.perf_counter() - t0
    report(0.2, "geometry")

    # ---- step 2: geometry (Adam), anchored by the landmarks and priors; appearance re-solved
    t0 = time.perf_counter()
    deltas = {k: torch.zeros_like(p0[k], requires_grad=True) for k in ("shape", "expression", "pose", "translation")}
    n_iter = settings.iters_geometry
    if n_iter > 0:
        opt = torch.optim.Adam([
            {"params": [deltas["shape"], deltas["expression"]], "lr": LR_COEFF},
            {"params": [deltas["pose"]], "lr": LR_POSE},
            {"params": [deltas["translation"]], "lr": LR_TRANS}])
    for it in range(n_iter):
        check()
        p = dict(p0, **{k: p0[k] + d for k, d in deltas.items()})
        uv, normal, tgt = _skin(scene.geometry(p), target, valid)
        if it > 0 and it % RESOLVE_EVERY == 0:
            with torch.no_grad():
                sh = _solve_appearance(uv.detach(), normal.detach(), tgt, albedo, settings.rounds)
        pred = albedo.at(uv) * sh_shading(normal[None, None], sh)[0, 0]
        loss = GM_SCALE * _geman_mcclure((pred - tgt).square().sum(-1), GM_SIGMA).mean()
        loss = loss + (W_SHAPE * deltas["shape"].square().sum() + W_EXPR * deltas["expression"].square().sum()
                       + W_POSE * deltas["pose"].square().sum() + W_TRANS * deltas["translation"].square().sum())
        if landmark_loss is not None:
            loss = loss + W_LANDMARKS * landmark_loss(_to_params(p, sh, params.camera))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 10 == 0:
            report(0.2 + 0.75 * it / n_iter, f"geometry {it}/{n_iter}")
    timings["geometry"] = time.perf_counter() - t0

    with torch.no_grad():
        p = {k: (p0[k] + deltas[k]) if k in deltas else p0[k] for k in p0}
        if n_iter > 0:
            geo = scene.geometry(p)
            uv, normal, tgt = _skin(geo, target, valid)
            sh = _solve_appearance(uv, normal, tgt, albedo, settings.rounds)
        err1 = _photo_error(uv, normal, tgt, albedo, sh)
        sh, albedo.log_gain = _unit_shading_gauge(sh, albedo.log_gain, normal)
        size = settings.size
        rendered = torch.zeros(size * size, 3, device=device)
        rendered[geo["pix"]] = albedo.at(geo["uv"]) * sh_shading(geo["normal"][None, None], sh)[0, 0]
        mask = torch.zeros(size * size, dtype=torch.bool, device=device)
        mask[geo["pix"]] = geo["skin"] & valid[geo["pix"]]
        albedo_uv = albedo.texture().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)
    report(1.0, f"photometric error {err0:.3f} -> {err1:.3f}")
    return PhotometricResult(params=_to_params(p, sh, params.camera).detached(), albedo_uv=albedo_uv,
                             rendered=rendered.clamp(0, 1).reshape(size, size, 3).cpu().numpy(),
                             mask=mask.reshape(size, size).cpu().numpy(), crop_camera=crop_cam,
                             photo_error=(err0, err1),
                             timings={k: round(v, 3) for k, v in timings.items()})


def _skin(geo: dict[str, torch.Tensor], target: torch.Tensor,
          valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uv (N, 2), normal (N, 3) and photo colour (N, 3) of the usable skin pixels.

    Args:
        geo: from ``_Scene.geometry``; target: (S*S, 3) photo crop; valid: (S*S,) bool.
    """
    keep = geo["skin"] & valid[geo["pix"]]
    return geo["uv"][keep], geo["normal"][keep], target[geo["pix"][keep]]


def _photo_error(uv: torch.Tensor, normal: torch.Tensor, tgt: torch.Tensor, albedo: _Albedo,
                 sh: torch.Tensor) -> float:
    """Mean absolute colour error over the skin pixels (uv (N, 2), normal (N, 3), tgt (N, 3))."""
    pred = albedo.at(uv) * sh_shading(normal[None, None], sh)[0, 0]
    return float((pred - tgt).abs().mean())


def _to_params(p: dict[str, torch.Tensor], sh: torch.Tensor, camera: Camera) -> FitParams:
    return FitParams(shape=p["shape"], expression=p["expression"], pose=p["pose"],
                     translation=p["translation"], camera=camera, sh=sh, eyelids=p["eyelids"])
