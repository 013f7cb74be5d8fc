"""MediaPipe face mesh (478 points with iris refinement), fully offline, models from weights/.

The stock MediaPipe CPU subgraphs (``FaceDetectionShortRangeCpu``,
``FaceDetectionFullRangeCpu``, ``FaceLandmarkCpu``) are expanded into plain calculator graphs
and every model path in them is rewritten to an absolute path under ``weights/mediapipe/``
(put there by ``python -m backend setup-weights``), so the models inside the mediapipe
wheel are never read.

Detection strategy for one photo:

1. Face boxes: the short-range (close faces, tight crops) and full-range detectors on the
   whole image turned by 0, 90, 180 and 270 degrees (a face is scored highest, with reliable
   eye keypoints, when upright), plus the full-range detector on a pyramid of overlapping
   upright square tiles (faces down to ``min_face_px`` in a large photo), merged by
   non-maximum suppression.
2. Each box becomes a rotated square region (eye line horizontal, 1.5x the box) that the
   face-mesh model crops from the full-resolution image at 192x192; a second pass uses the
   region computed from the first pass's landmarks (as MediaPipe's tracker does).
3. Verification: the short-range detector must find the face again (score >= 0.7) in an
   upright crop around the landmarks; this drops clutter that fooled a detector and the
   mesh model (whose own presence flag accepts almost anything). Duplicates are merged.

Thread safety: a ``FaceLandmarker`` serialises calls with a lock, so one instance can be shared
by threads (calls run one at a time).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..model.assets import weights_dir
from ..errors import BadInputError, ModelFileError
from ..model.pinned import matches_pin
from .mediapipe_files import MEDIAPIPE_FILES, MEDIAPIPE_SUBDIR, offline_graph_text

log = logging.getLogger(__name__)
# mediapipe's packet_getter calls a protobuf API that warns on every first use; not actionable.
warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)

N_POINTS = 478
# The models the graphs load (face_landmark.tflite, the 468-point mesh without attention, is
# only named by the graph's unused switch branch).
MODEL_FILES: tuple[str, ...] = (
    "face_detection_short_range.tflite",
    "face_detection_full_range_sparse.tflite",
    "face_landmark_with_attention.tflite",
)
DETECT_SIDE = 384  # images are shrunk to this long side before a detector sees them
VERIFY_SIZE = 128  # the short-range detector's input side
VERIFY_THRESHOLD = 0.7  # eval faces score 0.80-0.96 on the verification crop, clutter < 0.65
ROI_SCALE = 1.5  # MediaPipe's detection/landmarks -> region enlargement
FULL_RANGE_MIN_FRACTION = 0.1  # the full-range detector finds faces >= ~10% of its input side
NMS_OVERLAP = 0.5  # detector boxes overlapping more (intersection / smaller area) are one face
DUPLICATE_OVERLAP = 0.5  # the same for final landmark boxes
# MediaPipe mesh indices of the outer eye corners (subject's right, left): roll of the region.
EYE_CORNERS = (33, 263)

_DETECTOR_GRAPH = """
input_stream: "IMAGE:image"
output_stream: "DETECTIONS:detections"
node {{ calculator: "{subgraph}" input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }}
"""
_MESH_GRAPH = """
input_stream: "IMAGE:image"
input_stream: "ROI:roi"
input_side_packet: "WITH_ATTENTION:with_attention"
output_stream: "LANDMARKS:landmarks"
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:landmarks"
}
"""


@dataclass
class FaceLandmarks:
    """One face found in an image.

    Attributes:
        points: (478, 3) float32; x, y in input-image pixels (origin top-left corner of the
            top-left pixel), z in pixels (MediaPipe's relative depth, smaller = nearer).
        bbox: (x0, y0, x1, y1) pixel bounds of ``points`` (x, y).
        score: short-range detector score on the upright crop around ``points``, in
            [VERIFY_THRESHOLD, 1] (the verification step).
    """

    points: np.ndarray
    bbox: tuple[float, float, float, float]
    score: float

    @property
    def size(self) -> float:
        """sqrt(width * height) of ``bbox`` in pixels."""
        x0, y0, x1, y1 = self.bbox
        return float(math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))


@dataclass
class _Box:
    """A detector box in pixels with its two eye keypoints (subject's right eye first)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    eye_r: tuple[float, float]
    eye_l: tuple[float, float]


@dataclass
class _Region:
    """A rotated square crop in pixels: centre, side, rotation (radians, MediaPipe's sign)."""

    cx: float
    cy: float
    side: float
    rotation: float


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection area over the smaller box's area (1 when one box contains the other)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


def _region_from_points(x0: float, y0: float, x1: float, y1: float,
                        start: tuple[float, float], end: tuple[float, float]) -> _Region:
    """MediaPipe's DetectionsToRects + RectTransformation(scale 1.5, square_long) in pixels."""
    rotation = -math.atan2(-(end[1] - start[1]), end[0] - start[0])
    rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
    side = max(x1 - x0, y1 - y0) * ROI_SCALE
    return _Region((x0 + x1) / 2, (y0 + y1) / 2, side, rotation)


def _unrotate(box: _Box, quarter_turns: int, w: int, h: int) -> _Box:
    """Map a box found in ``np.rot90(image, quarter_turns)`` back into the (w, h) image."""
    def back(x: float, y: float) -> tuple[float, float]:
        if quarter_turns == 1:
            return w - y, x
        if quarter_turns == 2:
            return w - x, h - y
        if quarter_turns == 3:
            return y, h - x
        return x, y

    (ax, ay), (bx, by) = back(box.x0, box.y0), back(box.x1, box.y1)
    return _Box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by), box.score,
                back(*box.eye_r), back(*box.eye_l))


def _tile_levels(width: int, height: int, min_face_px: float) -> list[tuple[int, list[tuple[int, int, int, int]]]]:
    """Pyramid levels of overlapping square tiles for the full-range detector.

    Level sides halve from half the long image side while a face of ``min_face_px`` is still
    >= FULL_RANGE_MIN_FRACTION of a tile; the stride is half a side, so every face up to half
    a tile lies wholly inside some tile of its level. The whole image (level 0) is excluded.

    Returns:
        [(side, [(x0, y0, x1, y1), ...]), ...] in pixels, coarsest level first.
    """
    levels: list[tuple[int, list[tuple[int, int, int, int]]]] = []
    side = max(width, height) / 2
    while side * FULL_RANGE_MIN_FRACTION >= min_face_px:
        s = int(round(side))

        def starts(extent: int) -> list[int]:
            if extent <= s:
                return [0]
            n = math.ceil((extent - s) / (s / 2)) + 1
            return [int(round(i * (extent - s) / (n - 1))) for i in range(n)]

        levels.append((s, [(x, y, min(x + s, width), min(y + s, height))
                           for y in starts(height) for x in starts(width)]))
        side /= 2
    return levels


def _shrink(rgb: np.ndarray, factor: float) -> np.ndarray:
    """``rgb`` (H, W, 3) resized by ``factor`` <= 1 with area averaging (unchanged at 1)."""
    if factor >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


class FaceLandmarker:
    """Holds the MediaPipe graphs loaded once; ``detect_faces`` can be called many times.

    Args:
        weights: the weights folder (default ``weights_dir()``); the models are read from
            its ``mediapipe/`` subfolder.
        min_face_px: smallest face box side (pixels) the tiled search looks for.
    Raises:
        ModelFileError: a model file is missing or damaged, or the graphs cannot start.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None, min_face_px: float = 48.0) -> None:
        self.model_dir = weights_dir(weights) / MEDIAPIPE_SUBDIR
        self.min_face_px = float(min_face_px)
        pins = [p for p in MEDIAPIPE_FILES if p.name in MODEL_FILES]
        missing = [p.name for p in pins if not (self.model_dir / p.name).is_file()]
        if missing:
            raise ModelFileError(
                f"MediaPipe model file(s) {', '.join(missing)} missing in {self.model_dir}; "
                "run ./setup.sh (or python -m backend setup-weights)."
            )
        # TFLite does not validate model files (a damaged one can crash the process): check first.
        damaged = [p.name for p in pins if not matches_pin(self.model_dir / p.name, p)]
        if damaged:
            raise ModelFileError(
                f"MediaPipe model file(s) {', '.join(damaged)} in {self.model_dir} are damaged "
                "(wrong size or SHA-256); run ./setup.sh (or python -m backend setup-weights)."
            )
        from mediapipe.python import packet_creator, packet_getter  # heavy import, on demand
        from mediapipe.python._framework_bindings import image_frame

        self._packet_creator = packet_creator
        self._packet_getter = packet_getter
        self._srgb = image_frame.ImageFormat.SRGB
        self._lock = threading.Lock()
        self._timestamp = 0
        self._short = _Graph(self._graph_text(_DETECTOR_GRAPH.format(subgraph="FaceDetectionShortRangeCpu")),
                             ["detections"], self.model_dir)
        self._full = _Graph(self._graph_text(_DETECTOR_GRAPH.format(subgraph="FaceDetectionFullRangeCpu")),
                            ["detections"], self.model_dir)
        self._mesh = _Graph(self._graph_text(_MESH_GRAPH), ["landmarks"], self.model_dir,
                            side_packets={"with_attention": packet_creator.create_bool(True)})

    def _graph_text(self, graph: str) -> str:
        """Expand the MediaPipe subgraphs and point every model path into ``model_dir``."""
        return offline_graph_text(graph, self.model_dir)

    def _next_ts(self) -> int:
        self._timestamp += 1
        return self._timestamp

    def _image_packet(self, rgb: np.ndarray) -> Any:
        return self._packet_creator.create_image_frame(image_format=self._srgb, data=rgb)

    def _detect_boxes(self, graph: "_Graph", rgb: np.ndarray, ox: float = 0.0, oy: float = 0.0,
                      w: float | None = None, h: float | None = None) -> list[_Box]:
        """Detector boxes in ``rgb`` (H, W, 3), an image of the area (ox, oy, w, h) in pixels
        of the input (w, h default to rgb's own size: no scaling)."""
        h = rgb.shape[0] if h is None else h
        w = rgb.shape[1] if w is None else w
        out = graph.run({"image": self._image_packet(np.ascontiguousarray(rgb))}, self._next_ts())
        boxes = []
        for det in ([] if out["detections"] is None else self._packet_getter.get_proto_list(out["detections"])):
            rb = det.location_data.relative_bounding_box
            kp = det.location_data.relative_keypoints
            boxes.append(_Box(ox + rb.xmin * w, oy + rb.ymin * h, ox + (rb.xmin + rb.width) * w,
                              oy + (rb.ymin + rb.height) * h, float(det.score[0]),
                              (ox + kp[0].x * w, oy + kp[0].y * h), (ox + kp[1].x * w, oy + kp[1].y * h)))
        return boxes

    def _find_boxes(self, rgb: np.ndarray) -> list[_Box]:
        """Detector boxes (whole image at 4 rotations, tile pyramid upright), after NMS."""
        h, w = rgb.shape[:2]
        # The detectors see 128 or 192 pixels: images are first shrunk to DETECT_SIDE with area
        # averaging, which also avoids the aliasing of MediaPipe's own bilinear resize.
        boxes: list[_Box] = []
        small = _shrink(rgb, DETECT_SIDE / max(h, w))
        for quarter_turns in range(4):
            turned = np.rot90(small, quarter_turns)
            tw, th = (w, h) if quarter_turns % 2 == 0 else (h, w)  # input-pixel extent of ``turned``
            for graph in (self._short, self._full):
                boxes += [_unrotate(b, quarter_turns, w, h)
                          for b in self._detect_boxes(graph, turned, w=tw, h=th)]
        for side, tiles in _tile_levels(w, h, self.min_face_px):
            k = min(1.0, DETECT_SIDE / side)
            level = _shrink(rgb, k)
            for x0, y0, x1, y1 in tiles:
                tile = level[round(y0 * k):round(y1 * k), round(x0 * k):round(x1 * k)]
                # A face larger than half a tile, or cut by a tile edge inside the image, is seen
                # whole by a coarser level or a neighbouring tile; here it would be a face part.
                boxes += [b for b in self._detect_boxes(self._full, tile, x0, y0, x1 - x0, y1 - y0)
                          if max(b.x1 - b.x0, b.y1 - b.y0) <= side / 2
                          and (b.x0 > x0 or x0 == 0) and (b.y0 > y0 or y0 == 0)
                          and (b.x1 < x1 or x1 == w) and (b.y1 < y1 or y1 == h)]
        # Highest score first: a face is scored highest in the rotation that shows it upright,
        # where the detector's eye keypoints (and so the region's roll) are reliable.
        boxes.sort(key=lambda b: -b.score)
        kept: list[_Box] = []
        for b in boxes:
            if all(_overlap((b.x0, b.y0, b.x1, b.y1), (k.x0, k.y0, k.x1, k.y1)) < NMS_OVERLAP for k in kept):
                kept.append(b)
        return kept

    def _mesh_in_region(self, image_packet: Any, region: _Region, w: int, h: int) -> np.ndarray | None:
        """The face-mesh model on one region: (478, 3) pixel points, None when it sees no face."""
        from mediapipe.framework.formats import rect_pb2

        roi = rect_pb2.NormalizedRect(x_center=region.cx / w, y_center=region.cy / h,
                                      width=region.side / w, height=region.side / h,
                                      rotation=region.rotation)
        out = self._mesh.run({"image": image_packet, "roi": self._packet_creator.create_proto(roi)},
                             self._next_ts())
        if out["landmarks"] is None:  # presence score below 0.5
            return None
        lms = self._packet_getter.get_proto(out["landmarks"]).landmark
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lms], dtype=np.float32)
        if pts.shape != (N_POINTS, 3):
            raise ModelFileError(f"The face-mesh model returned {pts.shape[0]} points instead of {N_POINTS}.")
        return pts

    def _verify(self, rgb: np.ndarray, points: np.ndarray) -> float:
        """Short-range detector score on the upright crop around ``points`` (0 if none).

        The crop (VERIFY_SIZE^2, eye line horizontal, 1.5x the landmarks' box) frames a real
        face the way the short-range detector likes best; clutter that fooled a detector in
        a tile and the mesh model scores low or not at all there.
        """
        x0, y0 = points[:, :2].min(0)
        x1, y1 = points[:, :2].max(0)
        eye_line = points[EYE_CORNERS[1], :2] - points[EYE_CORNERS[0], :2]
        angle = math.atan2(float(eye_line[1]), float(eye_line[0]))
        k = ROI_SCALE * max(x1 - x0, y1 - y0) / VERIFY_SIZE
        cos, sin, half = math.cos(angle) * k, math.sin(angle) * k, VERIFY_SIZE / 2
        # crop pixel (u, v) <- image point centre + R(angle) k ((u, v) - half)
        crop_to_image = np.array([[cos, -sin, (x0 + x1) / 2 - (cos - sin) * half],
                                  [sin, cos, (y0 + y1) / 2 - (sin + cos) * half]])
        crop = cv2.warpAffine(rgb, crop_to_image, (VERIFY_SIZE, VERIFY_SIZE),
                              flags=cv2.WARP_INVERSE_MAP | cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
        scores = [b.score for b in self._detect_boxes(self._short, crop)
                  if b.x0 < half < b.x1 and b.y0 < half < b.y1]
        return max(scores, default=0.0)

    def detect_faces(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        """All faces in an image, largest first.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
        Returns:
            One FaceLandmarks per face (points (478, 3) in input pixels), sorted by
            decreasing bbox size; empty when there is no face.
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise ValueError(f"detect_faces expects an (H, W, 3) uint8 RGB array, got "
                             f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb).__name__)}.")
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        faces: list[FaceLandmarks] = []
        with self._lock:
            image_packet = self._image_packet(rgb)
            for box in self._find_boxes(rgb):
                region = _region_from_points(box.x0, box.y0, box.x1, box.y1, box.eye_r, box.eye_l)
                for _ in range(2):  # detection region, then the region from the landmarks
                    points = self._mesh_in_region(image_packet, region, w, h)
                    if points is None:
                        break
                    x0, y0 = points[:, :2].min(0)
                    x1, y1 = points[:, :2].max(0)
                    region = _region_from_points(x0, y0, x1, y1, tuple(points[EYE_CORNERS[0], :2]),
                                                 tuple(points[EYE_CORNERS[1], :2]))
                if points is None:
                    continue
                score = self._verify(rgb, points)
                log.debug("candidate %.0f,%.0f,%.0f,%.0f detector %.2f verified %.2f",
                          box.x0, box.y0, box.x1, box.y1, box.score, score)
                if score >= VERIFY_THRESHOLD:
                    faces.append(FaceLandmarks(points, (float(x0), float(y0), float(x1), float(y1)), score))
        faces.sort(key=lambda f: -f.size)
        kept: list[FaceLandmarks] = []
        for face in faces:  # larger first: a face part found twice lies inside its face
            if all(_overlap(face.bbox, k.bbox) < DUPLICATE_OVERLAP for k in kept):
                kept.append(face)
        return kept

    def track_face(self, rgb: np.ndarray, previous: FaceLandmarks) -> FaceLandmarks | None:
        """The face of ``previous`` (the last video frame's) in the next frame, without detection.

        As MediaPipe's own tracker: the face-mesh model runs once on the region computed from
        the previous frame's landmarks (no detectors, no tiles, no second pass), then the
        verification score is taken on the new landmarks. About a tenth of
        :meth:`detect_faces`' time on a 480 px frame.

        Args:
            rgb: (H, W, 3) uint8 RGB frame.
            previous: the face in the previous frame (points in pixels of an image of the same size).
        Returns:
            The face, or None when the mesh model or the verification loses it (then call
            :meth:`detect_faces`).
        """
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise ValueError(f"track_face expects an (H, W, 3) uint8 RGB array, got "
                             f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb).__name__)}.")
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        pts = previous.points
        x0, y0 = pts[:, :2].min(0)
        x1, y1 = pts[:, :2].max(0)
        region = _region_from_points(x0, y0, x1, y1, tuple(pts[EYE_CORNERS[0], :2]),
                                     tuple(pts[EYE_CORNERS[1], :2]))
        with self._lock:
            points = self._mesh_in_region(self._image_packet(rgb), region, w, h)
            if points is None:
                return None
            score = self._verify(rgb, points)
        if score < VERIFY_THRESHOLD:
            return None
        x0, y0 = points[:, :2].min(0)
        x1, y1 = points[:, :2].max(0)
        return FaceLandmarks(points, (float(x0), float(y0), float(x1), float(y1)), score)

    def detect_face(self, rgb: np.ndarray) -> tuple[FaceLandmarks, list[str]]:
        """The largest face in ``rgb`` (H, W, 3) uint8 and warnings (several faces found).

        Raises:
            BadInputError: no face in the image.
        """
        faces = self.detect_faces(rgb)
        if not faces:
            raise BadInputError("No face found in the photo.")
        notes = [f"{len(faces)} faces found; using the largest."] if len(faces) > 1 else []
        return faces[0], notes

    def detect_faces_tiled(self, rgb: np.ndarray, tile: int = 1024) -> list[FaceLandmarks]:
        """All faces in a large image, searched tile by tile at its own resolution.

        For faces too small to be found in a downscaled copy (a 100 px face in a 4000 px
        photo is 25 px at 1024): square tiles of ``tile`` pixels with a stride of half a tile,
        so every face up to half a tile lies wholly inside one; each tile goes through
        :meth:`detect_faces`. A face found in several tiles is kept once.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            tile: tile side in pixels (>= 64).
        Returns:
            FaceLandmarks in ``rgb``'s pixels, largest first; empty when there is no face.
        """
        if tile < 64:
            raise ValueError("tile must be at least 64 pixels")
        h, w = rgb.shape[:2]

        def starts(extent: int) -> list[int]:
            if extent <= tile:
                return [0]
            n = math.ceil((extent - tile) / (tile / 2)) + 1
            return [int(round(i * (extent - tile) / (n - 1))) for i in range(n)]

        faces: list[FaceLandmarks] = []
        for y0 in starts(h):
            for x0 in starts(w):
                crop = np.ascontiguousarray(rgb[y0:y0 + tile, x0:x0 + tile])
                for f in self.detect_faces(crop):
                    pts = f.points.copy()
                    pts[:, 0] += x0
                    pts[:, 1] += y0
                    bx0, by0, bx1, by1 = f.bbox
                    faces.append(FaceLandmarks(pts, (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), f.score))
        faces.sort(key=lambda f: (-f.size, -f.score))
        kept: list[FaceLandmarks] = []
        for face in faces:
            if all(_overlap(face.bbox, k.bbox) < DUPLICATE_OVERLAP for k in kept):
                kept.append(face)
        return kept

    def close(self) -> None:
        """Stop the MediaPipe graphs."""
        with self._lock:
            for graph in (self._short, self._full, self._mesh):
                graph.close()


class _Graph:
    """A started MediaPipe CalculatorGraph fed one packet set at a time (not thread-safe)."""

    def __init__(self, text: str, outputs: list[str], model_dir: Path,
                 side_packets: dict[str, Any] | None = None) -> None:
        from mediapipe.python._framework_bindings import calculator_graph

        self._outputs: dict[str, Any] = {}
        self._names = outputs
        try:
            self._graph = calculator_graph.CalculatorGraph(graph_config=text)
            for name in outputs:
                self._graph.observe_output_stream(name, self._callback(name), True)
            self._graph.start_run(side_packets or {})
        except RuntimeError as exc:
            raise ModelFileError(
                f"Cannot load the MediaPipe models in {model_dir} ({str(exc).strip().splitlines()[0]}); "
                "run ./setup.sh (or python -m backend setup-weights)."
            ) from exc

    def _callback(self, name: str) -> Callable[[str, Any], None]:
        def store(_stream: str, packet: Any) -> None:
            self._outputs[name] = None if packet.is_empty() else packet
        return store

    def run(self, inputs: dict[str, Any], timestamp: int) -> dict[str, Any]:
        """Feed one packet per input stream at ``timestamp`` and wait for the outputs."""
        self._outputs.clear()
        for name, packet in inputs.items():
            self._graph.add_packet_to_input_stream(name, packet.at(timestamp))
        self._graph.wait_until_idle()
        return {name: self._outputs.get(name) for name in self._names}

    def close(self) -> None:
        self._graph.close()


_shared: FaceLandmarker | None = None
_shared_lock = threading.Lock()


def get_landmarker() -> FaceLandmarker:
    """The process-wide FaceLandmarker (created on first use, models from weights/mediapipe)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FaceLandmarker()
        return _shared


def detect_faces(rgb: np.ndarray) -> list[FaceLandmarks]:
    """All faces in ``rgb`` (H, W, 3) uint8, largest first, with the shared FaceLandmarker."""
    return get_landmarker().detect_faces(rgb)


def detect_face(rgb: np.ndarray) -> tuple[FaceLandmarks, list[str]]:
    """The largest face in ``rgb`` (H, W, 3) uint8 and warnings, with the shared FaceLandmarker.

    Raises:
        BadInputError: no face in the image.
    """
    return get_landmarker().detect_face(rgb)
