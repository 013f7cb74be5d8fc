"""UV-space helpers for the detail and albedo stages.

Texture images here are in image order: texel ``(i, j)`` of an ``R x R`` map has its centre
at ``u = (j + 0.5) / R``, ``v = 1 - (i + 0.5) / R`` (row 0 is the top, ``v`` near 1), as in
the FLAME UV layout of ``uv/head_template.obj`` and the region masks of
``masks/flame_uv_masks_2048.npz``.

Contents: per-texel interpolation and tangent frames, the left-right mirror texel map,
region masks, seamless hole filling (pull-push), tangent-space normal maps (OpenGL
convention: red = +U, green = +V) and 16-bit PNG writing.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.spatial import cKDTree

from ..errors import ModelFileError
from ..fit.render import vertex_normals
from ..model.uv import UVLayout, uv_rasterize

UV_MASKS_RELPATH = "masks/flame_uv_masks_2048.npz"


# ----------------------------------------------------------------------------- interpolation


def texel_interpolate(corner_attr: torch.Tensor, face: torch.Tensor,
                      bary: torch.Tensor) -> torch.Tensor:
    """Interpolate per-face-corner attributes at texels (or any points with face + barycentrics).

    Args:
        corner_attr: (F, 3, C) attribute per face corner (e.g. ``verts[faces]``).
        face: (...) long face index, -1 = empty.
        bary: (..., 3) barycentrics.
    Returns:
        (..., C); 0 where ``face`` is -1.
    """
    corners = corner_attr[face.clamp(min=0)]  # (..., 3, C)
    out = (corners * bary[..., None].to(corner_attr.dtype)).sum(-2)
    return out * (face >= 0)[..., None].to(out.dtype)


def uv_derivatives(verts: torch.Tensor, faces: torch.Tensor, uv: torch.Tensor,
                   uv_faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface derivatives dP/du and dP/dv per UV vertex (area-weighted mean over its faces).

    Args:
        verts: (V, 3) positions in metres; faces: (F, 3) long.
        uv: (T, 2) UV coordinates; uv_faces: (F, 3) long indices into ``uv``.
    Returns:
        dpdu (T, 3), dpdv (T, 3), metres per unit of u and v.
    """
    tri = verts[faces]  # (F, 3, 3)
    tuv = uv[uv_faces].to(verts.dtype)  # (F, 3, 2)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    d1, d2 = tuv[:, 1] - tuv[:, 0], tuv[:, 2] - tuv[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
    dpdu = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) / det[:, None]
    dpdv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) / det[:, None]
    area = torch.linalg.cross(e1, e2, dim=-1).norm(dim=-1, keepdim=True)
    n_uv = uv.shape[0]
    out_u = verts.new_zeros(n_uv, 3)
    out_v = verts.new_zeros(n_uv, 3)
    wsum = verts.new_zeros(n_uv, 1)
    for k in range(3):
        out_u = out_u.index_add(0, uv_faces[:, k], dpdu * area)
        out_v = out_v.index_add(0, uv_faces[:, k], dpdv * area)
        wsum = wsum.index_add(0, uv_faces[:, k], area)
    wsum = wsum.clamp(min=1e-20)
    return out_u / wsum, out_v / wsum


def tangent_frame(normal: torch.Tensor, dpdu: torch.Tensor,
                  dpdv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthonormal tangent frame in the MikkTSpace style (bitangent = sign * normal x tangent).

    Args:
        normal: (..., 3) unit normals; dpdu, dpdv: (..., 3) interpolated surface derivatives.
    Returns:
        tangent (..., 3) unit, along +U; bitangent (..., 3) unit, along +V;
        len_u (...), len_v (...): metres per unit of u and v along the surface.
    """
    t = dpdu - (dpdu * normal).sum(-1, keepdim=True) * normal
    len_u = t.norm(dim=-1)
    t = t / len_u.clamp(min=1e-12)[..., None]
    b = torch.linalg.cross(normal, t, dim=-1)
    sign = torch.where((b * dpdv).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(b.dtype)
    b = b * sign
    len_v = (dpdv * b).sum(-1).abs()
    return t, b, len_u.clamp(min=1e-9), len_v.clamp(min=1e-9)


@dataclass
class TexelFrames:
    """Surface point and tangent frame at every texel centre of an R x R UV map.

    Attributes:
        covered: (R, R) bool, a face covers the texel.
        points: (R, R, 3) surface points.
        normal, tangent, bitangent: (R, R, 3) unit frame (tangent along +U, bitangent +V).
        len_u, len_v: (R, R) metres per unit of u and v.
    """

    covered: torch.Tensor
    points: torch.Tensor
    normal: torch.Tensor
    tangent: torch.Tensor
    bitangent: torch.Tensor
    len_u: torch.Tensor
    len_v: torch.Tensor

    def crop(self, rows: slice, cols: slice) -> "TexelFrames":
        """The frames of a rectangular window of texels."""
        return TexelFrames(*(getattr(self, k)[rows, cols] for k in (
            "covered", "points", "normal", "tangent", "bitangent", "len_u", "len_v")))


def texel_frames(verts: torch.Tensor, faces: torch.Tensor, layout: UVLayout,
                 size: int) -> TexelFrames:
    """Per-texel points and frames of a posed head (normals: area-weighted vertex normals).

    Args:
        verts: (V, 3) vertices; faces: (F, 3) long (same device); layout: its UV layout.
    Returns:
        TexelFrames at ``size x size`` on the device of ``verts``.
    """
    raster = uv_rasterize(layout, size)
    dev, dt = verts.device, verts.dtype
    face = torch.from_numpy(raster.face_idx).to(dev)
    bary = torch.from_numpy(raster.bary).to(dev, dt)
    uv_t = torch.from_numpy(layout.uv).to(dev, dt)
    uv_faces = torch.from_numpy(layout.uv_faces).to(dev)
    vn = vertex_normals(verts[None], faces)[0]
    normal = F.normalize(texel_interpolate(vn[faces], face, bary), dim=-1, eps=1e-12)
    dpdu, dpdv = uv_derivatives(verts, faces, uv_t, uv_faces)
    tangent, bitangent, len_u, len_v = tangent_frame(
        normal, texel_interpolate(dpdu[uv_faces], face, bary),
        texel_interpolate(dpdv[uv_faces], face, bary))
    return TexelFrames(covered=face >= 0, points=texel_interpolate(verts[faces], face, bary),
                       normal=normal, tangent=tangent, bitangent=bitangent,
                       len_u=len_u, len_v=len_v)


# ----------------------------------------------------------------------------- displacement


def uv_gradient(disp: torch.Tensor, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of a UV-space map with respect to u and v (edges replicated).

    Args:
        disp: (..., h, w) map in image order (row 0 = top = v near 1), a window of a
            ``size x size`` map (the whole square map when ``size`` is None).
    Returns:
        d/du (..., h, w), d/dv (..., h, w), per unit of u and v.
    """
    h, w = disp.shape[-2:]
    R = w if size is None else size
    p = F.pad(disp.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate")[:, 0]
    du = (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) * (R / 2.0)
    dv = (p[:, :-2, 1:-1] - p[:, 2:, 1:-1]) * (R / 2.0)  # row up = +v
    return du.reshape(disp.shape), dv.reshape(disp.shape)


def perturbed_normals(normal: torch.Tensor, tangent: torch.Tensor, bitangent: torch.Tensor,
                      slope_u: torch.Tensor, slope_v: torch.Tensor) -> torch.Tensor:
    """Normals of a surface displaced along its normal, from the displacement's slopes.

    A displacement ``D`` with surface slopes ``(s_u, s_v) = (D_u / len_u, D_v / len_v)``
    tilts the normal to ``normalize(-s_u t - s_v b + n)``; ``(-s_u, -s_v, 1)`` normalised is
    the tangent-space normal.

    Args:
        normal, tangent, bitangent: (..., 3) unit frame; slope_u, slope_v: (...) metres/metre.
    Returns:
        (..., 3) unit normals.
    """
    n = normal - slope_u[..., None] * tangent - slope_v[..., None] * bitangent
    return F.normalize(n, dim=-1)


def tangent_normal_map(disp: torch.Tensor, len_u: torch.Tensor,
                       len_v: torch.Tensor) -> torch.Tensor:
    """Tangent-space normal map of a displacement map (OpenGL: +X = +U, +Y = +V, +Z = out).

    Args:
        disp: (R, R) displacement in metres along the normal.
        len_u, len_v: (R, R) metres per unit of u and v at each texel.
    Returns:
        (R, R, 3) unit tangent-space normals.
    """
    du, dv = uv_gradient(disp)
    n = torch.stack([-du / len_u, -dv / len_v, torch.ones_like(du)], dim=-1)
    return F.normalize(n, dim=-1)


def normal_map_to_rgb8(normals: np.ndarray) -> np.ndarray:
    """(R, R, 3) unit tangent-space normals -> (R, R, 3) uint8, ``(n + 1) / 2 * 255``."""
    return np.clip(np.rint((normals * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


def encode_displacement_png16(disp: np.ndarray) -> tuple[np.ndarray, float]:
    """Quantise a displacement map to 16 bits around mid-level 32768.

    ``disp_m = (value - 32768) * scale``; equivalently, for a texture value ``t = value /
    65535`` in [0, 1], ``disp_m = (t - 32768 / 65535) * 65535 * scale``.

    Args:
        disp: (R, R) float metres.
    Returns:
        (R, R) uint16 image and ``scale`` in metres per PNG unit.
    """
    d = np.asarray(disp, np.float64)
    scale = max(float(np.abs(d).max()), 1e-9) / 32767.0
    q = np.clip(np.rint(d / scale) + 32768.0, 0, 65535).astype(np.uint16)
    return q, scale


def write_png16(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a (H, W) uint16 array as a 16-bit greyscale PNG (Pillow mode ``I;16``)."""
    if image.dtype != np.uint16 or image.ndim != 2:
        raise ValueError("write_png16 expects a 2-D uint16 array.")
    Image.fromarray(image).save(path)  # uint16 -> mode "I;16"


# ----------------------------------------------------------------------------- masks


@functools.lru_cache(maxsize=64)
def _mask(path: str, name: str, size: int) -> np.ndarray:
    """One region of the mask file resampled to ``size`` (nearest texel centre)."""
    try:
        with np.load(path) as data:
            if name not in data.files:
                raise ModelFileError(f"UV region mask {name} missing from {path}.")
            full = data[name].astype(bool)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"UV region masks unreadable: {path} ({exc}).") from exc
    src = full.shape[0]
    idx = ((np.arange(size) + 0.5) * src / size).astype(np.int64).clip(0, src - 1)
    return full[np.ix_(idx, idx)]


def region_mask(assets: str | os.PathLike[str], names: tuple[str, ...], size: int) -> np.ndarray:
    """Union of named UV regions of ``masks/flame_uv_masks_2048.npz`` at ``size x size``.

    A texel is in the region when its centre's nearest 2048^2 mask texel is.

    Args:
        assets: assets folder; names: region names (e.g. ("face",), ("eyeballs", "teeth")).
    Returns:
        (size, size) bool (a new array).
    """
    path = Path(assets).resolve() / UV_MASKS_RELPATH
    if not path.is_file():
        raise ModelFileError(f"Asset file missing: {path}.")
    out = np.zeros((size, size), bool)
    for n in names:
        out |= _mask(str(path), n, size)
    return out


# ----------------------------------------------------------------------------- symmetry


def mirror_texel_index(frames: TexelFrames, normal_weight: float = 0.01) -> np.ndarray:
    """For every texel, the texel at its left-right mirror image on the head.

    The texel's surface point ``p`` (and normal ``n``) is reflected across the FLAME
    symmetry plane ``x = 0`` and matched to the nearest texel in ``(p, normal_weight * n)``
    space, so that thin layers (lips, eyelids, ears) match their own side.

    Args:
        frames: texel frames of a near-symmetric head in the FLAME frame (e.g. the template).
    Returns:
        (R, R) int64 flat index into the R*R texels of the mirror texel; -1 for empty texels.
    """
    covered = frames.covered.cpu().numpy()
    flat = np.flatnonzero(covered.reshape(-1))
    pos = frames.points.detach().cpu().double().numpy().reshape(-1, 3)[flat]
    nrm = frames.normal.detach().cpu().double().numpy().reshape(-1, 3)[flat]
    feat = np.concatenate([pos, normal_weight * nrm], axis=1)
    refl = feat * np.array([-1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
    _, nn = cKDTree(feat).query(refl, workers=-1)
    out = np.full(covered.size, -1, np.int64)
    out[flat] = flat[nn]
    return out.reshape(covered.shape)


_MIRROR_CACHE: dict[tuple[str, int], np.ndarray] = {}
MIRROR_MAX_SEARCH = 512  # larger maps reuse the mirror texels found at this size


def mirror_map(template: np.ndarray, faces: np.ndarray, layout: UVLayout, size: int) -> np.ndarray:
    """Cached :func:`mirror_texel_index` of the FLAME template at ``size``.

    Above ``MIRROR_MAX_SEARCH`` texels the search runs at that size and each texel takes
    its parent's mirror, with the sub-texel offset mirrored in u (the layout is mirrored
    left-right), so it is exact to within a texel or so of the larger map.

    Args:
        template: (V, 3) FLAME template; faces: (F, 3).
    Returns:
        (size, size) int64 flat mirror texel index, -1 on empty texels.
    """
    h = hashlib.sha1()
    for a in (template, faces, layout.uv, layout.uv_faces):
        h.update(np.ascontiguousarray(a).tobytes())
    key = (h.hexdigest(), size)
    if key in _MIRROR_CACHE:
        return _MIRROR_CACHE[key]
    if size > MIRROR_MAX_SEARCH and size % MIRROR_MAX_SEARCH == 0:
        k = size // MIRROR_MAX_SEARCH
        coarse = mirror_map(template, faces, layout, MIRROR_MAX_SEARCH)
        rows = cols = np.arange(size)
        parent = coarse[rows[:, None] // k, cols[None, :] // k]
        pr, pc = np.divmod(np.maximum(parent, 0), MIRROR_MAX_SEARCH)
        r = pr * k + rows[:, None] % k
        c = pc * k + (k - 1 - cols[None, :] % k)
        out = np.where(parent >= 0, r * size + c, -1)
        out[uv_rasterize(layout, size).face_idx < 0] = -1
    else:
        frames = texel_frames(torch.from_numpy(np.asarray(template, np.float32)),
                              torch.from_numpy(np.asarray(faces, np.int64)), layout, size)
        out = mirror_texel_index(frames)
    _MIRROR_CACHE[key] = out
    return out


# ----------------------------------------------------------------------------- filling


def pull_push_fill(values: torch.Tensor, weights: torch.Tensor, smooth_iters: int = 4) -> torch.Tensor:
    """Smooth scattered-data fill of a map from weighted samples (pull-push, Gortler et al.).

    Pull: a pyramid of weighted means (weights summed, capped at 1). Push: from the
    coarsest level down, each level keeps ``w * own + (1 - w) * bilinear(coarser)`` and then
    relaxes the unknown part towards the mean of its 4 neighbours (``smooth_iters`` Jacobi
    steps of Laplace's equation, as in a multigrid V-cycle), so the fill joins the known
    texels without steps. The result is ``values`` where ``weights == 1``.

    Args:
        values: (H, W, C); weights: (H, W) in [0, 1] (0 = unknown).
    Returns:
        (H, W, C) with every texel filled (zeros if no weight at all).
    """
    c = values.permute(2, 0, 1)[None].to(torch.float32)  # (1, C, H, W)
    w = weights[None, None].to(torch.float32).clamp(0.0, 1.0)
    levels: list[tuple[torch.Tensor, torch.Tensor]] = []
    while True:
        levels.append((c, w))
        if min(c.shape[-2:]) <= 1:
            break
        wc = F.avg_pool2d(c * w, 2, ceil_mode=True) * 4.0
        ws = F.avg_pool2d(w, 2, ceil_mode=True) * 4.0
        c = wc / ws.clamp(min=1e-12)
        w = ws.clamp(max=1.0)
    filled = levels[-1][0]
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        known = w * c
        filled = known + (1.0 - w) * up
        for _ in range(smooth_iters):
            p = F.pad(filled, (1, 1, 1, 1), mode="replicate")
            avg = 0.25 * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
            filled = known + (1.0 - w) * avg
    return filled[0].permute(1, 2, 0).to(values.dtype)


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Soft version of a bool mask: Gaussian blur with sigma ``radius`` texels, in [0, 1].

    Args:
        mask: (H, W) bool.
    Returns:
        (H, W) float.
    """
    return gaussian_blur(mask.to(torch.float32)[..., None], radius)[..., 0].clamp(0.0, 1.0)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with replicated edges.

    Args:
        image: (H, W, C); sigma in texels (<= 0 returns the input).
    Returns:
        (H, W, C).
    """
    if sigma <= 0:
        return image
    r = max(1, int(np.ceil(3.0 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).to(image.dtype)
    C = image.shape[-1]
    img = image.permute(2, 0, 1)[None]
    img = F.conv2d(F.pad(img, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(C, 1, 1, -1),
                   groups=C)
    img = F.conv2d(F.pad(img, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(C, 1, -1, 1),
                   groups=C)
    return img[0].permute(1, 2, 0)
