"""Photo segmentation: which photo pixels show the subject's skin (issue 14 part 1).

Texture, albedo, the photometric fit and the detail stage read the photo only where a pixel
shows skin (face, ears, neck, brows, eyes, lips), so hair, hats, glasses, the mouth interior,
clothing and the background never reach the skin texels; the texels they cover are completed
like unseen ones.

Two TFLite models, run with ``ai-edge-litert`` (single-threaded, deterministic), copied by
``setup-weights`` from ``<assets>/segmentation`` into ``weights/segmentation``:

1. ``face_parsing_bisenetv2_448.tflite``: BiSeNetV2 face parser, 19 classes (``LABELS``), on a
   448 x 448 face-centred crop. Its weights were trained on CelebAMask-HQ, whose terms allow
   non-commercial research only (``PARSER_LICENCE``); used when the file is present.
2. ``hair_segmentation.tflite``: MediaPipe's hair model (Apache-2.0) on the whole frame at
   512 x 512; the fallback, which only tells hair from the rest.
3. Neither: no segmentation, a warning in result.json, the photo is used as before.

The label map (``Segmentation.labels``) uses the parser's class ids; the hair model writes
``HAIR`` (17) and ``NOT_HAIR`` (255). Both are written to the bundle as ``segmentation.png``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import ModelFileError
from ..model.assets import weights_dir
from ..model.pinned import PinnedFile, install_pinned, matches_pin

SEGMENTATION_SUBDIR = "segmentation"
PARSER_FILE = PinnedFile(
    "face_parsing_bisenetv2_448.tflite", "segmentation/face_parsing_bisenetv2_448.tflite",
    2804272, "d0c1fc479bbd40084283043abf01d11a5c3a54b2ecc4bc812cde6f36989ad22a")
HAIR_FILE = PinnedFile(
    "hair_segmentation.tflite", "segmentation/hair_segmentation.tflite",
    780588, "d2c940c4fd80edeaf38f5d7387d1b4235ee320ed120080df67c663e749e77633")
SEGMENTATION_FILES: tuple[PinnedFile, ...] = (PARSER_FILE, HAIR_FILE)
NOTICE_NAME = "NOTICE.txt"

PARSER_NAME = "BiSeNetV2 face parser 448 (CelebAMask-HQ)"
HAIR_NAME = "MediaPipe hair segmentation 512"
PARSER_LICENCE = (
    "Face parser: code and TFLite conversion MIT (terryky/tflite_gles_app, PINTO0309, "
    "MaybeShewill-CV/bisenetv2-tensorflow); the weights are trained on CelebAMask-HQ, whose "
    "terms allow non-commercial research only. Remove weights/segmentation/"
    "face_parsing_bisenetv2_448.tflite for other uses; the hair model (Apache-2.0) then runs.")
HAIR_LICENCE = "Hair model: MediaPipe hair segmentation, Apache-2.0 (Google)."
HANDS_NAME = "MediaPipe hand landmarks (full)"

# The parser's 19 classes (CelebAMask-HQ), index = label id.
LABELS: tuple[str, ...] = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "glasses",
    "left_ear", "right_ear", "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck",
    "necklace", "cloth", "hair", "hat")
HAIR = LABELS.index("hair")
HAND = 19  # not a parser class: pixels inside a hand MediaPipe found (backend/appearance/hands.py)
NOT_HAIR = 255  # hair model only: anything that is not hair (face, body, background)
# Labels whose pixels may colour the head's texels: the subject's own surface. Glasses,
# earrings, the mouth interior, necklace, cloth, hair, hat and background may not.
SKIN_LABELS: tuple[int, ...] = tuple(LABELS.index(n) for n in (
    "skin", "left_brow", "right_brow", "left_eye", "right_eye", "left_ear", "right_ear",
    "nose", "upper_lip", "lower_lip", "neck"))
ERODE_PX = 2  # the allowed area shrinks by this many pixels (labels carry no confidence)

PARSER_SIZE = 448
PARSER_BOX_SCALE = 1.7  # crop side = this x the larger side of the face box
PARSER_SHIFT_UP = 0.10  # crop centre moves up by this fraction of the crop side
HAIR_SIZE = 512
HAIR_THRESHOLD = 0.5  # softmax probability of hair

# Colours of segmentation.png's palette (label id -> RGB); unlisted ids are black.
_PALETTE: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0), 1: (230, 180, 150), 2: (120, 70, 40), 3: (150, 90, 50), 4: (40, 90, 220),
    5: (60, 130, 250), 6: (250, 250, 0), 7: (210, 120, 120), 8: (240, 150, 150),
    9: (255, 0, 255), 10: (250, 140, 60), 11: (90, 0, 30), 12: (200, 40, 60),
    13: (160, 20, 50), 14: (180, 140, 110), 15: (0, 255, 255), 16: (60, 160, 60),
    17: (120, 60, 200), 18: (0, 120, 120), HAND: (255, 120, 0), NOT_HAIR: (128, 128, 128)}


@dataclass
class Segmentation:
    """Labels of the photo the fit works on.

    Attributes:
        labels: (H, W) uint8 label ids (``LABELS``; hair model: HAIR / NOT_HAIR; HAND where a
            detected hand lies), in the pixels of the image given to ``Segmenter.segment``.
        model: "face_parser" or "hair".
        hands: number of hands found (their pixels are labelled HAND); None: not searched.
    """

    labels: np.ndarray
    model: str
    hands: int | None = None

    def skin_mask(self, erode_px: int = ERODE_PX) -> np.ndarray:
        """(H, W) bool: pixels that may colour the head (skin labels, or not hair for the hair
        model), eroded by ``erode_px`` pixels (the image border does not erode)."""
        if self.model == "face_parser":
            keep = np.isin(self.labels, SKIN_LABELS)
        else:
            keep = (self.labels != HAIR) & (self.labels != HAND)
        if erode_px > 0:
            r = erode_px
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            keep = ndimage.binary_erosion(keep, structure=(xx * xx + yy * yy) <= r * r + r,
                                          border_value=1)
        return keep

    def describe(self) -> dict[str, Any]:
        """result.json's ``segmentation`` section (model, label names, licence note)."""
        hands = {"hands": {"model": HANDS_NAME, "found": self.hands, "label": HAND,
                           "licence": "Apache-2.0 (Google)"}} if self.hands is not None else {}
        if self.model == "face_parser":
            return {"model": PARSER_NAME, "labels": list(LABELS),
                    "skin_labels": [LABELS[i] for i in SKIN_LABELS], "erode_px": ERODE_PX,
                    "licence": PARSER_LICENCE, "file": "segmentation.png", **hands}
        return {"model": HAIR_NAME, "labels": {str(HAIR): "hair", str(NOT_HAIR): "not hair"},
                "skin_labels": ["not hair"], "erode_px": ERODE_PX, "licence": HAIR_LICENCE,
                "file": "segmentation.png", **hands}

    def resized(self, width: int, height: int) -> np.ndarray:
        """(height, width) uint8 labels at another resolution of the same image (nearest)."""
        H, W = self.labels.shape
        if (W, H) == (width, height):
            return self.labels.copy()
        ys = np.minimum(((np.arange(height) + 0.5) * H / height).astype(np.int64), H - 1)
        xs = np.minimum(((np.arange(width) + 0.5) * W / width).astype(np.int64), W - 1)
        return self.labels[ys[:, None], xs[None, :]]


def segmentation_png(labels: np.ndarray) -> Image.Image:
    """A palette PNG image of (H, W) uint8 labels: its pixel values are the label ids."""
    img = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    pal = [0] * 768
    for k, rgb in _PALETTE.items():
        pal[3 * k:3 * k + 3] = list(rgb)
    img.putpalette(pal)
    return img


class _Model:
    """One TFLite model on ai-edge-litert's interpreter (one thread: deterministic)."""

    def __init__(self, path: Path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - the package is in requirements.txt
            raise ModelFileError(f"ai-edge-litert is not installed ({exc}); run ./setup.sh.") from exc
        try:
            self._it = Interpreter(model_path=str(path), num_threads=1)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path} is not a loadable TFLite model ({exc}).") from exc
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self.input_shape = tuple(int(s) for s in self._in["shape"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in["index"], x.astype(self._in["dtype"]))
        self._it.invoke()
        return self._it.get_tensor(self._out["index"]).copy()


class Segmenter:
    """Runs the face parser (``parser``) or else the hair model (``hair``) on a photo.

    Not thread-safe (one interpreter per model); the pipeline calls it from one thread.
    """

    def __init__(self, parser: Path | None, hair: Path | None, hands: Any = None):
        self.hand_detector = hands  # backend.appearance.hands.HandDetector or None
        self.parser = _Model(parser) if parser is not None else None
        self.hair = _Model(hair) if hair is not None and self.parser is None else None
        if self.parser is None and self.hair is None:
            raise ValueError("Segmenter needs at least one model file.")
        if self.parser is not None and self.parser.input_shape != (1, PARSER_SIZE, PARSER_SIZE, 3):
            raise ModelFileError(f"{parser} does not take a {PARSER_SIZE}x{PARSER_SIZE} RGB image.")
        if self.hair is not None and self.hair.input_shape != (1, HAIR_SIZE, HAIR_SIZE, 4):
            raise ModelFileError(f"{hair} does not take a {HAIR_SIZE}x{HAIR_SIZE}x4 image.")

    @property
    def model(self) -> str:
        return "face_parser" if self.parser is not None else "hair"

    def segment(self, rgb: np.ndarray, face_xy: np.ndarray | None = None) -> Segmentation:
        """Label every pixel of a photo.

        Args:
            rgb: (H, W, 3) uint8 RGB photo.
            face_xy: (K, 2) face landmark pixels (e.g. MediaPipe's 478), for the parser's
                face-centred crop; required by the parser.
        Returns:
            Segmentation with (H, W) labels (HAND over the hands when a hand detector is set).
        """
        if self.parser is not None:
            if face_xy is None or len(face_xy) == 0:
                raise ValueError("The face parser needs the face's landmarks.")
            seg = Segmentation(parse_face(self.parser, rgb, np.asarray(face_xy)), "face_parser")
        else:
            assert self.hair is not None
            seg = Segmentation(segment_hair(self.hair, rgb), "hair")
        if self.hand_detector is not None:
            from .hands import hand_mask

            found = self.hand_detector.detect(rgb)
            seg.hands = len(found)
            if found:
                seg.labels[hand_mask(rgb.shape[:2], found)] = HAND
        return seg


def parser_crop_box(face_xy: np.ndarray) -> tuple[float, float, float]:
    """(left, top, side) in photo pixels of the parser's square crop: the points' bounding box
    times PARSER_BOX_SCALE, shifted up by PARSER_SHIFT_UP of its side. face_xy: (K, 2)."""
    lo, hi = face_xy.min(0), face_xy.max(0)
    side = float(max(hi - lo)) * PARSER_BOX_SCALE
    cx, cy = float(lo[0] + hi[0]) / 2.0, float(lo[1] + hi[1]) / 2.0 - PARSER_SHIFT_UP * side
    return cx - side / 2.0, cy - side / 2.0, max(side, 8.0)


def parse_face(model: _Model, rgb: np.ndarray, face_xy: np.ndarray) -> np.ndarray:
    """(H, W) uint8 parser labels of ``rgb`` (H, W, 3); pixels outside the crop: background."""
    H, W = rgb.shape[:2]
    left, top, side = parser_crop_box(face_xy)
    x0, y0 = int(np.floor(left)), int(np.floor(top))
    n = int(np.ceil(side))
    # The crop (zero outside the photo), then an antialiased resize to the network's input.
    crop = np.zeros((n, n, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, W), min(y0 + n, H)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    small = np.asarray(Image.fromarray(crop).resize((PARSER_SIZE, PARSER_SIZE), Image.BILINEAR),
                       np.float32)
    x = ((small / 255.0 - 0.5) / 0.5)[None]
    out = model(x).reshape(PARSER_SIZE, PARSER_SIZE).astype(np.int64)
    # Back to photo pixels (nearest label at each pixel centre).
    scale = PARSER_SIZE / n
    js = np.floor((np.arange(W) + 0.5 - x0) * scale).astype(np.int64)
    is_ = np.floor((np.arange(H) + 0.5 - y0) * scale).astype(np.int64)
    inside = ((is_ >= 0) & (is_ < PARSER_SIZE))[:, None] & ((js >= 0) & (js < PARSER_SIZE))[None, :]
    labels = out[np.clip(is_, 0, PARSER_SIZE - 1)[:, None], np.clip(js, 0, PARSER_SIZE - 1)[None, :]]
    labels = np.where(inside, labels, 0)
    return np.clip(labels, 0, 255).astype(np.uint8)


def segment_hair(model: _Model, rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint8 labels of ``rgb`` (H, W, 3): HAIR or NOT_HAIR (hair model, whole frame)."""
    H, W = rgb.shape[:2]
    small = np.asarray(Image.fromarray(rgb).resize((HAIR_SIZE, HAIR_SIZE), Image.BILINEAR),
                       np.float32) / 255.0
    x = np.concatenate([small, np.zeros((HAIR_SIZE, HAIR_SIZE, 1), np.float32)], -1)[None]
    logits = model(x)[0].astype(np.float64)  # (512, 512, 2)
    z = logits - logits.max(-1, keepdims=True)
    prob = np.exp(z[..., 1]) / np.exp(z).sum(-1)
    prob_full = np.asarray(Image.fromarray(prob.astype(np.float32), mode="F")
                           .resize((W, H), Image.BILINEAR))
    return np.where(prob_full > HAIR_THRESHOLD, HAIR, NOT_HAIR).astype(np.uint8)


def setup_segmentation(assets: Path, target: Path | None = None) -> Path:
    """Copy the two segmentation models from ``<assets>/segmentation`` into
    ``weights/segmentation`` with a licence notice (NOTICE.txt).

    Files already present with the pinned size and SHA-256 are left alone. A missing source is
    skipped with a message (the product works without either model).

    Returns:
        The folder holding the files.
    Raises:
        ModelFileError: a source file is present but differs from the pinned one.
    """
    dest_dir = Path(target) if target is not None else weights_dir() / SEGMENTATION_SUBDIR
    install_pinned(SEGMENTATION_FILES, lambda: Path(assets), dest_dir,
                   "it must be the segmentation model of the assets folder.", missing_ok=True)
    notice = ("Segmentation models used by HeadRecon (backend/appearance/segmentation.py).\n\n"
              f"{PARSER_FILE.name}: {PARSER_LICENCE}\n"
              "Source: terryky/tflite_gles_app@bfc2015a gl2face_segmentation/model/"
              "bisenetv2_celebamaskhq_448x448_integer_quant.tflite.\n\n"
              f"{HAIR_FILE.name}: {HAIR_LICENCE}\n"
              "Source: terryky/tflite_gles_app@bfc2015a gl2hair_segmentation/"
              "hair_segmentation_model/ (Google's published file).\n\n"
              "palm_detection_full.tflite, hand_landmark_full.tflite, handedness.txt: MediaPipe "
              "hand landmarks, Apache-2.0 (Google), copied from the mediapipe 0.10.14 wheel.\n")
    (dest_dir / NOTICE_NAME).write_text(notice)
    return dest_dir


def load_segmenter(weights: str | os.PathLike[str] | None = None, hands: bool = True,
                   ) -> tuple[Segmenter | None, list[str]]:
    """The face parser from ``weights/segmentation``, else the hair model, else None; with the
    hand detector (``hands.HandDetector``) when ``hands`` and its files are there.

    A missing or unloadable file never stops a reconstruction.

    Returns:
        (segmenter or None, warnings for result.json).
    """
    folder = weights_dir(weights) / SEGMENTATION_SUBDIR
    warnings: list[str] = []
    for pin, hair_only in ((PARSER_FILE, False), (HAIR_FILE, True)):
        path = folder / pin.name
        if not path.is_file():
            continue
        try:
            seg = Segmenter(None, path) if hair_only else Segmenter(path, None)
        except ModelFileError as exc:
            warnings.append(f"Segmentation model unusable: {exc}")
            continue
        if not matches_pin(path, pin):
            warnings.append(f"{path} is not the pinned segmentation model; using it as it loads.")
        if hands:
            from .hands import HandDetector

            try:
                seg.hand_detector = HandDetector(weights)
            except ModelFileError as exc:
                warnings.append(f"{exc} Hands over the face are not kept out of the texture.")
        if hair_only:
            warnings.append("The face parser is missing; only hair is kept out of the skin "
                            "texture (hats, glasses, clothing and background are not).")
        return seg, warnings
    warnings.append(f"No segmentation model ({folder}); hair, glasses and clothing may be "
                    "painted into the skin texture. Run ./setup.sh.")
    return None, warnings
