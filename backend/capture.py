"""Facial performance capture: ARKit weights plus jaw, eye and head rotations of a known
identity, from one photo or from every frame of a video / image sequence.

Each frame goes through MediaPipe (``engine.detector``) and :func:`backend.fit.arkit_fit.fit_arkit`
with the identity's adapted ARKit shapes precomputed at the landmarks (:class:`CaptureModel`,
:class:`backend.fit.arkit_fit.ArkitRig`). In a sequence the first frame (and the first after a
frame without a face) is detected and fitted from scratch; every other frame takes its
landmarks by MediaPipe tracking from the previous frame's face and starts the fit from the
previous frame's weights, jaw, eyes, head pose and translation for a few LM iterations.
Frames are decoded in a background thread; torch runs on one thread during capture.
Frames where no face is found are marked (``face_found = False``) and filled by linear
interpolation between their neighbours (held at the ends). Finally the weights, rotations
and translations are smoothed over time by a zero-phase Gaussian filter (``smoothing`` =
its sigma in frames, 0 = off), then the weights are clipped back to [0, 1].

Rotations are FLAME-frame axis-angle vectors (radians) of the joints ``root`` (the head
relative to the camera; the fit keeps ``neck`` at 0), ``neck``, ``jaw``, ``eye_L``, ``eye_R``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import BadInputError, Cancelled
from .fit.arkit_fit import REL_TOL, ArkitRig, arkit_flame, fit_arkit
from .options import CancelFn, ProgressFn
from .model.params import FitParams

JOINTS: tuple[str, ...] = ("root", "neck", "jaw", "eye_L", "eye_R")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
COLD_ITERATIONS = 40  # LM iterations of a frame fitted from scratch (fit_arkit's default)
WARM_ITERATIONS = 8  # at most, for a frame started from the previous one (every unknown)
WARM_REL_TOL = 1e-4  # a warm frame stops when an iteration gains less than this fraction
REFERENCE_WARM_ITERATIONS = 12  # warm frames of ``warm_all=False`` (root/translation start only)
PREFETCH_FRAMES = 4  # frames decoded ahead by the background thread
DEFAULT_FPS = 30.0
DEFAULT_SMOOTHING = 1.0  # Gaussian sigma in frames
VIDEO_MAX_SIDE = 640  # frames are downscaled to this longer side before fitting
SOURCE_IDENTITY_QUALITY = "default"  # fit_landmarks quality of a photo's own identity
TRANSFER_RIDGE = 1e-3  # ridge on the ARKit weights of an expression transfer (x mean shape norm^2)


@dataclass
class FrameResult:
    """The capture of one photo or video frame.

    Attributes:
        index: frame number in the sequence (0 for a photo).
        time_s: index / fps.
        face_found: False when no face was detected (values interpolated from neighbours).
        weights: ARKit name -> weight in [0, 1].
        rotations: joint name (``JOINTS``) -> (3,) axis-angle, FLAME frame, radians.
        translation: (3,) view-frame translation of the head, metres.
        rms_px: landmark RMS error of the fit in pixels of the fitted image (None without a face).
    """

    index: int
    time_s: float
    face_found: bool
    weights: dict[str, float]
    rotations: dict[str, list[float]]
    translation: list[float]
    rms_px: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CaptureModel:
    """The ARKit expression space of one identity, ready for :func:`fit_arkit`.

    Args:
        engine: a warm ``backend.pipeline.Engine`` (model, embedding, detector, device).
        identity_shape: (S',) identity coefficients (a bundle's ``identity``); S' <= S of the
            engine's model, missing ones are 0.
        rig: also build the landmark rig for :func:`fit_arkit` (False: only ``names`` and
            ``deltas``, for an expression transfer).
    Raises:
        BadInputError: more identity coefficients than the model has, or non-finite values.
        ModelFileError: the ARKit shapes file is missing (run ./setup.sh).
    """

    def __init__(self, engine: Any, identity_shape: np.ndarray | list[float], rig: bool = True):
        from .model.arkit import arkit_for_identity, load_arkit_on_flame

        model = engine.model
        shape = np.asarray(identity_shape, dtype=np.float64).reshape(-1)
        n_shape = model.shapedirs.shape[2]
        if len(shape) > n_shape or not np.isfinite(shape).all():
            raise BadInputError(f"The identity has {len(shape)} coefficients (finite values, at "
                                f"most {n_shape} for the model {model.name}) expected.")
        names, deltas = getattr(engine, "arkit", None) or load_arkit_on_flame()
        v_neutral = model.v_template + model.shapedirs[:, :, :len(shape)] @ shape
        adapted = arkit_for_identity(deltas, v_neutral, model.v_template, model.faces)
        self.engine = engine
        self.names: list[str] = list(names)
        self.deltas: np.ndarray = adapted  # (A, V, 3) this identity's ARKit shapes
        if not rig:  # the shapes only (expression transfer), no landmark fit
            return
        self.flame = arkit_flame(model, adapted).to(engine.device)
        full = np.zeros(n_shape, np.float32)
        full[:len(shape)] = shape
        self.shape = torch.from_numpy(full)[None].to(engine.device)
        self.rig = ArkitRig(self.flame, engine.embedding, self.shape)

    def fit(self, rgb: np.ndarray, points: np.ndarray, init: FitParams | None,
            iterations: int, cancel: CancelFn | None,
            warm_start: bool = False) -> tuple[FrameResult, FitParams]:
        """Fit one frame whose MediaPipe points are known.

        Args:
            rgb: (H, W, 3) uint8 frame (its size sets the default camera).
            points: (478, 3) MediaPipe points in pixels of ``rgb``.
            init: previous frame's params (pose/translation start) or None.
            iterations: LM iterations (at most).
            warm_start: start every unknown (weights, jaw, eyes too) from ``init``.
        Returns:
            (FrameResult with index 0, the fitted FitParams).
        """
        h, w = rgb.shape[:2]
        fit = fit_arkit(self.flame, self.engine.embedding, points, self.shape, self.names,
                        image_size=(w, h), init=init, iterations=iterations, cancel=cancel,
                        rig=self.rig, warm_start=warm_start,
                        rel_tol=WARM_REL_TOL if warm_start else REL_TOL)
        pose = fit.params.pose[0].detach().cpu().numpy().astype(np.float64)
        result = FrameResult(
            index=0, time_s=0.0, face_found=True,
            weights={n: float(v) for n, v in zip(self.names, fit.weights)},
            rotations={j: pose[k].tolist() for k, j in enumerate(JOINTS)},
            translation=fit.params.translation[0].detach().cpu().numpy().astype(float).tolist(),
            rms_px=round(float(fit.rms_px), 4), timings=dict(fit.timings))
        return result, fit.params


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored afterwards).

    The capture fit is hundreds of tiny tensor operations; with more threads on a busy CPU
    the OpenMP hand-offs cost far more than the arithmetic (a fit measured 50x slower with two
    threads on two loaded cores than with one).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_photo_flame(engine: Any, rgb: np.ndarray, points: np.ndarray,
                    cancel: CancelFn | None = None) -> Any:
    """The full landmark fit of a photo (``fit_landmarks``: its own identity, FLAME expression,
    eyelids, pose), fused with the large-pose network when the engine has it, at
    ``SOURCE_IDENTITY_QUALITY``.

    Args:
        rgb: (H, W, 3) uint8 photo; points: (478, 3) its MediaPipe points.
    Returns:
        ``FitResult`` (``.params``, ``.rms_px``).
    """
    from .fit.landmark_fit import fit_landmarks
    from .landmarks.ibug68 import MEDIAPIPE_TO_IBUG68

    network = None
    if getattr(engine, "tddfa", None) is not None:
        network = engine.tddfa.predict(rgb, points[list(MEDIAPIPE_TO_IBUG68), :2])
    h, w = rgb.shape[:2]
    return fit_landmarks(engine.flame, engine.embedding, points, image_size=(w, h),
                         quality=SOURCE_IDENTITY_QUALITY, cancel=cancel, network=network)


def expression_displacement(engine: Any, params: FitParams) -> np.ndarray:
    """(V, 3) float64 rest-pose offsets of a fit's expression and eyelids (FLAME's expression
    and eyelid blendshapes do not depend on the identity, so they hold for any head)."""
    flame = engine.flame
    zero_pose = torch.zeros_like(params.pose)
    with torch.no_grad():
        moved = flame(params.shape, params.expression, zero_pose, None, params.eyelids).v_shaped
        rest = flame(params.shape, torch.zeros_like(params.expression), zero_pose, None,
                     torch.zeros_like(params.eyelids)).v_shaped
    return (moved - rest)[0].cpu().numpy().astype(np.float64)


def solve_arkit_weights(model: Any, names: list[str], deltas: np.ndarray,
                        displacement: np.ndarray) -> dict[str, float]:
    """ARKit weights in [0, 1] whose shapes reproduce a rest-pose displacement:
    ``argmin ||sum_k w_k deltas_k - displacement||^2 + TRANSFER_RIDGE ||w||^2`` over the
    vertices outside the eyeballs (bounded least squares).

    The jaw's opening and the gaze are the fit's jaw and eye rotations, so ``jawOpen`` and the
    ``eyeLook*`` shapes are left out (weight 0).

    Args:
        model: the FLAME model data (``weights`` for the eyeballs).
        names: (A,) ARKit names; deltas: (A, V, 3) the head's ARKit shapes.
        displacement: (V, 3) the expression to reproduce.
    """
    from scipy.optimize import lsq_linear

    eyes = (model.weights[:, 3] > 0.5) | (model.weights[:, 4] > 0.5)
    used = [k for k, n in enumerate(names) if n != "jawOpen" and not n.startswith("eyeLook")]
    a = np.asarray(deltas, np.float64)[used][:, ~eyes].reshape(len(used), -1).T
    b = np.asarray(displacement, np.float64)[~eyes].reshape(-1)
    scale = float(np.linalg.norm(a, axis=0).mean()) or 1.0
    a_reg = np.vstack([a, np.sqrt(TRANSFER_RIDGE) * scale * np.eye(len(used))])
    b_reg = np.concatenate([b, np.zeros(len(used))])
    w = lsq_linear(a_reg, b_reg, bounds=(0.0, 1.0), method="bvls").x
    out = {n: 0.0 for n in names}
    out.update({names[k]: float(v) for k, v in zip(used, w)})
    return out


def capture_photo(engine: Any, identity_shape: np.ndarray | list[float],
                  photo: str | os.PathLike[str] | np.ndarray, max_side: int = 1024,
                  cancel: CancelFn | None = None, own_identity: bool = True) -> FrameResult:
    """ARKit weights and jaw/eye/head rotations of the face in one photo, for the head whose
    identity is ``identity_shape``.

    The photo may show another person. With ``own_identity`` (default) identity and expression
    are separated first: the full FLAME fit of the photo (:func:`fit_photo_flame`, the photo's
    own identity, FLAME expression, eyelids, jaw, eyes, head) and then the expression, a rest-pose
    displacement that does not depend on the identity, is solved in ARKit space on the head's
    own ARKit shapes (:func:`solve_arkit_weights`); jaw, eye and head rotations are the fit's.
    Without it the ARKit weights are fitted to the landmarks on the head's identity directly
    (``fit_arkit``), and the shape difference between the two faces leaks into the expression
    (another face's fuller cheeks read as ``cheekPuff``, its eyes as ``eyeWide``).

    Args:
        engine: warm ``Engine``.
        identity_shape: (S',) identity coefficients of the head.
        photo: image path or (H, W, 3) uint8 RGB array.
        max_side: the photo is downscaled to this longer side.
        own_identity: separate the photo's identity first (default).
    Raises:
        BadInputError: unreadable photo or no face. Cancelled: ``cancel()`` returned True.
    """
    from .files.photo import load_image

    rgb = load_image(photo, max_side=max_side).rgb if not isinstance(photo, np.ndarray) \
        else _checked_rgb(photo)
    face, _ = engine.detector.detect_face(rgb)
    if not own_identity:
        with single_thread():
            result, _ = CaptureModel(engine, identity_shape).fit(rgb, face.points, None,
                                                                 COLD_ITERATIONS, cancel)
        return result
    t0 = time.perf_counter()
    fit = fit_photo_flame(engine, rgb, face.points, cancel)
    t1 = time.perf_counter()
    target = CaptureModel(engine, identity_shape, rig=False)
    weights = solve_arkit_weights(engine.model, target.names, target.deltas,
                                  expression_displacement(engine, fit.params))
    pose = fit.params.pose[0].detach().cpu().numpy().astype(np.float64)
    return FrameResult(
        index=0, time_s=0.0, face_found=True, weights=weights,
        rotations={j: pose[k].tolist() for k, j in enumerate(JOINTS)},
        translation=fit.params.translation[0].detach().cpu().numpy().astype(float).tolist(),
        rms_px=round(float(fit.rms_px), 4),
        timings={"fit_photo": t1 - t0, "solve_arkit": time.perf_counter() - t1})


def _checked_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadInputError(f"A frame must be an (H, W, 3) uint8 RGB array, not {rgb.dtype} "
                            f"{rgb.shape}.")
    return rgb


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files of a folder in natural order (``f2.png`` before ``f10.png``)."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise BadInputError(f"The folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return sorted(files, key=_natural_key)


def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    scale = max_side / max(rgb.shape[:2])
    if scale >= 1.0:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


@dataclass
class FrameSource:
    """Frames of a video, an image folder or arrays: ``frames`` yields (H, W, 3) uint8 RGB.

    Attributes:
        frames: the frame iterator.
        count: number of frames when known (for progress), else None.
        fps: frame rate of the source (the video's, else None).
    """

    frames: Iterator[np.ndarray]
    count: int | None
    fps: float | None


def open_frames(source: str | os.PathLike[str] | Iterable[np.ndarray],
                max_side: int = VIDEO_MAX_SIDE) -> FrameSource:
    """Open a video file (OpenCV), a folder of images (natural order) or an iterable of arrays.

    Raises:
        BadInputError: missing path, unreadable video, empty folder.
    """
    if not isinstance(source, (str, os.PathLike)):
        count = len(source) if isinstance(source, Sized) else None
        return FrameSource((_downscale(_checked_rgb(f), max_side) for f in source), count, None)
    path = Path(source)
    if path.is_dir():
        from .files.photo import load_image

        files = image_files(path)
        return FrameSource((load_image(f, max_side=max_side).rgb for f in files), len(files), None)
    if not path.is_file():
        raise BadInputError(f"Video or image folder not found: {path}.")
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise BadInputError(f"{path.name} cannot be read as a video.")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or None

    def read() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield _downscale(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_side)
        finally:
            cap.release()

    return FrameSource(read(), count, fps)


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian filter along axis 0; the kernel is renormalised at the ends.

    Args:
        values: (N, ...) per-frame values.
        sigma: standard deviation in frames (<= 0: unchanged copy).
    Returns:
        (N, ...) smoothed values.
    """
    values = np.asarray(values, np.float64)
    if sigma <= 0 or len(values) < 2:
        return values.copy()
    radius = int(np.ceil(3.0 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    flat = values.reshape(len(values), -1)
    out = np.empty_like(flat)
    for i in range(len(flat)):
        lo, hi = max(0, i - radius), min(len(flat), i + radius + 1)
        k = taps[lo - i + radius:hi - i + radius]
        out[i] = k @ flat[lo:hi] / k.sum()
    return out.reshape(values.shape)


def _fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames where ``found`` is False (held at the ends)."""
    idx = np.arange(len(values))
    flat = values.reshape(len(values), -1).copy()
    for c in range(flat.shape[1]):
        flat[~found, c] = np.interp(idx[~found], idx[found], flat[found, c])
    return flat.reshape(values.shape)


def smooth_results(results: list[FrameResult], smoothing: float) -> list[FrameResult]:
    """Interpolate frames without a face, then smooth weights, rotations and translations.

    Args:
        results: per-frame fits (frames without a face may hold anything).
        smoothing: Gaussian sigma in frames (0: interpolation only).
    Returns:
        New FrameResults (same order, ``face_found`` and ``rms_px`` kept); weights in [0, 1].
    Raises:
        BadInputError: no frame has a face.
    """
    found = np.array([r.face_found for r in results], bool)
    if not found.any():
        raise BadInputError("No face was found in any frame.")
    names = list(next(r for r in results if r.face_found).weights)
    w = np.array([[r.weights.get(n, 0.0) for n in names] for r in results])
    rot = np.array([[r.rotations.get(j, [0.0] * 3) for j in JOINTS] for r in results])
    trans = np.array([r.translation for r in results])
    w, rot, trans = (gaussian_smooth(_fill_missing(a, found), smoothing) for a in (w, rot, trans))
    w = np.clip(w, 0.0, 1.0)
    return [replace(r, weights={n: float(v) for n, v in zip(names, w[i])},
                    rotations={j: rot[i, k].tolist() for k, j in enumerate(JOINTS)},
                    translation=trans[i].tolist()) for i, r in enumerate(results)]


class _Prefetch:
    """Decodes frames in a background thread, ``depth`` ahead of the consumer.

    Iterating yields the source's frames in order; an exception of the source is raised in
    the consumer at that frame. :meth:`close` stops the thread (it may finish one frame).
    """

    _END = object()

    def __init__(self, frames: Iterator[np.ndarray], depth: int = PREFETCH_FRAMES):
        import queue
        import threading

        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._frames = frames
        self._thread = threading.Thread(target=self._run, name="headrecon-decode", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False when stopped first."""
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        item: Any = self._END
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
        except BaseException as exc:  # handed to the consumer
            item = exc
        self._put(item)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a duration."""
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(done: int, total: int | None, elapsed_s: float) -> str:
    """``frame 42/900, 31.2 frames/s, 0:27 left`` (no time left when the count is unknown).

    Args:
        done: frames finished; total: frames in the source or None; elapsed_s: wall time so far.
    """
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    text = f"frame {done}" + (f"/{total}" if total else "") + f", {rate:.1f} frames/s"
    if total and rate > 0:
        text += f", {_clock((total - done) / rate)} left"
    return text


@dataclass
class SequenceTimings:
    """Mean milliseconds per frame of a :func:`capture_sequence` run.

    Attributes:
        detect_ms: MediaPipe (tracking from the previous frame, full detection when lost).
        fit_ms: ARKit/jaw/eye/head fit.
        total_ms: wall time per frame of the whole loop (decoding waits included).
        frames: frames processed; tracked: frames whose landmarks came from tracking.
        stopped: the run was stopped early (``stop``) and holds the frames before.
    """

    detect_ms: float = 0.0
    fit_ms: float = 0.0
    total_ms: float = 0.0
    frames: int = 0
    tracked: int = 0
    stopped: bool = False


def capture_sequence(engine: Any, identity_shape: np.ndarray | list[float],
                     frames: str | os.PathLike[str] | Iterable[np.ndarray],
                     fps: float | None = None, smoothing: float = DEFAULT_SMOOTHING,
                     progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                     max_side: int = VIDEO_MAX_SIDE, stop: CancelFn | None = None,
                     timings: SequenceTimings | None = None,
                     track: bool = True, warm_all: bool = True) -> tuple[list[FrameResult], float]:
    """Capture every frame of a video, an image folder or an iterable of RGB arrays.

    Per frame: landmarks by MediaPipe tracking from the previous frame's face
    (``FaceLandmarker.track_face``; full detection for the first frame and whenever tracking
    loses the face), then the ARKit fit on the identity's precomputed :class:`ArkitRig`, warm
    started from the previous frame (every unknown) for at most ``WARM_ITERATIONS``. Frames
    are decoded ahead in a background thread.

    Args:
        engine: warm ``Engine``.
        identity_shape: (S',) identity coefficients of the head.
        frames: video path, folder of images, or iterable of (H, W, 3) uint8 RGB arrays.
        fps: frame rate for ``time_s``; None = the video's, else 30.
        smoothing: Gaussian sigma in frames (0 = off).
        progress: ``progress("capture", fraction, "frame i/N, R frames/s, m:ss left")`` after
            every frame.
        cancel: returns True to stop and discard (checked before every frame and inside fits).
        max_side: frames are downscaled to this longer side.
        stop: returns True to stop and keep the frames captured so far (checked before every
            frame); the result then holds only those frames.
        timings: filled with mean per-frame times when given.
        track: False runs full detection on every frame (for comparison).
        warm_all: False starts only root and translation from the previous frame and runs
            ``REFERENCE_WARM_ITERATIONS`` (the method before tracking and full warm starts, kept
            for comparison by benchmarks/bench_capture.py).
    Returns:
        (one FrameResult per frame, the fps used).
    Raises:
        BadInputError: unreadable source, no frames, no face in any frame.
        Cancelled: ``cancel()`` returned True.
    """
    source = open_frames(frames, max_side)
    rate = float(fps or source.fps or DEFAULT_FPS)
    if rate <= 0:
        raise BadInputError(f"The frame rate must be positive, not {rate}.")
    model = CaptureModel(engine, identity_shape)
    detector = engine.detector
    can_track = track and hasattr(detector, "track_face")
    results: list[FrameResult] = []
    init: FitParams | None = None
    face: Any = None
    t_detect = t_fit = 0.0
    n_tracked = 0
    stopped = False
    frames_in = _Prefetch(source.frames)
    t_start = time.perf_counter()
    threads = single_thread()
    threads.__enter__()
    try:
        for i, rgb in enumerate(frames_in):
            if cancel is not None and cancel():
                raise Cancelled("Capture cancelled.")
            if stop is not None and stop():
                stopped = True
                break
            t0 = time.perf_counter()
            tracked = detector.track_face(rgb, face) if can_track and face is not None else None
            if tracked is None:
                faces = detector.detect_faces(rgb)
                face = faces[0] if faces else None
            else:
                face, n_tracked = tracked, n_tracked + 1
            t1 = time.perf_counter()
            if face is not None:
                warm = init is not None
                iterations = COLD_ITERATIONS if not warm else (
                    WARM_ITERATIONS if warm_all else REFERENCE_WARM_ITERATIONS)
                res, init = model.fit(rgb, face.points, init, iterations, cancel,
                                      warm_start=warm and warm_all)
                res = replace(res, index=i, time_s=i / rate)
            else:
                init = None
                res = FrameResult(index=i, time_s=i / rate, face_found=False, weights={},
                                  rotations={}, translation=[0.0, 0.0, 0.0])
            t2 = time.perf_counter()
            t_detect, t_fit = t_detect + t1 - t0, t_fit + t2 - t1
            res.timings.update(detect=round(t1 - t0, 5), fit=round(t2 - t1, 5))
            results.append(res)
            if progress is not None:
                total = source.count or 0
                frac = min((i + 1) / total, 1.0) if total else 0.0
                progress("capture", round(frac, 4),
                         progress_text(i + 1, total or None, time.perf_counter() - t_start))
    finally:
        threads.__exit__(None, None, None)
        frames_in.close()
    if timings is not None and results:
        n = len(results)
        timings.detect_ms, timings.fit_ms = 1e3 * t_detect / n, 1e3 * t_fit / n
        timings.total_ms = 1e3 * (time.perf_counter() - t_start) / n
        timings.frames, timings.tracked, timings.stopped = n, n_tracked, stopped
    if not results:
        raise BadInputError("Capture stopped before the first frame." if stopped
                            else f"No frames could be read from {frames}.")
    return smooth_results(results, smoothing), rate


# ------------------------------------------------------------------ command line
def bundle_identity(bundle: str | os.PathLike[str]) -> list[float]:
    """The ``identity`` coefficients of a result bundle's result.json.

    Raises:
        BadInputError: no readable result.json with a list of numbers under ``identity``.
    """
    import json

    path = Path(bundle) / "result.json" if Path(bundle).is_dir() else Path(bundle)
    try:
        identity = json.loads(path.read_text(encoding="utf-8"))["identity"]
        values = [float(v) for v in identity]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{path} is not a result bundle with an identity ({exc}).") from None
    return values


def write_outputs(outputs: list[str], results: list[FrameResult], fps: float,
                  meta: dict[str, Any]) -> None:
    """Write the results as Live Link Face CSV (``.csv``) and/or JSON (``.json``) files."""
    import json

    from headrecon_addon import livelink

    from .model.arkit import EYE_LOOK_DEG

    for out in outputs:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            doc = dict(meta, format="headrecon-capture", version=1, fps=fps, joints=list(JOINTS),
                       frames=[r.to_dict() for r in results])
            path.write_text(json.dumps(doc, indent=1))
        else:
            # timecodes need a whole rate: 29.97 fps video is written at 30 (frames unchanged)
            # eye angles = the whole gaze (eye joints after the eyeLook shapes), as Live Link has it
            axes = livelink.eye_look_axes(EYE_LOOK_DEG)
            take = livelink.LiveLinkTake(float(max(1, round(fps))), [livelink.frame_from_capture(
                r.index, r.weights, r.rotations, axes) for r in results])
            try:
                livelink.write_csv(path, take)
            except livelink.LiveLinkError as exc:
                raise BadInputError(str(exc)) from None


def progress_bar(fraction: float, width: int = 20) -> str:
    """``[########------------]`` for a fraction in [0, 1]."""
    full = int(round(max(0.0, min(1.0, fraction)) * width))
    return "[" + "#" * full + "-" * (width - full) + "]"


def throttled_progress(progress: ProgressFn, interval_s: float = 0.25) -> ProgressFn:
    """``progress`` with a text bar before the message, called at most every ``interval_s``
    (the first and the last call, fraction 1, always pass)."""
    last = [-1e9]

    def report(stage: str, fraction: float, message: str = "") -> None:
        now = time.perf_counter()
        if now - last[0] >= interval_s or fraction >= 1.0:
            last[0] = now
            progress(stage, fraction, f"{progress_bar(fraction)} {message}".rstrip())
    return report


def capture_main(args: Any, progress: ProgressFn | None = None) -> int:
    """``headrecon capture INPUT --bundle DIR -o OUT.csv|OUT.json [--fps N] [--smooth S]
    [--stop-file PATH]``.

    Progress goes to ``progress`` with a text bar, frames/s and time left (at most 4 lines a
    second). When the ``--stop-file`` appears the capture stops after the current frame and
    writes the frames captured so far (JSON ``"stopped": true``), exit code 0.
    """
    import sys

    from .options import ReconstructOptions
    from .pipeline import get_engine

    bad = [o for o in args.output if Path(o).suffix.lower() not in (".csv", ".json")]
    if bad:
        raise BadInputError(f"Output {bad[0]} must end in .csv (Live Link Face) or .json.")
    if args.fps is not None and args.fps <= 0:
        raise BadInputError(f"--fps must be positive, not {args.fps:g}.")
    identity = bundle_identity(args.bundle)
    engine = get_engine(ReconstructOptions(device=args.device, flame=args.flame, assets=args.assets))
    source = Path(args.input)
    meta = {"input": source.name, "bundle": str(Path(args.bundle).resolve())}
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        results, fps = [capture_photo(engine, identity, source)], float(args.fps or DEFAULT_FPS)
    else:
        stop_file = getattr(args, "stop_file", None)
        timings = SequenceTimings()
        results, fps = capture_sequence(
            engine, identity, source, fps=args.fps, smoothing=args.smooth,
            progress=None if progress is None else throttled_progress(progress),
            stop=(lambda: os.path.exists(stop_file)) if stop_file else None, timings=timings)
        meta["stopped"] = timings.stopped
        meta["ms_per_frame"] = {"landmarks": round(timings.detect_ms, 2),
                                "fit": round(timings.fit_ms, 2), "total": round(timings.total_ms, 2)}
    write_outputs(args.output, results, fps, meta)
    missing = sum(not r.face_found for r in results)
    print(f"headrecon: captured {len(results)} frame(s)"
          + (" (stopped early)" if meta.get("stopped") else "")
          + (f", {missing} without a face "
          "(interpolated)" if missing else "") + f"; wrote {', '.join(args.output)}",
          file=sys.stderr)
    return 0
