"""backend.files.photo.load_image on real photos and on variants of them generated into tmp_path."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.errors import BadInputError
from backend.files.photo import BACKGROUND, MAX_PIXELS, load_image

PHOTO = "photos/expression_2.jpg"  # 450x450 portrait


def _crop(eval_dir: Path) -> np.ndarray:
    """A non-square (300 x 420) RGB crop of a real photo, so that transposes change the shape."""
    rgb = np.asarray(Image.open(eval_dir / PHOTO).convert("RGB"))
    return np.ascontiguousarray(rgb[60:360, 10:430])


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_eval_photos_load_unchanged(eval_dir: Path) -> None:
    """Every evaluation image loads as RGB uint8; small ones keep size and pixels (PNG exactly)."""
    files = sorted((eval_dir / "photos").iterdir()) + sorted((eval_dir / "aflw2000_3d").glob("*.jpg"))
    assert len(files) == 26
    for path in files:
        loaded = load_image(path)
        with Image.open(path) as im:
            w, h = im.size
            reference = np.asarray(im.convert("RGB"))
        assert loaded.rgb.dtype == np.uint8 and loaded.rgb.flags["C_CONTIGUOUS"]
        assert loaded.original_size == (w, h)
        if max(w, h) <= 1024:
            assert loaded.scale == 1.0 and loaded.rgb.shape == (h, w, 3)
            assert _mean_abs(loaded.rgb, reference) == 0.0
        else:  # expression_4.jpg, 2444 x 1718: downscaled (JPEG draft decoding + Lanczos)
            assert max(loaded.rgb.shape[:2]) == 1024
            assert loaded.scale == pytest.approx(1024 / w, rel=1e-3)
            small = np.asarray(Image.fromarray(reference).resize(loaded.rgb.shape[1::-1], Image.Resampling.LANCZOS))
            assert _mean_abs(loaded.rgb, small) < 3.0  # 8-bit levels, decoding at 1/2 scale differs slightly


# How the stored pixels relate to the upright picture for each EXIF orientation (EXIF 2.32,
# tag 0x0112): stored = T(upright), with T in Pillow's terms.
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # stored rotated 90 deg counter-clockwise; display turns it clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(eval_dir: Path, tmp_path: Path, orientation: int) -> None:
    """A JPEG stored sideways/mirrored with its EXIF tag loads upright (all 8 orientations)."""
    upright = Image.fromarray(_crop(eval_dir))
    transform = STORED_FROM_UPRIGHT[orientation]
    stored = upright if transform is None else upright.transpose(transform)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    stored.save(path, quality=95, exif=exif)
    loaded = load_image(path)
    assert loaded.rgb.shape == (300, 420, 3)
    assert loaded.original_size == (420, 300)
    assert _mean_abs(loaded.rgb, np.asarray(upright)) < 2.0  # JPEG q95 round trip
    # and it is not merely close to a wrong orientation (the photo is not symmetric enough)
    assert _mean_abs(loaded.rgb, np.asarray(upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT))) > 10.0


def test_large_rotated_jpeg_is_downscaled(eval_dir: Path, tmp_path: Path) -> None:
    """A 6000x4000 JPEG tagged orientation 6 loads upright at 683x1024; scale maps original px."""
    canvas = Image.fromarray(_crop(eval_dir)).resize((6000, 4000))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "big.jpg"
    canvas.save(path, quality=90, exif=exif)
    loaded = load_image(path, max_side=1024)
    assert loaded.original_size == (4000, 6000)
    assert loaded.rgb.shape == (1024, 683, 3)
    assert loaded.scale == pytest.approx(683 / 4000, rel=1e-6)
    expected = np.asarray(canvas.transpose(Image.Transpose.ROTATE_270).resize((683, 1024), Image.Resampling.LANCZOS))
    assert _mean_abs(loaded.rgb, expected) < 3.0


def test_grayscale(eval_dir: Path, tmp_path: Path) -> None:
    gray = Image.fromarray(_crop(eval_dir)).convert("L")
    path = tmp_path / "gray.png"
    gray.save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (300, 420, 3)
    for c in range(3):
        np.testing.assert_array_equal(loaded.rgb[..., c], np.asarray(gray))
    assert any("grayscale" in w for w in loaded.warnings)


def test_rgba_composited_on_grey(eval_dir: Path, tmp_path: Path) -> None:
    """Transparent pixels become BACKGROUND grey, opaque ones keep their colour."""
    rgb = _crop(eval_dir)
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :100] = 0
    alpha[:, 100:120] = 128
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.rgb[:, :100], np.broadcast_to(BACKGROUND, (300, 100, 3)))
    np.testing.assert_array_equal(loaded.rgb[:, 120:], rgb[:, 120:])
    half = (rgb[:, 100:120].astype(np.float64) * 128 + np.array(BACKGROUND) * 127) / 255
    np.testing.assert_allclose(loaded.rgb[:, 100:120], half, atol=1.0)
    assert any("transparent" in w for w in loaded.warnings)


def test_gray_alpha_and_palette(eval_dir: Path, tmp_path: Path) -> None:
    """LA and palette (with a transparent index) images load as RGB."""
    rgb = _crop(eval_dir)
    la = Image.fromarray(_crop(eval_dir)).convert("LA")
    la.save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(loaded.rgb[..., 1], np.asarray(la.getchannel("L")))
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    index = np.asarray(pal)
    pal.save(tmp_path / "pal.png", transparency=int(index[0, 0]))
    loaded = load_image(tmp_path / "pal.png")
    assert loaded.rgb.shape == (300, 420, 3)
    assert tuple(loaded.rgb[0, 0]) == BACKGROUND
    opaque = index != index[0, 0]
    assert _mean_abs(loaded.rgb[opaque], rgb[opaque]) < 6.0  # 64-colour quantisation error


def test_16_bit_gray_png_and_tiff(tmp_path: Path) -> None:
    """16-bit grey is rescaled to 8 bits (v / 257), not clipped at 255."""
    ramp = np.linspace(0, 65535, 64 * 100).reshape(64, 100).round().astype(np.uint16)
    for name in ("g16.png", "g16.tif"):
        Image.fromarray(ramp).save(tmp_path / name)
        loaded = load_image(tmp_path / name)
        assert loaded.rgb.shape == (64, 100, 3)
        np.testing.assert_allclose(loaded.rgb[..., 0], ramp / 257.0, atol=0.51)


def test_16_bit_rgb_png_and_tiff(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (40, 50, 3), dtype=np.uint16)
    for name in ("c16.png", "c16.tif"):
        assert cv2.imwrite(str(tmp_path / name), rgb16[..., ::-1])  # OpenCV writes BGR
        loaded = load_image(tmp_path / name)
        np.testing.assert_allclose(loaded.rgb, rgb16 / 257.0, atol=1.0)


def test_cmyk_jpeg(eval_dir: Path, tmp_path: Path) -> None:
    rgb = _crop(eval_dir)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    loaded = load_image(tmp_path / "cmyk.jpg")
    assert loaded.rgb.shape == (300, 420, 3)
    assert _mean_abs(loaded.rgb, rgb) < 3.0


def test_multi_frame_uses_first(eval_dir: Path, tmp_path: Path) -> None:
    first = Image.fromarray(_crop(eval_dir))
    second = first.transpose(Image.Transpose.ROTATE_180)
    first.save(tmp_path / "frames.tif", save_all=True, append_images=[second])
    loaded = load_image(tmp_path / "frames.tif")
    np.testing.assert_array_equal(loaded.rgb, np.asarray(first))
    assert any("2 frames" in w for w in loaded.warnings)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100)
    loaded = load_image(tmp_path / "anim.gif")
    with Image.open(tmp_path / "anim.gif") as gif:
        np.testing.assert_array_equal(loaded.rgb, np.asarray(gif.convert("RGB")))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR claims width x height pixels, with a token amount of image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(15000, 14000), (30000, 30000)])
def test_decompression_bomb_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    """Headers over the limit are refused before decoding (both our check and Pillow's)."""
    assert size[0] * size[1] > MAX_PIXELS
    path = tmp_path / "bomb.png"
    _png_header_only(path, *size)
    with pytest.raises(BadInputError, match="megapixel"):
        load_image(path)


def test_bad_files(eval_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n")
    with pytest.raises(BadInputError, match="not an image"):
        load_image(text)
    data = (eval_dir / PHOTO).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(BadInputError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(BadInputError, match="Not a file"):
        load_image(tmp_path)
    Image.fromarray(_crop(eval_dir)[:20, :200]).save(tmp_path / "strip.png")
    with pytest.raises(BadInputError, match="200x20 pixels"):
        load_image(tmp_path / "strip.png")
    _png_header_only(tmp_path / "zero.png", 0, 100)
    with pytest.raises(BadInputError):
        load_image(tmp_path / "zero.png")


def _stream_png(path: Path, width: int, height: int, gray16: bool) -> None:
    """A large PNG written row by row (the test never holds the image): left half dark, right
    half bright, RGB 8-bit or gray 16-bit. Compresses ~1000:1 like the issue's 600 KB file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    half = width // 2
    if gray16:
        row = b"\x00" + (struct.pack(">H", 10000) * half + struct.pack(">H", 50000) * (width - half))
    else:
        row = b"\x00" + bytes([40, 40, 40]) * half + bytes([200, 200, 200]) * (width - half)
    ihdr = struct.pack(">IIBBBBB", width, height, 16 if gray16 else 8, 0 if gray16 else 2, 0, 0, 0)
    comp = zlib.compressobj(1)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr))
        for _ in range(height):
            data = comp.compress(row)
            if data:
                f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IDAT", comp.flush()) + chunk(b"IEND", b""))


# Peak memory from /proc/self/status VmHWM (reset by exec); ru_maxrss is not: after fork + exec
# it starts from the parent's peak, so under a large pytest process it measured pytest.
_PEAK_SCRIPT = """
import re, sys
from backend.files.photo import load_image
img = load_image(sys.argv[1], max_side=1024)
hwm_kib = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(img.rgb.shape[0], img.rgb.shape[1], int(img.rgb[:, :200].mean()), int(img.rgb[:, -200:].mean()),
      hwm_kib // 1024)
"""


@pytest.mark.parametrize("size,gray16,limit_mib", [
    ((14000, 14000), False, 1000),  # the 196 MP RGB PNG: 1.6 GB before (full copies)
    ((10000, 10000), True, 600),    # 16-bit gray: the float64 copy alone was 800 MB
])
def test_huge_png_is_decoded_reduced(tmp_path: Path, repo_root: Path, size: tuple[int, int],
                                     gray16: bool, limit_mib: int) -> None:
    """Peak memory of a fresh process loading the photo: the decoded file plus small copies
    (reduced right after decoding, palette/16-bit modes converted per strip, no float64)."""
    import subprocess
    import sys

    path = tmp_path / "huge.png"
    _stream_png(path, *size, gray16=gray16)
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    h, w, dark, bright, peak_mib = map(int, proc.stdout.split())
    assert (h, w) == (1024, 1024)
    expected = (39, 194) if gray16 else (40, 200)  # 10000/257, 50000/257
    assert abs(dark - expected[0]) <= 1 and abs(bright - expected[1]) <= 1
    assert peak_mib < limit_mib, f"peak {peak_mib} MiB"


@pytest.mark.parametrize("mode", ["P", "PT", "1", "I;16"])
def test_reduced_decode_matches_full_conversion(eval_dir: Path, tmp_path: Path, mode: str) -> None:
    """Modes that cannot be averaged as stored are converted strip by strip before reducing;
    the result matches converting the whole photo and resizing it."""
    rgb = np.asarray(Image.open(eval_dir / PHOTO).convert("RGB").resize((2700, 2250)))
    if mode.startswith("P"):
        im = Image.fromarray(rgb).quantize(64)
        if mode == "PT":
            im.info["transparency"] = 0
    elif mode == "1":
        im = Image.fromarray(rgb).convert("L").point(lambda v: 255 * (v > 100)).convert("1")
    else:
        gray = np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 257
        im = Image.frombytes("I;16B", gray.shape[::-1], gray.astype(">u2").tobytes())
    path = tmp_path / "big.png"
    im.save(path)
    loaded = load_image(path, max_side=900)
    ref = load_image(path, max_side=3000).rgb  # not reduced (factor 1): the old path
    ref = np.asarray(Image.fromarray(ref).resize(loaded.rgb.shape[1::-1], Image.Resampling.LANCZOS))
    assert loaded.rgb.shape == (750, 900, 3)
    assert _mean_abs(loaded.rgb, ref) < 4.0
