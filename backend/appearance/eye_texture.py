"""The bundle's eye texture (``eye.png``): a CC0 iris texture tinted to the photo's iris colour.

Five MakeHuman eye textures (CC0; blue, brown, light brown, green, grey; 1024² with two eyeball
discs, layout in ``headrecon_addon/eye_layout.py``) are copied with their licence into
``weights/eyes/`` by setup-weights. For a photo the texture whose iris (median CIELAB of the
ring between pupil and limbus) is nearest to ``result.json``'s ``iris_color`` is taken and its
iris tinted towards that colour in CIELAB: lightness scaled by the ratio of the medians (kept
within ``L_GAIN_RANGE``), a* and b* shifted by the difference of the medians, so every fibre
keeps its contrast to its neighbours. The tint fades out over the pupil edge and the limbal
ring, and for texels lighter than the iris (the sclera where a disc's limbus is not quite
round); pupil and sclera stay as drawn. Without an iris colour the brown texture is written
untinted; without the files in weights/ no eye texture is written (Blender then uses its
procedural eye material).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from headrecon_addon import eye_layout

from ..model.assets import weights_dir
from ..model.pinned import PinnedFile, install_pinned

log = logging.getLogger(__name__)

EYES_SUBDIR = "eyes"  # weights/eyes/, copied from <assets>/eyes/ by setup-weights
EYE_FILES: tuple[PinnedFile, ...] = (
    PinnedFile("blue_eye.png", "eyes/blue_eye.png", 666029,
               "572ddc93ab3e177100619ec7c00b2574540cfb382805afc2e450788117f6140c"),
    PinnedFile("brown_eye.png", "eyes/brown_eye.png", 610817,
               "4659691c7295ad6206c78b003e5fd0e5f91dcd53032fa914a229bb48cabe424b"),
    PinnedFile("brownlight_eye.png", "eyes/brownlight_eye.png", 680577,
               "3f43a4de70e446186dac1760cfa01dfe36d530ed7564208455395b0ebcdf788a"),
    PinnedFile("green_eye.png", "eyes/green_eye.png", 662241,
               "b9864ac4f4fa484b24e18f6aba030d70dbc8820cbbacfbe63a974c76772c2009"),
    PinnedFile("grey_eye.png", "eyes/grey_eye.png", 669883,
               "ecb05613126036a3d017880fabbd570501c5f14032c186462d8f6e2d719f6c4f"),
    PinnedFile("LICENSE.CC0.md", "eyes/LICENSE.CC0.md", 6962,
               "f6089cba01cb570a24712b41ab8a586ccd3cc5ef53dc266ca50b95c288956d2c"),
)
TEXTURE_NAMES: tuple[str, ...] = tuple(p.name for p in EYE_FILES if p.name.endswith(".png"))
DEFAULT_TEXTURE = "brown_eye.png"  # no iris colour measured
EYE_PNG = "eye.png"
SIZE = 1024
# Iris ring whose statistics are matched (texture UV radius), inside pupil edge and limbal ring.
STATS_INNER, STATS_OUTER = 0.040, 0.098
# Tint weight: 0 -> 1 over the pupil edge, 1 -> 0 over the limbal ring into the sclera.
TINT_IN = (0.026, 0.036)
TINT_OUT = (0.100, 0.118)
SCLERA_GATE_L = 12.0  # tint fades out over this many L* above the iris ring's 95th percentile
L_GAIN_RANGE = (0.5, 2.0)
TRANSPARENT_FILL = (150, 150, 150)  # the textures' few transparent texels (a corner mark)


def setup_eye_textures(assets: Path, target: Path | None = None) -> Path:
    """Copy the five eye textures and the CC0 text from ``<assets>/eyes`` into ``weights/eyes``.

    Returns:
        The folder holding the files.
    Raises:
        ModelFileError: a source file is missing or differs from the pinned one.
    """
    dest_dir = Path(target) if target is not None else weights_dir() / EYES_SUBDIR
    return install_pinned(EYE_FILES, lambda: Path(assets), dest_dir,
                          "it must be the MakeHuman eye texture of the assets folder.")


# ----------------------------------------------------------------------------- colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB in 0..1 -> (..., 3) CIELAB (D65)."""
    c = np.asarray(rgb, np.float64)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124564, 0.2126729, 0.0193339],
                          [0.3575761, 0.7151522, 0.1191920],
                          [0.1804375, 0.0721750, 0.9503041]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) CIELAB (D65) -> (..., 3) sRGB clipped to 0..1."""
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * np.array([0.95047, 1.0, 1.08883])
    lin = xyz @ np.array([[3.2404542, -0.9692660, 0.0556434],
                          [-1.5371385, 1.8760108, -0.2040259],
                          [-0.4985314, 0.0415560, 1.0572252]])
    lin = np.clip(lin, 0.0, 1.0)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def hue_deg(lab: np.ndarray) -> float:
    """CIELAB hue angle (degrees, 0..360) of one (3,) colour."""
    return float(np.degrees(np.arctan2(lab[2], lab[1])) % 360.0)


def hue_difference_deg(a: float, b: float) -> float:
    """Smallest angle between two hues (degrees)."""
    return float(abs((a - b + 180.0) % 360.0 - 180.0))


# ----------------------------------------------------------------------------- texture


def iris_radius_map(size: int = SIZE) -> np.ndarray:
    """(size, size) distance in texture UV units from the nearer disc's pupil centre
    (rows top to bottom: row 0 is V = 1)."""
    centres = np.asarray(eye_layout.DISC_CENTRES)
    u = (np.arange(size) + 0.5) / size
    v = 1.0 - (np.arange(size) + 0.5) / size
    dist = [np.hypot(u[None, :] - cu, v[:, None] - cv) for cu, cv in centres]
    return np.minimum(*dist)


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def tint_weight(radius: np.ndarray) -> np.ndarray:
    """Tint weight 0..1 for texture UV radii from a pupil centre (shape of ``radius``)."""
    return _smoothstep(radius, *TINT_IN) * (1.0 - _smoothstep(radius, *TINT_OUT))


def _ring(size: int) -> np.ndarray:
    r = iris_radius_map(size)
    return (r >= STATS_INNER) & (r <= STATS_OUTER)


@functools.lru_cache(maxsize=4)
def _load_textures(folder: str) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """name -> ((SIZE, SIZE, 3) sRGB float32 0..1, (3,) median Lab of its iris ring, the
    ring's 95th percentile of L*)."""
    ring = _ring(SIZE)
    out: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for name in TEXTURE_NAMES:
        with Image.open(Path(folder) / name) as im:
            if im.size != (SIZE, SIZE):
                raise ValueError(f"{name} is {im.size[0]}x{im.size[1]}, not {SIZE}x{SIZE}")
            rgba = np.asarray(im.convert("RGBA"))
        rgb = np.where(rgba[..., 3:] == 0, np.asarray(TRANSPARENT_FILL, np.uint8), rgba[..., :3])
        rgb = rgb.astype(np.float32) / 255.0
        lab = srgb_to_lab(rgb[ring])
        out[name] = (rgb, np.median(lab, axis=0), float(np.percentile(lab[:, 0], 95)))
    return out


def nearest_texture(target_lab: np.ndarray, medians: dict[str, np.ndarray]) -> str:
    """Name of the texture whose iris median is nearest (CIELAB distance) to ``target_lab``."""
    return min(medians, key=lambda n: float(np.linalg.norm(medians[n] - target_lab)))


def tint_iris(rgb: np.ndarray, source_lab: np.ndarray, target_srgb: tuple[float, float, float],
              source_l95: float = 100.0) -> np.ndarray:
    """The texture with its iris tinted towards ``target_srgb``.

    Args:
        rgb: (S, S, 3) sRGB float 0..1 eye texture (eye_layout's two discs).
        source_lab: (3,) median CIELAB of its iris ring; source_l95: 95th percentile of the
            ring's L* (texels lighter than it by SCLERA_GATE_L are left as they are).
        target_srgb: the iris colour, sRGB 0..1.
    Returns:
        (S, S, 3) sRGB float 0..1.
    """
    target = srgb_to_lab(np.asarray(target_srgb, np.float64))
    weight = tint_weight(iris_radius_map(rgb.shape[0]))
    rows, cols = np.nonzero(weight > 0)
    lab = srgb_to_lab(rgb[rows, cols])
    gain = float(np.clip(target[0] / max(source_lab[0], 1e-3), *L_GAIN_RANGE))
    tinted = lab.copy()
    tinted[:, 0] *= gain
    tinted[:, 1:] += target[1:] - source_lab[1:]
    w = weight[rows, cols] * (1.0 - _smoothstep(lab[:, 0], source_l95, source_l95 + SCLERA_GATE_L))
    w = w[:, None]
    out = np.array(rgb, np.float64)
    out[rows, cols] = lab_to_srgb(w * tinted + (1.0 - w) * lab)
    return out


def eye_texture(iris_srgb: list[float] | None, folder: Path | None = None
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """The eye texture for an iris colour.

    Args:
        iris_srgb: result.json ``iris_color`` (sRGB 0..1) or None.
        folder: where the textures are (default ``weights/eyes``).
    Returns:
        ((SIZE, SIZE, 3) uint8 sRGB, result.json ``eye_texture`` description).
    Raises:
        OSError, ValueError: a texture is missing or unreadable.
    """
    textures = _load_textures(str(folder or weights_dir() / EYES_SUBDIR))
    if iris_srgb is None:
        rgb, name = textures[DEFAULT_TEXTURE][0], DEFAULT_TEXTURE
        info: dict[str, Any] = {"source": name, "tinted_to": None}
    else:
        target = srgb_to_lab(np.asarray(iris_srgb, np.float64))
        name = nearest_texture(target, {n: t[1] for n, t in textures.items()})
        source, source_lab, source_l95 = textures[name]
        rgb = tint_iris(source, source_lab, tuple(iris_srgb), source_l95)
        info = {"source": name, "tinted_to": [float(c) for c in iris_srgb]}
    info["layout"] = "MakeHuman eye_low_poly (headrecon_addon/eye_layout.py)"
    info["licence"] = "CC0 1.0 (MakeHuman)"
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8), info


def iris_ring_lab(rgb_u8: np.ndarray) -> np.ndarray:
    """(N, 3) CIELAB of the iris ring texels (STATS_INNER..STATS_OUTER) of a texture."""
    return srgb_to_lab(rgb_u8[_ring(rgb_u8.shape[0])].astype(np.float64) / 255.0)


def write_eye_texture(out: Path, iris_srgb: list[float] | None
                      ) -> tuple[dict[str, str], dict[str, Any] | None, list[str]]:
    """Write ``out/eye.png``.

    Returns:
        (result.json ``files`` entries, result.json ``eye_texture`` or None, warnings).
    """
    try:
        rgb, info = eye_texture(iris_srgb)
    except (OSError, ValueError) as exc:
        log.warning("eye texture: %s", exc)
        return {}, None, ["The eye textures are not installed (run `headrecon setup-weights`); "
                          "the eyes get a plain procedural material in Blender."]
    Image.fromarray(rgb).save(out / EYE_PNG, compress_level=1)
    return {"eye": EYE_PNG}, info, []
