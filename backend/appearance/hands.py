"""Hands in the photo (MediaPipe hand landmarks, Apache-2.0), so that a hand over the face does
not colour the skin texels (the face parser labels hands skin).

The stock ``HandLandmarkTrackingCpu`` subgraph of ``mediapipe==0.10.14`` is expanded into a plain
calculator graph whose model paths point into ``weights/segmentation/`` (copied there from the
wheel by ``setup-weights``, pinned), as ``landmarks/mediapipe_mesh.py`` does for the face models.
A hand's area is the convex hull of its 21 landmarks, grown by HAND_MARGIN of its size.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ModelFileError
from ..landmarks.mediapipe_files import MEDIAPIPE_VERSION, mediapipe_site_packages, offline_graph_text
from ..model.assets import weights_dir
from ..model.pinned import PinnedFile, install_pinned, matches_pin

HANDS_SUBDIR = "segmentation"
HAND_FILES: tuple[PinnedFile, ...] = (
    PinnedFile("palm_detection_full.tflite",
               "mediapipe/modules/palm_detection/palm_detection_full.tflite", 2339846,
               "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    PinnedFile("hand_landmark_full.tflite",
               "mediapipe/modules/hand_landmark/hand_landmark_full.tflite", 5478917,
               "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
    PinnedFile("handedness.txt", "mediapipe/modules/hand_landmark/handedness.txt", 11,
               "3b82f0246870fec456c8632d455a4e1d5648d2836a7a513a271781144f525916"),
)
MAX_HANDS = 2
HAND_MARGIN = 0.08  # the hull grows by this fraction of the hand's larger extent (finger width)

_GRAPH = """
input_stream: "IMAGE:image"
input_side_packet: "NUM_HANDS:num_hands"
input_side_packet: "MODEL_COMPLEXITY:model_complexity"
input_side_packet: "USE_PREV_LANDMARKS:use_prev_landmarks"
output_stream: "LANDMARKS:hand_landmarks"
node {
  calculator: "HandLandmarkTrackingCpu"
  input_stream: "IMAGE:image"
  input_side_packet: "NUM_HANDS:num_hands"
  input_side_packet: "MODEL_COMPLEXITY:model_complexity"
  input_side_packet: "USE_PREV_LANDMARKS:use_prev_landmarks"
  output_stream: "LANDMARKS:hand_landmarks"
}
"""


class HandDetector:
    """MediaPipe's hand landmarker on single photos (calls serialised by a lock).

    Raises:
        ModelFileError: a model file is missing, damaged, or the graph cannot start.
    """

    def __init__(self, weights: str | os.PathLike[str] | None = None) -> None:
        self.model_dir = weights_dir(weights) / HANDS_SUBDIR
        bad = [p.name for p in HAND_FILES if not matches_pin(self.model_dir / p.name, p)]
        if bad:
            raise ModelFileError(f"Hand model file(s) {', '.join(bad)} missing or damaged in "
                                 f"{self.model_dir}; run ./setup.sh.")
        from mediapipe.python import packet_creator, packet_getter
        from mediapipe.python._framework_bindings import calculator_graph, image_frame

        text = offline_graph_text(_GRAPH, self.model_dir, ("tflite", "txt"))
        self._creator, self._getter = packet_creator, packet_getter
        self._srgb = image_frame.ImageFormat.SRGB
        self._lock = threading.Lock()
        self._ts = 0
        self._out: dict[str, Any] = {}
        try:
            self._graph = calculator_graph.CalculatorGraph(graph_config=text)
            self._graph.observe_output_stream(
                "hand_landmarks",
                lambda _s, p: self._out.__setitem__("h", None if p.is_empty() else p), True)
            self._graph.start_run({"num_hands": packet_creator.create_int(MAX_HANDS),
                                   "model_complexity": packet_creator.create_int(1),
                                   "use_prev_landmarks": packet_creator.create_bool(False)})
        except RuntimeError as exc:
            raise ModelFileError(f"Cannot start the hand graph ({exc}).") from exc

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Hands in a photo: a list of (21, 2) float64 landmark pixels (x, y), origin top-left.

        Args:
            rgb: (H, W, 3) uint8 RGB.
        """
        H, W = rgb.shape[:2]
        with self._lock:
            self._out.clear()
            self._ts += 1
            frame = self._creator.create_image_frame(image_format=self._srgb,
                                                     data=np.ascontiguousarray(rgb))
            self._graph.add_packet_to_input_stream("image", frame.at(self._ts))
            self._graph.wait_until_idle()
            packet = self._out.get("h")
            hands = [] if packet is None else self._getter.get_proto_list(packet)
            return [np.array([[lm.x * W, lm.y * H] for lm in h.landmark], np.float64)
                    for h in hands]

    def close(self) -> None:
        self._graph.close()


def hand_mask(shape: tuple[int, int], hands: list[np.ndarray]) -> np.ndarray:
    """(H, W) bool area of the hands: each (21, 2) landmark set's convex hull, grown by
    HAND_MARGIN of the hand's larger extent."""
    mask = np.zeros(shape, np.uint8)
    for pts in hands:
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        one = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(one, hull, 1)
        r = max(1, int(round(HAND_MARGIN * float((pts.max(0) - pts.min(0)).max()))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask |= cv2.dilate(one, kernel)
    return mask.astype(bool)


def setup_hands(target: Path | None = None) -> Path:
    """Copy the pinned hand models out of the mediapipe wheel into weights/segmentation.

    Returns:
        The folder holding them.
    Raises:
        ModelFileError: the installed wheel does not hold the pinned files.
    """
    dest_dir = Path(target) if target is not None else weights_dir() / HANDS_SUBDIR
    return install_pinned(HAND_FILES, mediapipe_site_packages, dest_dir,
                          f"install mediapipe=={MEDIAPIPE_VERSION} (./setup.sh).")
