"""Albedo stage: the photo's colours with the fitted lighting divided out, completed over
the whole head.

1. De-lighting: every texel the photo sees takes ``photo / sh_shading(normal)``, the normal
   being the coarse one or, after the detail stage, the one tilted by the displacement map
   (so that wrinkle shading ends up in the normal map, not in the albedo). Its confidence
   falls off at grazing angles, where the fitted shading is small (``SHADING_RANGE``) and
   near the edge of the seen area.
2. Mirror fill: texels seen poorly take their left-right mirror texel's albedo where that
   one is seen (``uvmaps.mirror_map``).
3. Fallback: the painted mean skin texture, tinted per channel to the subject's skin tone
   (ratio of medians over seen cheek/forehead skin), plus a smooth correction: the
   difference to the observed albedo is pull-push filled from the seen texels, so the
   texture joins the photo's albedo without a seam.
   Inside the lips (``LIP_REGIONS``: the lips and their inner surfaces, which a closed
   mouth hides) the fallback is the lip colour seen in the photo (median of the seen lip
   texels) instead of skin, so an opened mouth shows lip-coloured inner lips; towards the
   mouth opening the unseen inner lip darkens and reddens (``INNER_LIP_GAIN``, Gaussian in
   the distance to the opening) into the dark mouth interior.
4. Eyeballs and teeth get their own colours: the mean texture's sclera, iris (tinted to
   the iris colour seen in the photo, when enough of it is seen) and teeth recoloured to
   fixed albedos.
5. Padding: texels outside every UV island are pull-push filled, so no texel is empty.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import binary_fill_holes, distance_transform_edt

from ..model.assets import asset_path
from ..errors import Cancelled, ModelFileError
from ..model.params import FitParams
from ..fit.render import sh_shading
from .texture import sample_photo_texture
from ..model.uv import UVLayout, uv_rasterize
from .uvmaps import (feather, mirror_map, perturbed_normals, pull_push_fill, region_mask,
                     texel_frames, uv_gradient)

MEAN_TEXTURE_RELPATH = "uv/tex_mean_painted_2048.png"
ALBEDO_SIZE = 1024
# Skin used to measure the subject's tone: the face without eyes, brows, lips and nose.
SKIN_TONE_REGIONS: tuple[str, ...] = ("face",)
SKIN_TONE_EXCLUDE: tuple[str, ...] = ("eye_region", "lips", "nose")
# Fixed albedos (sRGB, 0..1) of the parts the photo shows badly or not at all.
SCLERA_RGB = (0.72, 0.68, 0.64)
TEETH_RGB = (0.85, 0.80, 0.70)
# The lips with their inner surfaces (unseen with the mouth closed), filled with the lip colour
# of the photo; the seen texels of LIP_COLOUR_REGIONS give that colour.
LIP_REGIONS: tuple[str, ...] = ("lips_tight", "lip_inside")
LIP_COLOUR_REGIONS: tuple[str, ...] = ("lips_tight",)
MIN_LIP_TEXELS = 100  # seen lip texels (at 1024^2) needed to take the lip colour from the photo
LIP_FEATHER = 2.0  # texels at 1024^2: soft edge of the lip region
# Unseen inner lip at the mouth opening: the lip colour times this (darker, redder mucosa),
# fading back to the lip colour over INNER_LIP_WIDTH texels (at 1024^2, Gaussian).
INNER_LIP_GAIN = (0.62, 0.42, 0.42)
INNER_LIP_WIDTH = 9.0
DEFAULT_IRIS_RGB = (0.33, 0.22, 0.15)
MIN_IRIS_TEXELS = 30  # seen iris texels needed to take the iris colour from the photo
MIN_SKIN_TEXELS = 200  # seen skin texels needed to tint the mean texture
FACING_RANGE = (0.2, 0.5)  # cosine range over which a texel's confidence rises from 0 to 1
EDGE_FEATHER = 2.0  # texels: confidence fades to 0 this close to the edge of the seen area
MIN_SHADING = 0.05
# Fitted shading (mean over channels) over which a texel's confidence rises from 0 to 1: where
# the fitted light barely reaches (the lips' contact crease, under the nose) the photo is dark
# from occlusion the SH light does not model, and dividing by the small shading gives
# over-bright, over-saturated albedo (the lip crease came out orange).
SHADING_RANGE = (0.25, 0.5)
SATURATED = 250  # photo texels with a channel at or above this (0..255) are clipped: not used


@dataclass
class AlbedoMaps:
    """The completed albedo and how each texel was obtained.

    Attributes:
        albedo: (R, R, 3) float in [0, 1], every texel filled.
        own: (R, R) confidence of the texel's own photo albedo, in [0, 1].
        mirror: (R, R) share taken from the mirror texel, in [0, 1].
        gain: (3,) per-channel tint applied to the mean texture.
        iris: (3,) iris albedo used.
        lip: (3,) lip albedo the unseen lips were filled with.
    """

    albedo: torch.Tensor
    own: torch.Tensor
    mirror: torch.Tensor
    gain: torch.Tensor
    iris: torch.Tensor
    lip: torch.Tensor


def delit_texels(texture: np.ndarray, verts_view: torch.Tensor, faces: torch.Tensor,
                 layout: UVLayout, sh: torch.Tensor,
                 displacement: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Photo colour divided by the fitted shading at every texel the photo sees.

    Args:
        texture: (R, R, 4) uint8 photo texture of ``backend.appearance.texture.sample_photo_texture``
            (alpha 255 = seen); clipped (saturated) texels count as unseen.
        verts_view: (V, 3) fitted view-frame vertices; faces: (F, 3) long.
        layout: UV layout; sh: (1, 9, 3) lighting.
        displacement: optional (r, r) displacement map in metres (any resolution) whose
            slopes tilt the normals.
    Returns:
        albedo (R, R, 3) in [0, 1] (0 where unseen) and confidence (R, R) in [0, 1].
    """
    size = texture.shape[0]
    frames = texel_frames(verts_view.detach().cpu().float(), faces.detach().cpu().long(),
                          layout, size)
    normals = frames.normal
    if displacement is not None:
        du, dv = uv_gradient(displacement.detach().cpu().float())
        slopes = F.interpolate(torch.stack([du, dv])[None], size=(size, size), mode="bilinear",
                               align_corners=False)[0]
        normals = perturbed_normals(frames.normal, frames.tangent, frames.bitangent,
                                    slopes[0] / frames.len_u, slopes[1] / frames.len_v)
    seen = torch.from_numpy((texture[..., 3] > 127) & (texture[..., :3].max(-1) < SATURATED))
    rows, cols = seen.nonzero(as_tuple=True)
    color = torch.from_numpy(texture[..., :3]).float()[rows, cols] / 255.0
    n = normals[rows, cols]
    shading = sh_shading(n[None, :, None], sh.detach().cpu().float())[0, :, 0]
    albedo = torch.zeros(size, size, 3)
    albedo[rows, cols] = (color / shading.clamp(min=MIN_SHADING)).clamp(0.0, 1.0)
    cos = -(n * F.normalize(frames.points[rows, cols], dim=-1)).sum(-1)
    lo, hi = FACING_RANGE
    facing = ((cos - lo) / (hi - lo)).clamp(0.0, 1.0)
    inner = (2.0 * feather(seen, EDGE_FEATHER) - 1.0).clamp(min=0.0)
    lo, hi = SHADING_RANGE
    lit = ((shading.mean(-1) - lo) / (hi - lo)).clamp(0.0, 1.0)
    conf = torch.zeros(size, size)
    conf[rows, cols] = _smoothstep(facing) * _smoothstep(lit)
    return albedo, conf * inner


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    return x * x * (3.0 - 2.0 * x)


@functools.lru_cache(maxsize=2)
def _mean_texture(path: str, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            tex = im.convert("RGB").resize((size, size), Image.BOX)
    except OSError as exc:
        raise ModelFileError(f"Mean texture unreadable: {path} ({exc}).") from exc
    return np.asarray(tex, np.float32) / 255.0


def mean_texture(assets: str | os.PathLike[str], size: int) -> torch.Tensor:
    """The painted mean skin texture at ``size x size``: (R, R, 3) float in [0, 1]."""
    return torch.from_numpy(_mean_texture(str(asset_path(MEAN_TEXTURE_RELPATH, assets)), size).copy())


def _median(values: torch.Tensor) -> torch.Tensor:
    return values.median(dim=0).values


def _recolor(tex: torch.Tensor, region: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``tex`` inside ``region`` scaled per channel so that its median becomes ``target``."""
    if not bool(region.any()):
        return tex
    gain = target / _median(tex[region]).clamp(min=1e-3)
    return torch.where(region[..., None], (tex * gain).clamp(0.0, 1.0), tex)


def complete_albedo_maps(albedo: torch.Tensor, conf: torch.Tensor, mirror: np.ndarray,
                         covered: torch.Tensor, assets: str | os.PathLike[str]) -> AlbedoMaps:
    """Fill the unseen texels: mirror texels, then the tinted mean texture (the lip colour
    inside the lips), seamlessly.

    Args:
        albedo: (R, R, 3) de-lit photo albedo; conf: (R, R) its confidence (0 = unseen).
        mirror: (R, R) flat mirror texel index (-1 = none).
        covered: (R, R) bool texels inside a UV island.
        assets: assets folder (mean texture, region masks).
    Returns:
        AlbedoMaps with every texel filled.
    """
    R = albedo.shape[0]
    m = torch.from_numpy(mirror).reshape(-1)
    has_m = (m >= 0).reshape(R, R)
    m = m.clamp(min=0)
    conf_m = conf.reshape(-1)[m].reshape(R, R) * has_m
    alb_m = albedo.reshape(-1, 3)[m].reshape(R, R, 3)
    w_mirror = (1.0 - conf) * conf_m
    weight = conf + w_mirror
    combined = (conf[..., None] * albedo + w_mirror[..., None] * alb_m) \
        / weight.clamp(min=1e-6)[..., None]

    def mask(names: tuple[str, ...]) -> torch.Tensor:
        return torch.from_numpy(region_mask(assets, names, R))

    mean = mean_texture(assets, R)
    skin = mask(SKIN_TONE_REGIONS) & ~mask(SKIN_TONE_EXCLUDE) & (weight > 0.5)
    if int(skin.sum()) >= MIN_SKIN_TEXELS:
        gain = (_median(combined[skin]) / _median(mean[skin]).clamp(min=1e-3)).clamp(0.25, 4.0)
    else:
        gain = torch.ones(3)
    base = (mean * gain).clamp(0.0, 1.0)
    scale = R / 1024.0
    lip_region = mask(LIP_REGIONS)
    seen_lip = mask(LIP_COLOUR_REGIONS) & (weight > 0.5)
    if int(seen_lip.sum()) * 1024 * 1024 >= MIN_LIP_TEXELS * R * R:
        lip = _median(combined[seen_lip])
    else:
        lip = _median(base[mask(LIP_COLOUR_REGIONS)])
    lip_w = feather(lip_region, LIP_FEATHER * scale)[..., None]
    base = base * (1.0 - lip_w) + lip * lip_w
    out = base + pull_push_fill(combined - base, weight * covered)
    # the unseen inner lip darkens towards the mouth opening (the hole inside the lip ring)
    inner = mask(("lip_inside",)).numpy()
    opening = binary_fill_holes(inner) & ~inner & ~covered.numpy()
    if opening.any():
        dist = torch.from_numpy(distance_transform_edt(~opening).astype(np.float32))
        deep = torch.exp(-(dist / (INNER_LIP_WIDTH * scale)) ** 2) * (1.0 - weight.clamp(0.0, 1.0))
        deep = deep * feather(lip_region, LIP_FEATHER * scale)
        out = out * (1.0 - deep[..., None] * (1.0 - torch.tensor(INNER_LIP_GAIN)))
    out = out.clamp(0.0, 1.0)

    irises = mask(("irises",))
    seen_iris = irises & (conf > 0.5)
    iris = _median(albedo[seen_iris]) if int(seen_iris.sum()) >= MIN_IRIS_TEXELS \
        else torch.tensor(DEFAULT_IRIS_RGB)
    eyes = _recolor(_recolor(mean, mask(("sclerae",)), torch.tensor(SCLERA_RGB)), irises, iris)
    eyes = _recolor(eyes, mask(("teeth",)), torch.tensor(TEETH_RGB))
    special = mask(("eyeballs", "teeth"))
    out = torch.where(special[..., None], eyes, out)
    # Pad around the UV islands; the teeth region has no FLAME faces but keeps its colour for
    # heads with teeth geometry in the same layout.
    out = pull_push_fill(out, (covered | special).to(out.dtype))
    return AlbedoMaps(albedo=out, own=conf, mirror=w_mirror, gain=gain, iris=iris, lip=lip)


def complete_albedo(engine: Any, params: FitParams, rgb: np.ndarray, out_dir: str | Path,
                    displacement: torch.Tensor | None = None, texture: np.ndarray | None = None,
                    progress: Callable[[str, float, str], None] | None = None,
                    cancel: Callable[[], bool] | None = None,
                    size: int = ALBEDO_SIZE, stage: str = "texture",
                    skin_mask: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``albedo.png`` (``size`` x ``size`` RGB) for a fitted head.

    Args:
        engine: pipeline Engine (uses .flame, .model, .uv, .assets).
        params: fitted parameters (camera of ``rgb``, SH lighting).
        rgb: (H, W, 3) uint8 photo the parameters were fitted to.
        out_dir: bundle folder; displacement: optional (r, r) detail map in metres.
        texture: the texture stage's (S, S, 4) photo texture, if already computed (then
            the albedo has its size S); None = sample it here at ``size``.
        progress(stage, fraction, message) under the name ``stage``; cancel() -> bool.
        skin_mask: (H, W) bool photo pixels that may colour the head, used when the texture
            is sampled here (``sample_photo_texture``); other texels are completed.
    Returns:
        {"albedo": "albedo.png", "detail": {"albedo": {...}}}: the file name, and under
        "detail" the numbers for result.json's "detail" section.
    """
    def report(frac: float, msg: str) -> None:
        if progress is not None:
            progress(stage, frac, msg)

    with torch.no_grad():
        verts = engine.flame(params.shape, params.expression, params.pose, params.translation,
                             eyelids=params.eyelids).vertices[0]
    faces = torch.from_numpy(engine.model.faces)
    if texture is None:
        texture = sample_photo_texture(rgb, verts.cpu().numpy(), engine.model.faces, engine.uv,
                                       params.camera, size=size, skin_mask=skin_mask)
    albedo, conf = delit_texels(texture, verts, faces, engine.uv, params.sh, displacement)
    size = texture.shape[0]
    report(0.5, "photo de-lit")
    if cancel is not None and cancel():
        raise Cancelled("Reconstruction cancelled.")
    mirror = mirror_map(engine.model.v_template, engine.model.faces, engine.uv, size)
    covered = torch.from_numpy(uv_rasterize(engine.uv, size).mask)
    maps = complete_albedo_maps(albedo, conf, mirror, covered, engine.assets)
    img = (maps.albedo.numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(Path(out_dir) / "albedo.png")
    report(1.0, "albedo written")
    n = max(int(covered.sum()), 1)
    return {
        "albedo": "albedo.png",
        "detail": {"albedo": {
            "size": size,
            "space": "sRGB albedo, lighting divided out (photo / SH shading)",
            "detail_normals": displacement is not None,
            "seen_fraction": float((maps.own[covered] > 0.5).sum()) / n,
            "mirrored_fraction": float((maps.mirror[covered] > 0.5).sum()) / n,
            "skin_gain": [float(g) for g in maps.gain],
            "iris_rgb": [float(c) for c in maps.iris],
            "lip_rgb": [float(c) for c in maps.lip],
        }},
    }
