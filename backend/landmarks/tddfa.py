"""3DDFA_V2's MobileNet-x0.5 network: 68 large-pose landmarks and head pose from one face crop.

Written from the facts in ``assets/tddfa/README.md`` (checkpoint ``mb05_120x120.pth`` and
``param_mean_std_62d_120x120.npz`` from cleardusk/3DDFA_V2, MIT; the weights were trained on
300W-LP, a research data set: say so where the product lists its models).

What it gives for one face, from a photo and any set of points around that face:

- ``landmarks``: the 68 iBUG landmarks in AFLW2000-3D's definition (3D points fixed on the head
  surface and projected: the far-side jaw line does not slide onto the silhouette), photo pixels.
- ``rotation``: head rotation R (3, 3), see below for its frames.
- ``pitch_yaw_roll_deg``: R as AFLW2000-3D's ``Pose_Para`` angles (degrees).

The crop box comes from the bounding box of the points passed in. The network was measured with
68 iBUG-like points (MediaPipe's 478 mapped to 68 with the project's ``MEDIAPIPE_TO_IBUG68``);
other point sets that cover brows to chin and ear to ear give a similar box, but the box size
matters (it is ``sqrt(2)`` times the points' larger extent): points that miss the brows or the
jaw give a smaller crop than the network was trained with.

Frames of ``rotation`` (checked on AFLW2000-3D's ground truth, see ``check.py``):
R maps head-frame directions to camera-frame directions, ``d_cam = R @ d_head``.

- head frame: +X towards the subject's left ear, +Y up (towards the top of the head), +Z out of
  the face (where the nose points), i.e. FLAME's head frame;
- camera frame: +X image right, +Y image UP (not down), +Z towards the viewer (the camera looks
  down -Z), i.e. the OpenGL camera frame that FLAME fits use.

In terms of AFLW2000-3D's ``Pose_Para`` (radians), ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(-roll)``:
pitch > 0 chin up, yaw > 0 face turned towards the image's left (the subject's right),
roll > 0 top of the head tilted towards the image's right. (AFLW2000-3D's ``pt3d_68`` are
x, y image pixels with y down and z larger = nearer the camera.)

Measured (``check.py``, 8 AFLW2000-3D images, crop from MediaPipe's points mapped to 68):
NME 3.71 % (|yaw| <30 / 30-60 / >=60: 3.31 / 3.70 / 4.32), pose error pitch / yaw / roll
5.6 / 4.0 / 3.0 deg, about 4 ms per face on one CPU thread (forward pass 3 ms).

So a frontal upright face gives R close to the identity, and :func:`rotation_to_opengl` is the
identity map (kept as a function so callers state the conversion). To get the rotation in an
OpenCV camera frame (+Y down, +Z into the scene) use ``diag(1, -1, -1) @ R``.

Threading: :meth:`TDDFA.predict` sets torch's intra-op thread count to 1 for the forward pass
(on a 2-core machine more threads were 20x slower from contention) and restores it afterwards.
``torch.set_num_threads`` is process-wide, so calls are serialised by a module-level lock;
other torch work running concurrently in other threads sees one intra-op thread meanwhile.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError
from ..model.assets import weights_dir
from ..model.pinned import PinnedFile, install_pinned, matches_pin

TDDFA_SUBDIR = "tddfa"  # weights/tddfa/, copied from <assets>/tddfa/ by setup-weights
TDDFA_FILES: tuple[PinnedFile, ...] = (
    PinnedFile("mb05_120x120.pth", "tddfa/mb05_120x120.pth", 3752462,
               "f93ed7f1c4c0382b16d7c18480a5f67473c1917a47475a9823924f38aeb27280"),
    PinnedFile("param_mean_std_62d_120x120.npz", "tddfa/param_mean_std_62d_120x120.npz", 996,
               "0d388ea967886499f2f9c1073c44312ae0b4f73817a17ea83ee353f4ece0c52e"),
    PinnedFile("LICENSE", "tddfa/LICENSE", 1212,
               "4e8e329d78d0dbd3be980d979f773d0c554b5deed5276c12d0de442cfecc2c24"),
)
INPUT_SIZE = 120  # network input side (pixels)
N_PARAMS = 62  # 12 camera (3x4), 40 BFM shape, 10 BFM expression
N_LANDMARKS = 68
BOX_SCALE = math.sqrt(2.0)  # crop side = BOX_SCALE * max(points' width, height)
PIXEL_MEAN = 127.5
PIXEL_SCALE = 128.0
CHECKPOINT_PREFIX = "module."

# (name, in channels, out channels, stride) of the 13 depthwise-separable blocks.
_BLOCKS: tuple[tuple[str, int, int, int], ...] = (
    ("dw2_1", 16, 32, 1),
    ("dw2_2", 32, 64, 2),
    ("dw3_1", 64, 64, 1),
    ("dw3_2", 64, 128, 2),
    ("dw4_1", 128, 128, 1),
    ("dw4_2", 128, 256, 2),
    ("dw5_1", 256, 256, 1),
    ("dw5_2", 256, 256, 1),
    ("dw5_3", 256, 256, 1),
    ("dw5_4", 256, 256, 1),
    ("dw5_5", 256, 256, 1),
    ("dw5_6", 256, 512, 2),
    ("dw6", 512, 512, 1),
)

_forward_lock = threading.Lock()


class TDDFAFileError(ModelFileError):
    """A 3DDFA checkpoint or mean/std file is missing, unreadable, unsafe or not the expected one."""


class _DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv -> BN -> ReLU -> 1x1 conv -> BN -> ReLU (no conv biases).

    Args:
        c_in: input channels.
        c_out: output channels.
        stride: stride of the depthwise conv (1 or 2).
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn_dw = nn.BatchNorm2d(c_in)
        self.conv_sep = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (B, c_in, H, W).
        Returns:
            (B, c_out, ceil(H / stride), ceil(W / stride)).
        """
        x = torch.relu(self.bn_dw(self.conv_dw(x)))
        return torch.relu(self.bn_sep(self.conv_sep(x)))


class MobileNetTDDFA(nn.Module):
    """MobileNet v1 at width 0.5 with 3DDFA_V2's two heads (input 3x120x120).

    Module names match the checkpoint's state dict after its ``module.`` prefix is removed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        for name, c_in, c_out, stride in _BLOCKS:
            self.add_module(name, _DepthwiseSeparable(c_in, c_out, stride))
        self.fc_param = nn.Linear(512, N_PARAMS)
        self.fc_lm = nn.Linear(512, 2 * N_LANDMARKS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (B, 3, 120, 120) float32, BGR, ``(pixel - 127.5) / 128``.
        Returns:
            params: (B, 62) normalised parameters (multiply by std, add mean).
            lm: (B, 136) landmarks: reshaped to (B, 2, 68), rows u and v in [-1, 1]-ish
                crop units (crop pixel = u * 60 + 60).
        """
        x = torch.relu(self.bn1(self.conv1(x)))
        for name, _, _, _ in _BLOCKS:
            x = getattr(self, name)(x)
        f = x.mean(dim=(2, 3))
        return self.fc_param(f), self.fc_lm(f)


@dataclass
class TDDFAResult:
    """One face's network output in photo terms.

    Attributes:
        landmarks: (68, 2) float64 photo pixels (x right, y down), AFLW2000-3D's 68 definition.
        rotation: (3, 3) float64 head rotation, ``d_cam = R @ d_head``; head frame +X subject's
            left, +Y up, +Z out of the face; camera frame +X right, +Y up, +Z towards the viewer
            (OpenGL). See the module docstring.
        pitch_yaw_roll_deg: (3,) float64, AFLW2000-3D ``Pose_Para`` convention (degrees):
            the negated intrinsic 'XYZ' Euler angles of ``rotation``.
        box: (4,) float64 square crop box (x0, y0, x1, y1) in photo pixels (not rounded):
            the landmarks are mapped back with it; the pixels cut out are ``np.round(box)``
            (x1/y1 exclusive), see :func:`crop_box`.
        params: (62,) float64 de-normalised parameters: [:12] the 3x4 camera matrix (row-major,
            120x120 crop frame, y up), [12:52] BFM shape, [52:62] BFM expression coefficients.
    """

    landmarks: np.ndarray
    rotation: np.ndarray
    pitch_yaw_roll_deg: np.ndarray
    box: np.ndarray
    params: np.ndarray


def _file_error(what: str, path: Path, why: str) -> TDDFAFileError:
    return TDDFAFileError(f"3DDFA {what} {path} {why}; reinstall it from the assets.")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict with the ``module.`` prefix removed (no checks on content)."""
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, truncated, corrupt, or a pickle that wants to run code
        raise _file_error("checkpoint", path, f"cannot be loaded safely ({type(exc).__name__})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise _file_error("checkpoint", path, "does not hold a state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _file_error("checkpoint", path, "holds entries that are not named tensors")
        out[key[len(CHECKPOINT_PREFIX):] if key.startswith(CHECKPOINT_PREFIX) else key] = value
    if len(out) != len(obj):
        raise _file_error("checkpoint", path, "holds duplicate keys")
    return out


def _check_state_dict(path: Path, state: dict[str, torch.Tensor], net: MobileNetTDDFA) -> None:
    """Raise TDDFAFileError unless ``state`` has exactly ``net``'s keys, shapes and finite values."""
    expected = net.state_dict()
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        first = (missing or extra)[0]
        raise _file_error("checkpoint", path,
                          f"is not the MobileNet-x0.5 network ({len(missing)} keys missing, "
                          f"{len(extra)} unexpected, e.g. '{first}')")
    for key, ref in expected.items():
        value = state[key]
        if value.shape != ref.shape:
            raise _file_error("checkpoint", path,
                              f"has {key} of shape {tuple(value.shape)}, expected {tuple(ref.shape)}")
        if ref.is_floating_point():
            if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise _file_error("checkpoint", path, f"has non-finite or non-float values in {key}")
            if key.endswith("running_var") and bool((value < 0).any()):
                raise _file_error("checkpoint", path, f"has negative variances in {key}")


def _read_mean_std(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(62,) mean and (62,) std, float64, from the npz (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            mean = np.asarray(data["mean"])
            std = np.asarray(data["std"])
    except Exception as exc:  # missing, corrupt, not an npz, pickled arrays, missing keys
        raise _file_error("mean/std file", path, f"cannot be read ({type(exc).__name__})") from None
    for name, arr in (("mean", mean), ("std", std)):
        if arr.shape != (N_PARAMS,) or not np.issubdtype(arr.dtype, np.floating):
            raise _file_error("mean/std file", path,
                              f"has '{name}' of shape {arr.shape} and dtype {arr.dtype}, expected ({N_PARAMS},) float")
        if not np.isfinite(arr).all():
            raise _file_error("mean/std file", path, f"has non-finite values in '{name}'")
    return mean.astype(np.float64), std.astype(np.float64)


def load_tddfa(weights_path: Path, mean_std_path: Path, device: str | torch.device = "cpu") -> TDDFA:
    """Load the network and its de-normalisation safely (no code in pickles is ever run).

    Args:
        weights_path: ``mb05_120x120.pth``: ``{'epoch', 'state_dict'}`` or a plain state dict,
            keys with or without the ``module.`` prefix.
        mean_std_path: ``param_mean_std_62d_120x120.npz`` with ``mean`` and ``std``, (62,) each.
        device: torch device for the network.
    Returns:
        A ready :class:`TDDFA` (network in eval mode).
    Raises:
        TDDFAFileError: a file is missing, truncated, corrupt, a pickle with code, not a dict,
            has missing/unexpected keys, wrong shapes or non-finite values.
    """
    weights_path, mean_std_path = Path(weights_path), Path(mean_std_path)
    net = MobileNetTDDFA()
    state = _read_state_dict(weights_path)
    _check_state_dict(weights_path, state, net)
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise _file_error("checkpoint", weights_path, f"does not fit the network ({type(exc).__name__})") from None
    mean, std = _read_mean_std(mean_std_path)
    return TDDFA(net.eval().to(device), mean, std)


def crop_box(points: np.ndarray) -> np.ndarray:
    """The network's square crop box around a set of face points.

    The crop cuts out ``np.round(box)`` (each corner to the nearest integer, so the cut can be
    one pixel wider than high), but the outputs are mapped back to the photo with the unrounded
    square (scale ``(x1 - x0) / 120`` for x and y, offset ``(x0, y0)``). That is how the
    README's AFLW2000-3D numbers were measured (reproduced exactly: 3.71 % NME); mapping back
    with the rounded box instead gave 3.67 % (|yaw| bins 3.30 / 3.68 / 4.22 vs 3.31 / 3.70 /
    4.32) on the same 8 images: the two mappings differ by under a pixel, within noise.

    Args:
        points: (N, 2) photo pixels (N >= 2), e.g. 68 iBUG-like points.
    Returns:
        (4,) float64 (x0, y0, x1, y1): centred on the points' bounding box, side
        ``sqrt(2) * max(w, h)``.
    Raises:
        ValueError: not (N, 2) finite points, or the points span less than a pixel.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 2 or not np.isfinite(pts).all():
        raise ValueError(f"box points must be (N, 2) finite pixels with N >= 2, got shape {pts.shape}")
    lo, hi = pts.min(0), pts.max(0)
    side = BOX_SCALE * float((hi - lo).max())
    if side < 1.0:
        raise ValueError("box points span less than one pixel")
    cx, cy = (lo + hi) / 2.0
    half = side / 2.0
    return np.array([cx - half, cy - half, cx + half, cy + half])


def crop_input(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Cut ``box`` out of the image (zeros outside it) and resize to the network's input.

    Args:
        image_bgr: (H, W, 3) uint8.
        box: (4,) (x0, y0, x1, y1) from :func:`crop_box`; rounded to integers here (x1/y1
            exclusive), may extend past the image.
    Returns:
        (120, 120, 3) uint8, bilinear (``cv2.INTER_LINEAR``).
    """
    x0, y0, x1, y1 = (int(v) for v in np.round(np.asarray(box, np.float64)))
    h, w = image_bgr.shape[:2]
    crop = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image_bgr[sy0:sy1, sx0:sx1]
    return cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)


def rotation_from_camera(camera: np.ndarray) -> np.ndarray:
    """The rotation part of the network's 3x4 scaled-rotation camera matrix.

    Args:
        camera: (3, 4) ``P``; rows 0 and 1 are the scaled first two rows of R.
    Returns:
        (3, 3) ``[r1; r2; r1 x r2]`` with r1 = P[0, :3] normalised and r2 = P[1, :3] made
        orthogonal to r1 and normalised (a proper rotation, det +1).
    """
    a, b = np.asarray(camera, np.float64)[0, :3], np.asarray(camera, np.float64)[1, :3]
    r1 = a / max(float(np.linalg.norm(a)), 1e-12)
    b = b - float(r1 @ b) * r1
    r2 = b / max(float(np.linalg.norm(b)), 1e-12)
    return np.stack([r1, r2, np.cross(r1, r2)])


def euler_xyz_intrinsic(rotation: np.ndarray) -> np.ndarray:
    """Intrinsic 'XYZ' Euler angles: ``R = Rx(a) @ Ry(b) @ Rz(c)``.

    Same as scipy's ``Rotation.from_matrix(R).as_euler('XYZ')`` away from gimbal lock.

    Args:
        rotation: (3, 3).
    Returns:
        (3,) radians (a, b, c), b in [-pi/2, pi/2].
    """
    r = np.asarray(rotation, np.float64)
    a = math.atan2(-r[1, 2], r[2, 2])
    b = math.asin(min(max(r[0, 2], -1.0), 1.0))
    c = math.atan2(-r[0, 1], r[0, 0])
    return np.array([a, b, c])


def pose_para_angles(rotation: np.ndarray) -> np.ndarray:
    """AFLW2000-3D ``Pose_Para`` (pitch, yaw, roll) of a rotation, radians.

    Args:
        rotation: (3, 3) as in :class:`TDDFAResult`.
    Returns:
        (3,) ``-euler_xyz_intrinsic(R)``. Signs (checked on AFLW2000-3D, ``check.py``):
        pitch > 0 the subject looks up (chin up, nose towards the image top);
        yaw > 0 the face turns towards the image's left (the subject's right; the nose tip
        is left of the jaw's middle in the image);
        roll > 0 the top of the head tilts towards the image's right (clockwise as seen).
    """
    return -euler_xyz_intrinsic(rotation)


def rotation_to_opengl(rotation: np.ndarray) -> np.ndarray:
    """The network's rotation in a FLAME/OpenGL camera frame.

    The network's R already maps FLAME-like head directions (+X subject's left, +Y up, +Z out
    of the face) to a camera frame with +X right, +Y up and +Z towards the viewer (the crop
    frame is y-up and r3 = r1 x r2 keeps it right-handed), which is the OpenGL camera frame.
    So this is the identity (a copy); verified in ``check.py`` against head axes built from
    AFLW2000-3D's 3D ground-truth landmarks. (For OpenCV's +Y down, +Z forward camera frame
    use ``np.diag([1, -1, -1]) @ R``.)

    Args:
        rotation: (3, 3) ``TDDFAResult.rotation``.
    Returns:
        (3, 3) float64 R_gl with ``d_gl = R_gl @ d_head``; it can serve as FLAME's global
        (root) rotation for a camera looking down -Z.
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape != (3, 3):
        raise ValueError(f"expected a (3, 3) rotation, got {r.shape}")
    return r.copy()


class TDDFA:
    """The loaded network with its de-normalisation; use :func:`load_tddfa` to build one.

    Args:
        net: a :class:`MobileNetTDDFA` with weights, in eval mode.
        mean: (62,) parameter mean.
        std: (62,) parameter std.
    """

    def __init__(self, net: MobileNetTDDFA, mean: np.ndarray, std: np.ndarray) -> None:
        self.net = net.eval()
        self.mean = np.asarray(mean, np.float64).reshape(N_PARAMS)
        self.std = np.asarray(std, np.float64).reshape(N_PARAMS)
        self.device = next(net.parameters()).device

    def predict(self, image: np.ndarray, box_points: np.ndarray, *, rgb: bool = True) -> TDDFAResult:
        """Landmarks and pose of the face around ``box_points``.

        Args:
            image: (H, W, 3) uint8 photo, RGB (``rgb=True``) or BGR (``rgb=False``).
            box_points: (N, 2) photo pixels of points on the face (68 iBUG-like points give
                the crop the network was measured with, see the module docstring).
            rgb: channel order of ``image``.
        Returns:
            A :class:`TDDFAResult`.
        Raises:
            ValueError: the image is not (H, W, 3) uint8, the points are not (N, 2) finite,
                or the crop box does not overlap the image.
        """
        return self.predict_many(image, [box_points], rgb=rgb)[0]

    def predict_many(self, image: np.ndarray, boxes_points: Sequence[np.ndarray], *,
                     rgb: bool = True) -> list[TDDFAResult]:
        """:meth:`predict` for several faces of one photo in one forward pass.

        Args:
            image: (H, W, 3) uint8, RGB or BGR as ``rgb`` says.
            boxes_points: K arrays of (N_k, 2) photo pixels, one per face.
            rgb: channel order of ``image``.
        Returns:
            K :class:`TDDFAResult`, in the order of ``boxes_points``.
        Raises:
            ValueError: as :meth:`predict`.
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"image must be an (H, W, 3) uint8 array, got {shape}")
        if len(boxes_points) == 0:
            return []
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1]) if rgb else image
        boxes = [crop_box(p) for p in boxes_points]
        for box in boxes:
            x0, y0, x1, y1 = np.round(box)
            if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
                raise ValueError(f"crop box {np.round(box, 1).tolist()} does not overlap the {w}x{h} image")
        batch = np.stack([crop_input(bgr, box) for box in boxes]).astype(np.float32)
        # NHWC -> NCHW in numpy: a torch .contiguous() here ran on all intra-op threads (10 ms)
        batch = np.ascontiguousarray(((batch - PIXEL_MEAN) / PIXEL_SCALE).transpose(0, 3, 1, 2))
        params_n, lm = self._forward(torch.from_numpy(batch))
        results = []
        half = INPUT_SIZE / 2.0
        for k, box in enumerate(boxes):
            params = params_n[k] * self.std + self.mean
            s = (box[2] - box[0]) / INPUT_SIZE
            uv = lm[k].reshape(2, N_LANDMARKS)
            landmarks = np.stack([(uv[0] * half + half) * s + box[0],
                                  (uv[1] * half + half) * s + box[1]], axis=1)
            rot = rotation_from_camera(params[:12].reshape(3, 4))
            results.append(TDDFAResult(landmarks=landmarks, rotation=rot,
                                       pitch_yaw_roll_deg=np.degrees(pose_para_angles(rot)),
                                       box=box, params=params))
        return results

    def _forward(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Run the net on one intra-op thread (restored afterwards).

        Args:
            x: (B, 3, 120, 120) float32 normalised input.
        Returns:
            (B, 62) normalised parameters and (B, 136) landmark outputs, float64.
        """
        with _forward_lock:
            threads = torch.get_num_threads()
            try:
                torch.set_num_threads(1)
                with torch.inference_mode():
                    params, lm = self.net(x.to(self.device))
            finally:
                torch.set_num_threads(threads)
        return params.double().cpu().numpy(), lm.double().cpu().numpy()


def setup_tddfa(assets: Path, target: Path | None = None) -> Path:
    """Copy the network, its mean/std and licence from ``<assets>/tddfa`` into ``weights/tddfa``.

    Files already present with the pinned size and SHA-256 are left alone.

    Returns:
        The folder holding the files.
    Raises:
        ModelFileError: a source file is missing or differs from the pinned one.
    """
    dest_dir = Path(target) if target is not None else weights_dir() / TDDFA_SUBDIR
    return install_pinned(TDDFA_FILES, lambda: Path(assets), dest_dir,
                          "it must be the 3DDFA_V2 file of the assets folder.")


def load_tddfa_weights(weights: str | os.PathLike[str] | None = None,
                       device: str | torch.device = "cpu") -> tuple[TDDFA | None, list[str]]:
    """The network from ``weights/tddfa``, or None with a warning for result.json.

    A missing, damaged or unsafe file never stops a reconstruction: the fit then uses MediaPipe
    alone. Files that differ from the pinned ones but load and pass the checks are used, with a
    warning (a user may bring their own fine-tuned copy).

    Returns:
        (network or None, warnings).
    """
    folder = weights_dir(weights) / TDDFA_SUBDIR
    ckpt, stats = folder / TDDFA_FILES[0].name, folder / TDDFA_FILES[1].name
    if not ckpt.is_file() or not stats.is_file():
        return None, [f"The large-pose landmark network is missing ({folder}); run ./setup.sh. "
                      "Landmarks come from MediaPipe alone."]
    try:
        net = load_tddfa(ckpt, stats, device=device)
    except ModelFileError as exc:
        return None, [f"{exc} Landmarks come from MediaPipe alone."]
    warnings = [] if matches_pin(ckpt, TDDFA_FILES[0]) else [
        f"{ckpt} is not the pinned 3DDFA_V2 checkpoint; using it as it loads."]
    return net, warnings
