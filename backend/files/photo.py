"""Load a user's photo as an (H, W, 3) uint8 RGB array, whatever the file looks like.

Handles EXIF orientation (all 8 values), grayscale, palette, transparency (composited on
grey), 16-bit PNG/TIFF, CMYK/YCbCr/LAB JPEG and TIFF, multi-frame files (first frame) and
very large photos (JPEG draft decoding; other formats are box-reduced right after decoding,
strip by strip where the mode needs converting, so only the decoded file and small copies are
ever held; then a high-quality downscale to ``max_side``).
Anything unusable raises BadInputError with one sentence.

Importing this module raises Pillow's decompression-bomb threshold to ``MAX_PIXELS`` so that
our own, explicit limit applies instead.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BadInputError

MAX_PIXELS = 200_000_000  # refuse photos above 200 megapixels before decoding them
MIN_SIDE = 32  # refuse photos smaller than this (pixels) on either side
BACKGROUND = (128, 128, 128)  # neutral grey behind transparent pixels

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass
class LoadedImage:
    """A photo ready for fitting.

    Attributes:
        rgb: (H, W, 3) uint8 RGB, upright (EXIF orientation applied), long side <= max_side.
        scale: loaded_px = original_px * scale, where original pixels are those of the
            upright photo at full resolution (``original_size``); 1.0 when not resized.
        original_size: (W, H) of the upright photo at full resolution.
        warnings: one sentence per thing the user may want to know (transparency filled,
            several frames, grayscale, ...).
    """

    rgb: np.ndarray
    scale: float
    original_size: tuple[int, int]
    warnings: list[str] = field(default_factory=list)


def _open(path: Path) -> Image.Image:
    """Open the file lazily (header only); BadInputError when it is not a usable image file."""
    try:
        found = path.exists()
    except OSError as exc:  # e.g. a name longer than the filesystem allows
        raise BadInputError(f"Photo {str(path)[:80]} cannot be opened ({exc.strerror}).") from None
    if not found:
        raise BadInputError(f"Photo not found: {path}.")
    if not path.is_file():
        raise BadInputError(f"Not a file: {path}.")
    if path.stat().st_size == 0:
        raise BadInputError(f"The photo file is empty: {path}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise BadInputError(f"The photo {path.name} is too large to open safely "
                            f"(more than {MAX_PIXELS // 1_000_000} megapixels).") from exc
    except UnidentifiedImageError as exc:
        raise BadInputError(f"{path.name} is not an image file Pillow can read (JPEG, PNG, TIFF, WebP, ...).") from exc
    except OSError as exc:
        raise BadInputError(f"Cannot read the photo {path.name}: {exc}.") from exc
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise BadInputError(f"The photo {path.name} is {w}x{h} pixels, more than the "
                            f"{MAX_PIXELS // 1_000_000} megapixel limit; downscale it first.")
    if min(w, h) < MIN_SIDE:
        im.close()
        raise BadInputError(f"The photo {path.name} is only {w}x{h} pixels; at least "
                            f"{MIN_SIDE} pixels per side are needed.")
    return im


# EXIF orientation -> the transpose that makes the photo upright (as ImageOps.exif_transpose).
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image, notes: list[str]) -> int:
    """EXIF orientation 1..8 (1 when absent); an unreadable EXIF block is noted and ignored."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # Pillow raises many types on malformed EXIF; the pixels may still be fine
        notes.append("The photo's EXIF data is unreadable; its orientation tag was ignored.")
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# Modes Image.reduce averages correctly as they are; others are converted first (per strip).
_REDUCIBLE = {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "I", "CMYK", "YCbCr", "LAB", "HSV"}
_STRIP_PIXELS = 1 << 22  # pixels per converted strip (~16 MB as RGBA)


def _reduce_mode(im: Image.Image) -> str:
    """The mode a reduced copy of ``im`` gets: its own, or one whose values can be averaged."""
    if im.mode in _REDUCIBLE:
        return im.mode
    if im.mode == "1":
        return "L"
    if im.mode.startswith("I;16"):
        return "I"
    if im.mode == "PA" or (im.mode == "P" and "transparency" in im.info):
        return "RGBA"
    return "RGB"  # P without transparency and anything else Pillow converts to RGB


def _reduced(im: Image.Image, factor: int) -> Image.Image:
    """``im`` (loaded) box-averaged by an integer factor, without a full-size converted copy.

    Modes whose values cannot be averaged (palette, bilevel, 16-bit) are converted strip by
    strip (rows a multiple of ``factor``), so the peak memory is the decoded image plus one
    strip.
    """
    mode = _reduce_mode(im)
    if mode == im.mode:
        return im.reduce(factor)
    w, h = im.size
    out = Image.new(mode, (-(-w // factor), -(-h // factor)))
    rows = max(1, _STRIP_PIXELS // (w * factor)) * factor
    for y in range(0, h, rows):
        strip = im.crop((0, y, w, min(h, y + rows)))
        strip.info = dict(im.info)  # palette transparency travels with the strip
        out.paste(strip.convert(mode).reduce(factor), (0, y // factor))
    return out


def _to_rgb(im: Image.Image, notes: list[str], sixteen_bit: bool = False) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency composited on BACKGROUND.

    ``sixteen_bit``: the pixels are 16-bit values even if the mode (after reduction) is I.
    """
    if im.mode == "F":
        raise BadInputError("Floating-point images are not supported; save the photo as 8- or 16-bit.")
    if im.mode.startswith("I"):  # I;16* (16-bit PNG/TIFF) or I (32-bit integer)
        # Pillow's own conversion to L clips at 255 instead of rescaling. The image is at most
        # twice max_side here (reduced after decoding), and float32 is enough for 8 bits out.
        values = np.asarray(im, dtype=np.float32)
        divisor = 257.0 if sixteen_bit or im.mode != "I" or values.max() > 255 else 1.0
        im = Image.fromarray(np.clip(values / divisor + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("1", "L", "LA"):
        notes.append("The photo is grayscale; the texture will be grey.")
    if not (im.mode in ("RGBA", "RGBa", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)):
        return im if im.mode == "RGB" else im.convert("RGB")  # also CMYK, YCbCr, LAB, HSV
    im = im.convert("RGBA")
    alpha = im.getchannel("A")
    if np.asarray(alpha).min() < 255:
        notes.append("The photo has transparent areas; they were filled with grey.")
    background = Image.new("RGB", im.size, BACKGROUND)
    background.paste(im, mask=alpha)
    return background


def load_image(path: str | os.PathLike[str], max_side: int = 1024) -> LoadedImage:
    """Load a photo upright, as 8-bit RGB, downscaled so that its long side is <= max_side.

    Args:
        path: image file (anything Pillow reads: JPEG, PNG, TIFF, WebP, BMP, GIF, ...).
        max_side: long side of the returned image at most (pixels), >= MIN_SIDE.
    Returns:
        LoadedImage with rgb (H, W, 3) uint8.
    Raises:
        BadInputError: missing file, not an image, truncated or corrupt data, too small,
            larger than MAX_PIXELS, floating-point pixels.
    """
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be at least {MIN_SIDE}")
    path = Path(path)
    notes: list[str] = []
    with _open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"The file holds {frames} frames; using the first.")
        w, h = im.size
        if im.format == "JPEG" and max(w, h) > max_side:
            # Decode at 1/2, 1/4 or 1/8 scale directly, never below the final size.
            k = max_side / max(w, h)
            im.draft(im.mode, (max(1, int(w * k)), max(1, int(h * k))))
        try:
            im.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadInputError(f"The photo {path.name} is truncated or corrupt ({exc}).") from exc
        # After the pixels: a PNG's EXIF may follow its image data, and reading it first would
        # decode (and swallow the error of) corrupt image data.
        orientation = _orientation(im, notes)
        sixteen_bit = im.mode.startswith("I;16")
        if im.mode == "F":
            raise BadInputError("Floating-point images are not supported; save the photo as 8- or 16-bit.")
        factor = max(im.size) // max_side  # reduce now: every later copy is small
        src = _reduced(im, factor) if factor >= 2 else im
        upright = src.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else src
        rgb = _to_rgb(upright, notes, sixteen_bit)
        if rgb is im:
            rgb = im.copy()
    full_w, full_h = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    if max(rgb.size) > max_side:
        k = max_side / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.size[0] * k)), max(1, round(rgb.size[1] * k))),
                         Image.Resampling.LANCZOS)
    array = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return LoadedImage(array, array.shape[1] / full_w, (full_w, full_h), notes)
