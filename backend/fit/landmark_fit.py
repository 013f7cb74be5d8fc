"""Fit FLAME to the 2D MediaPipe landmarks of one photo.

Correspondences (all compared in pixels of the fitted image, divided by the face size):

* the 105 MediaPipe points of the MediaPipe embedding (eyes, brows, nose, lips);
* the 17 iBUG contour points (yaw-dependent, :meth:`LandmarkEmbedding.lmk68`) against
  MediaPipe face-oval points, ``MP_CONTOUR`` (one point or the mean of two per iBUG point;
  the symmetric correspondence of PeizhiYan/Mediapipe_2_Dlib_Landmarks, which matched the
  AFLW2000-3D contour best of the tables we compared);
* the pupils against the iris centres 473 (subject's left) and 468 (subject's right);
* the upper-lid minus lower-lid vectors of three lid pairs per eye, so blinks are fitted;
* with the large-pose network (backend/landmarks/tddfa.py): its 68 points against FLAME's 68
  points fixed on the surface (:meth:`LandmarkEmbedding.fixed68`, AFLW2000-3D's definition).

Fusion of the two sources (``NET_REGION_WEIGHTS``, ``mediapipe_yaw_factor``): the network's 68
points carry the jaw line, brows and nose and so the head pose (it was trained on 300W-LP to
see faces up to profile), more so as the head turns (``network_yaw_factor``); MediaPipe's face oval is dropped when the network is there (its oval
is not the fixed jaw contour and stays on the cheek beyond ~50 degrees of yaw), and its dense
eye, iris, lid and lip points keep the fine shape of eyes and mouth (its brow and nose points
stay too: with the calibrated fixed-68 embedding they agree with the network's, and dropping
them cost 0.09 % NME on AFLW2000-3D and 0.5 degrees of head pose on synthetic renders). MediaPipe's weight fades
from 1 at |yaw| <= 30 degrees to ``MEDIAPIPE_FAR_WEIGHT`` at >= 60, where it saturates. The rigid
stage starts from the network's head rotation when MediaPipe's PnP pose differs from it by more
than ``NET_POSE_THRESHOLD_DEG``.

MediaPipe sides were checked on photos: iris centre 468 lies next to point 33, the outer corner
of the subject's right eye. Beyond 20 degrees of yaw the far-side contour points fade out (gone
at 40): there MediaPipe's face oval stays on the cheek while FLAME's contour follows the
silhouette.

Stages: ``rigid`` (root rotation + translation from a PnP solve on the mean head, then refined)
and ``shape`` (identity, expression, root, neck, jaw, eyes, eyelids, translation). Both are
robust (Huber, IRLS) Levenberg-Marquardt solves with Jacobians from ``torch.func.jacfwd`` on a
FLAME restricted to the ~550 vertices the landmarks use, so they are fast on a CPU.
Priors: L2 on identity / expression coefficients (unit-variance components), on neck, jaw,
eye rotations, the difference of the two eyes' rotations (gaze) and blink weights, plus hinge
limits on jaw, neck, eyes and blinks ([0, 1]).

Camera: unless given, :func:`default_camera` with a 30 degree field of view across the longer
image side and the principal point at the image centre.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import cv2
import numpy as np
import torch

from ..errors import BadInputError, Cancelled
from ..model.flame import FLAME
from ..landmarks.embedding import LandmarkEmbedding, yaw_degrees
from ..options import QUALITIES
from ..model.params import Camera, FitParams

DEFAULT_FOV_DEG = 30.0
N_MEDIAPIPE = 478
# iBUG contour point k <- mean of these MediaPipe face-oval points (k = 0 at the subject's right).
MP_CONTOUR: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,))
MP_IRIS: tuple[int, int] = (473, 468)  # iris centres: subject's left, right
# (upper, lower) eyelid pairs, subject's left eye first.
MP_LIDS: tuple[tuple[int, int], ...] = ((386, 374), (385, 380), (387, 373),
                                         (159, 145), (158, 153), (160, 144))

W_INNER, W_CONTOUR, W_IRIS, W_LIDS = 1.0, 0.5, 1.0, 4.0  # data weights per point
# Large-pose network points (iBUG order) per region: jaw 0-16, brows 17-26, nose 27-35,
# eyes 36-47, mouth 48-67. Eyes and mouth are MediaPipe's (denser, and the fine shape), so the
# network only steadies them there.
# The jaw line's weight is low: it is the network's least accurate region (5.9 % NME on
# AFLW2000-3D against 2-3.7 % elsewhere); 0.25 was chosen among 1, 0.5 and 0.25 on the 8
# evaluation images (landmark fit 3.42 -> 3.33 % NME) with synthetic head pose unchanged.
NET_REGION_WEIGHTS: dict[str, tuple[slice, float]] = {
    "jaw": (slice(0, 17), 0.25), "brows": (slice(17, 27), 1.0), "nose": (slice(27, 36), 1.0),
    "eyes": (slice(36, 48), 0.5), "mouth": (slice(48, 68), 0.5)}
MEDIAPIPE_YAW_FADE = (30.0, 60.0)  # |yaw| in degrees where MediaPipe's weight goes 1 -> far
MEDIAPIPE_FAR_WEIGHT = 0.3
# Near frontal, MediaPipe's points are reliable and the network's pose errs by 3-6 degrees: its
# points other than the jaw weigh a quarter there (synthetic renders: mean head-pose error 3.2
# -> 2.9 degrees, the same as MediaPipe alone; AFLW2000-3D NME unchanged within 0.02 %).
NET_NEAR_WEIGHT = 0.25
# The network's pose errs by 3-6 degrees per axis on AFLW2000-3D (assets/tddfa/README.md); a
# PnP pose from MediaPipe's points that is further than this from it is MediaPipe saturating
# (21-28 degrees off beyond 60 degrees of yaw), so the rigid stage starts from the network's.
NET_POSE_THRESHOLD_DEG = 15.0
FAR_CONTOUR_FADE = (20.0, 40.0)  # |yaw| in degrees where far-side contour weights go 1 -> 0
HUBER_DELTA = 0.02  # in face sizes (~4 px on a 200 px face)
# Prior weights (cost = sum of squared normalised residuals + sum of weight * value^2); tuned on
# synthetic dev-model heads with 0 and 1.5 px landmark noise (benchmarks/bench_fit_landmarks.py).
# "gaze" ties the two eyes' rotations together: without it an eye MediaPipe barely sees (beyond
# ~40 degrees of yaw) turned on its own and the head came out cross-eyed.
PRIOR = {"shape": 1e-4, "expression": 1e-4, "neck": 0.05, "jaw": 5e-4, "jaw_side": 0.02,
         "eyes": 2e-4, "gaze": 0.01, "eyelids": 1e-4}
LIMIT_WEIGHT = 100.0
JAW_LIMITS = ((-0.05, 0.6), (-0.1, 0.1), (-0.1, 0.1))  # (lo, hi) rad per axis (x opens)
NECK_LIMIT, EYE_LIMIT = 0.7, 0.6  # |axis-angle| components in rad
N_SHAPE_FIT, N_EXPR_FIT = 100, 100  # at most this many leading components are fitted
# Per quality: max LM iterations of the rigid and shape stages, and the relative cost decrease
# below which a stage stops early.
ITERATIONS: dict[str, tuple[int, int, float]] = {
    "fast": (8, 12, 1e-3), "default": (12, 30, 1e-4), "best": (20, 60, 1e-6)}

ProgressCb = Callable[[str, float, str], None]


class NetworkLandmarks(Protocol):
    """What the fit needs of a large-pose landmark network (e.g. ``tddfa.TDDFAResult``)."""

    landmarks: np.ndarray  # (68, 2) photo pixels, AFLW2000-3D's fixed-contour definition
    rotation: np.ndarray  # (3, 3) FLAME head frame -> OpenGL camera frame


def default_camera(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> Camera:
    """Pinhole camera with ``fov_deg`` across the longer side, principal point at the centre."""
    focal = max(width, height) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return Camera(focal=focal, cx=width / 2.0, cy=height / 2.0, width=int(width), height=int(height))


def project(points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """View-frame points to pixels, ``u = cx + f x/(-z)``, ``v = cy - f y/(-z)``.

    Args:
        points: (..., 3) view-frame points (``z < 0`` in front of the camera).
    Returns:
        (..., 2) pixel coordinates.
    """
    depth = (-points[..., 2]).clamp_min(1e-4)
    return torch.stack([camera.cx + camera.focal * points[..., 0] / depth,
                        camera.cy - camera.focal * points[..., 1] / depth], dim=-1)


@dataclass
class LandmarkTargets:
    """2D targets in pixels built from MediaPipe's 478 points.

    Attributes:
        inner: (105, 2) the MediaPipe-105 points (``LandmarkEmbedding.mp105_indices`` order).
        contour: (17, 2) iBUG contour targets from ``MP_CONTOUR``.
        iris: (2, 2) iris centres (subject's left, right).
        lids: (6, 2) upper minus lower lid for ``MP_LIDS``.
        lid_pairs: (6, 2) positions of the ``MP_LIDS`` points within ``inner``.
        face_size: sqrt(width * height) of the targets' bounding box, in pixels.
        fixed68: (68, 2) the large-pose network's iBUG points (AFLW2000-3D's definition), or None.
        head_rotation: (3, 3) the network's head rotation (FLAME head frame to the OpenGL camera
            frame, i.e. a root rotation), or None.
    """

    inner: np.ndarray
    contour: np.ndarray
    iris: np.ndarray
    lids: np.ndarray
    lid_pairs: np.ndarray
    face_size: float
    fixed68: np.ndarray | None = None
    head_rotation: np.ndarray | None = None

    def with_network(self, fixed68: np.ndarray | None,
                     head_rotation: np.ndarray | None = None) -> "LandmarkTargets":
        """These targets plus the large-pose network's (68, 2) points and (3, 3) rotation."""
        if fixed68 is None:
            return self
        pts = np.asarray(fixed68, dtype=np.float64)
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            raise BadInputError(f"Expected 68 finite network landmarks, got shape {pts.shape}.")
        rot = None if head_rotation is None else np.asarray(head_rotation, dtype=np.float64)
        return dataclasses.replace(self, fixed68=pts, head_rotation=rot)

    @classmethod
    def from_mediapipe(cls, points478: np.ndarray, emb: LandmarkEmbedding) -> "LandmarkTargets":
        """Targets from (478, 2|3) MediaPipe points; only the indices used need to be finite."""
        pts = np.asarray(points478, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] != N_MEDIAPIPE or pts.shape[1] not in (2, 3):
            raise BadInputError(f"Expected {N_MEDIAPIPE} MediaPipe landmarks of 2 or 3 "
                                f"coordinates, got an array of shape {pts.shape}.")
        pts = pts[:, :2]
        used = np.concatenate([emb.mp105_indices, [i for g in MP_CONTOUR for i in g],
                               list(MP_IRIS)])
        if not np.isfinite(pts[used]).all():
            raise BadInputError("Some face landmarks are missing or not finite.")
        inner = pts[emb.mp105_indices]
        where = {int(k): i for i, k in enumerate(emb.mp105_indices)}
        pairs = np.array([[where[u], where[lo]] for u, lo in MP_LIDS], dtype=np.int64)
        contour = np.stack([pts[list(g)].mean(0) for g in MP_CONTOUR])
        allp = np.concatenate([inner, contour])
        w, h = allp.max(0) - allp.min(0)
        face_size = float(math.sqrt(max(w, 1.0) * max(h, 1.0)))
        if face_size < 8.0:
            raise BadInputError(f"The face is too small to fit ({face_size:.1f} pixels).")
        return cls(inner=inner, contour=contour, iris=pts[list(MP_IRIS)],
                   lids=inner[pairs[:, 0]] - inner[pairs[:, 1]], lid_pairs=pairs,
                   face_size=face_size)


@dataclass
class FitResult:
    """Output of :func:`fit_landmarks`.

    Attributes:
        params: fitted FitParams (batch 1, on the FLAME's device, detached).
        landmark_loss: ``landmark_loss(params) -> scalar`` robust landmark term (no priors),
            differentiable w.r.t. the params' tensors: weighted mean over points of
            ``huber(|residual| / face_size)`` (quadratic ``0.5 x^2`` below ``HUBER_DELTA``),
            about ``0.5 (rms_px / face_size)^2`` for a good fit.
        timings: seconds per stage ("fit_rigid", "fit_shape").
        rms_px: root-mean-square 2D error over the 105 inner points after the fit.
        targets: the 2D targets that were fitted.
        network_init: the rigid stage started from the network's head rotation.
    """

    params: FitParams
    landmark_loss: Callable[[FitParams], torch.Tensor]
    timings: dict[str, float] = field(default_factory=dict)
    rms_px: float = float("nan")
    targets: LandmarkTargets | None = None
    network_init: bool = False


class _Problem:
    """Landmark residuals for one image on the vertex subset the landmarks use."""

    def __init__(self, flame: FLAME, emb: LandmarkEmbedding, targets: LandmarkTargets,
                 camera: Camera):
        ids = emb.vertex_ids()
        self.flame = flame.subset(ids)
        self.emb = emb.remapped(ids)
        self.camera = camera
        dev = flame.v_template.device
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=dev)  # noqa: E731
        net = targets.fixed68
        self.use_net = net is not None
        pts = [targets.inner, targets.contour, targets.iris] + ([net] if net is not None else [])
        self.target = t(np.concatenate(pts))
        self.target_lids = t(targets.lids)
        self.lid_pairs = torch.as_tensor(targets.lid_pairs, device=dev)
        self.scale = 1.0 / targets.face_size
        n_in, n_c = len(targets.inner), len(targets.contour)
        n_mp = n_in + n_c + 2
        weight = np.concatenate([np.full(n_in, W_INNER), np.full(n_c, W_CONTOUR), np.full(2, W_IRIS)])
        mediapipe = np.ones(n_mp)  # 1 where MediaPipe is the source (its weight fades with yaw)
        rigid = np.concatenate([np.ones(n_in), np.zeros(n_c + 2)])  # points of the rigid stage
        if net is not None:
            weight[n_in:n_in + n_c] = 0.0  # the network's fixed jaw line replaces the face oval
            net_w = np.zeros(68)
            for sl, w in NET_REGION_WEIGHTS.values():
                net_w[sl] = w
            weight = np.concatenate([weight, net_w])
            mediapipe = np.concatenate([mediapipe, np.zeros(68)])
            rigid = np.concatenate([rigid, np.ones(68)])
        self.weight = t(weight)
        self.mediapipe = t(mediapipe).bool()
        # the network's points other than the jaw line (their weight grows with yaw)
        self.net_inner = t(np.concatenate([np.zeros(n_mp), np.zeros(17), np.ones(51)])
                           if net is not None else np.zeros(n_mp)).bool()
        self.rigid_mask = t(rigid)
        self.n_inner = n_in
        self.device = dev
        side = np.zeros(len(weight))
        side[n_in:n_in + 8], side[n_in + 9:n_in + n_c] = -1.0, 1.0  # contour: subject's right/left
        self.contour_side = t(side)

    def point_weights(self, yaw: torch.Tensor) -> torch.Tensor:
        """(N,) data weights at head yaw ``yaw`` (degrees, shape (1,) or ()).

        MediaPipe contour points on the far side fade out between 20 and 40 degrees of yaw,
        where MediaPipe's face oval stays on the cheek instead of the silhouette. With the
        network, every MediaPipe point fades to ``MEDIAPIPE_FAR_WEIGHT`` between 30 and 60
        degrees (``mediapipe_yaw_factor``)."""
        far = self.contour_side * torch.sign(yaw) > 0
        fade = ((FAR_CONTOUR_FADE[1] - yaw.abs()) / (FAR_CONTOUR_FADE[1] - FAR_CONTOUR_FADE[0]))
        w = torch.where(far, self.weight * fade.clamp(0.0, 1.0), self.weight)
        if self.use_net:
            w = torch.where(self.mediapipe, w * mediapipe_yaw_factor(yaw), w)
            w = torch.where(self.net_inner, w * network_yaw_factor(yaw), w)
        return w

    def points(self, p: dict[str, torch.Tensor],
               yaw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected model points (N,2) in target order and lid vectors (6,2), batch 1."""
        out = self.flame(p["shape"], p["expression"], p["pose"], p["translation"],
                         eyelids=p["eyelids"] if self.flame.eyelid_deltas is not None else None)
        v = out.vertices
        parts = [self.emb.mp105(v), self.emb.lmk68(v, yaw)[:, :17], self.emb.pupils(v)]
        if self.use_net:
            parts.append(self.emb.fixed68(v))
        pts = torch.cat(parts, dim=1)
        uv = project(pts[0], self.camera)
        lids = uv[self.lid_pairs[:, 0]] - uv[self.lid_pairs[:, 1]]
        return uv, lids

    def residuals(self, p: dict[str, torch.Tensor],
                  yaw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised residuals: points (N,2) and lid vectors (6,2), in face sizes."""
        uv, lids = self.points(p, yaw)
        return (uv - self.target) * self.scale, (lids - self.target_lids) * self.scale

    def loss(self, params: FitParams) -> torch.Tensor:
        """Robust landmark term of FitResult.landmark_loss (see there)."""
        p = {"shape": params.shape[:, :self.flame.n_shape],
             "expression": params.expression[:, :self.flame.n_expr], "pose": params.pose,
             "translation": params.translation, "eyelids": params.eyelids}
        yaw = yaw_degrees(params.pose.detach())
        r, r_lids = self.residuals(p, yaw)
        err = torch.cat([r.norm(dim=-1), r_lids.norm(dim=-1)])
        w = torch.cat([self.point_weights(yaw),
                       torch.full((len(r_lids),), W_LIDS, device=self.device)])
        return (w * _huber(err, HUBER_DELTA)).sum() / w.sum()


def mediapipe_yaw_factor(yaw: torch.Tensor) -> torch.Tensor:
    """MediaPipe's weight factor when fused with the network: 1 at |yaw| <= 30 degrees, linear
    down to ``MEDIAPIPE_FAR_WEIGHT`` at >= 60 degrees (MediaPipe saturates near 60)."""
    lo, hi = MEDIAPIPE_YAW_FADE
    s = ((yaw.abs() - lo) / (hi - lo)).clamp(0.0, 1.0)
    return 1.0 - (1.0 - MEDIAPIPE_FAR_WEIGHT) * s


def network_yaw_factor(yaw: torch.Tensor) -> torch.Tensor:
    """The network's weight factor for its brows, nose, eyes and mouth: ``NET_NEAR_WEIGHT`` at
    |yaw| <= 30 degrees (MediaPipe is reliable there), linear up to 1 at >= 60."""
    lo, hi = MEDIAPIPE_YAW_FADE
    s = ((yaw.abs() - lo) / (hi - lo)).clamp(0.0, 1.0)
    return NET_NEAR_WEIGHT + (1.0 - NET_NEAR_WEIGHT) * s


def _huber(x: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.where(x <= delta, 0.5 * x * x, delta * (x - 0.5 * delta))


def _hinge(x: torch.Tensor, lo: float | torch.Tensor, hi: float | torch.Tensor) -> torch.Tensor:
    return torch.relu(x - hi) + torch.relu(lo - x)


class _Layout:
    """Packs named parameter blocks into one flat vector (only the blocks being optimised)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.slices: dict[str, tuple[slice, tuple[int, ...]]] = {}
        start = 0
        for name, shape in shapes.items():
            n = int(np.prod(shape))
            self.slices[name] = (slice(start, start + n), shape)
            start += n

    def pack(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([values[k].reshape(-1) for k in self.slices])

    def unpack(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: x[s].reshape(shape) for k, (s, shape) in self.slices.items()}


def _levenberg_marquardt(fun: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         iterations: int, rel_tol: float,
                         step: Callable[[int, torch.Tensor], None]) -> torch.Tensor:
    """Minimise ``|fun(x)|^2`` with Marquardt-scaled damping; ``step(i, x)`` runs before each
    iteration (cancellation, progress) and may change ``fun`` (IRLS weights). Stops after
    ``iterations``, when no step lowers the cost, or when one lowers it by < ``rel_tol``."""
    lam = 1e-3
    for it in range(iterations):
        step(it, x)
        r = fun(x)
        jac = torch.func.jacfwd(fun)(x)
        cost = float(r @ r)
        a = jac.T @ jac
        g = jac.T @ r
        diag = torch.diagonal(a).clamp_min(1e-9)
        for _ in range(6):
            damped = a + torch.diag(lam * diag) + 1e-12 * torch.eye(len(x), device=x.device)
            delta = torch.linalg.solve(damped, -g)
            x_new = x + delta
            r_new = fun(x_new)
            new_cost = float(r_new @ r_new)
            if new_cost < cost:
                x = x_new
                lam = max(lam * 0.3, 1e-7)
                break
            lam *= 10.0
        else:
            break  # no decrease possible: converged
        if cost - new_cost < rel_tol * cost:
            break
    return x


def landmark_problem(flame: FLAME, emb: LandmarkEmbedding, points478: np.ndarray,
                     camera: Camera | None, image_size: tuple[int, int] | None,
                     network: "NetworkLandmarks | None" = None
                     ) -> tuple["_Problem", LandmarkTargets, Camera]:
    """Targets and residual problem of one image, shared by the landmark and ARKit fits.

    Args:
        points478: (478, 2|3) MediaPipe points in pixels; camera: None =
            :func:`default_camera` of ``image_size`` (width, height).
        network: the large-pose network's points and rotation, fused with MediaPipe's.
    Raises:
        ValueError: neither a camera nor an image size; BadInputError: bad landmarks.
    """
    if camera is None:
        if image_size is None:
            raise ValueError("a landmark fit needs a camera or an image_size")
        camera = default_camera(*image_size)
    targets = LandmarkTargets.from_mediapipe(points478, emb)
    if network is not None:
        targets = targets.with_network(network.landmarks, network.rotation)
    return _Problem(flame, emb, targets, camera), targets, camera


def _rigid_init(prob: _Problem, targets: LandmarkTargets, base: dict[str, torch.Tensor],
                camera: Camera) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Root rotation (3,) and translation (3,) from a PnP solve on the mean head's inner points.

    With the network's head rotation in ``targets``: when the PnP rotation is more than
    ``NET_POSE_THRESHOLD_DEG`` from it, the network's rotation is used and the translation
    solved for it (linear least squares on the inner and network points).

    Returns:
        (root axis-angle (3,), translation (3,), whether the network's rotation was used).
    """
    with torch.no_grad():
        out = prob.flame(base["shape"], base["expression"], torch.zeros_like(base["pose"]))
        obj = prob.emb.mp105(out.vertices)[0].double().cpu().numpy()
        obj68 = prob.emb.fixed68(out.vertices)[0].double().cpu().numpy()
        root = out.rest_joints[0, 0].double().cpu().numpy()
    k = np.array([[camera.focal, 0, camera.cx], [0, camera.focal, camera.cy], [0, 0, 1]])
    ok, rvec, tvec = cv2.solvePnP(obj, targets.inner.astype(np.float64), k, None,
                                  flags=cv2.SOLVEPNP_SQPNP)
    flip = np.diag([1.0, -1.0, -1.0])  # OpenCV camera (y down, z forward) -> view frame
    if ok:
        rot = flip @ cv2.Rodrigues(rvec)[0]
        trans = flip @ tvec[:, 0] - root + rot @ root
    used_net = False
    if targets.head_rotation is not None and targets.fixed68 is not None:
        net_rot = targets.head_rotation
        gap = _angle_deg(rot, net_rot) if ok else 180.0
        if gap > NET_POSE_THRESHOLD_DEG:
            rot, used_net = net_rot, True
            pts3 = np.concatenate([obj, obj68]) - root
            pix = np.concatenate([targets.inner, targets.fixed68])
            trans = _translation_for_rotation(rot, pts3, pix, camera) - root
            ok = True
    if not ok or trans[2] >= -0.05:
        # Facing the camera at the distance where the mean head has the targets' size.
        width = float(np.ptp(obj[:, 0])) or 0.1
        dist = camera.focal * width / max(float(np.ptp(targets.inner[:, 0])), 1.0)
        centre = targets.inner.mean(0)
        trans = np.array([(centre[0] - camera.cx) * dist / camera.focal,
                          -(centre[1] - camera.cy) * dist / camera.focal, -dist]) - obj.mean(0)
        rot = np.eye(3)
        used_net = False
    rvec_gl = cv2.Rodrigues(rot)[0][:, 0]
    dev = prob.device
    return (torch.tensor(rvec_gl, dtype=torch.float32, device=dev),
            torch.tensor(trans, dtype=torch.float32, device=dev), used_net)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation between two (3, 3) rotation matrices."""
    cos = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _translation_for_rotation(rot: np.ndarray, points: np.ndarray, pixels: np.ndarray,
                              camera: Camera) -> np.ndarray:
    """Translation t that best projects ``rot @ p + t`` onto ``pixels`` (linear least squares).

    Args:
        rot: (3, 3); points: (N, 3) model points about the rotation centre; pixels: (N, 2).
    Returns:
        (3,) view-frame translation (the rotation centre's position).
    """
    q = points @ rot.T
    du = (pixels[:, 0] - camera.cx) / camera.focal  # u: du * (-(qz + tz)) = qx + tx
    dv = -(pixels[:, 1] - camera.cy) / camera.focal
    rows = np.concatenate([np.stack([np.ones_like(du), np.zeros_like(du), du], 1),
                           np.stack([np.zeros_like(dv), np.ones_like(dv), dv], 1)])
    rhs = np.concatenate([-du * q[:, 2] - q[:, 0], -dv * q[:, 2] - q[:, 1]])
    return np.linalg.lstsq(rows, rhs, rcond=None)[0]


def fit_landmarks(flame: FLAME, emb: LandmarkEmbedding, points478: np.ndarray,
                  camera: Camera | None = None, quality: str = "default",
                  progress: ProgressCb | None = None, cancel: Callable[[], bool] | None = None,
                  init: FitParams | None = None, *,
                  image_size: tuple[int, int] | None = None,
                  network: NetworkLandmarks | None = None) -> FitResult:
    """Fit FLAME to MediaPipe's 478 landmarks of one image, fused with the large-pose network's
    68 points and head rotation when ``network`` is given (see the module docstring).

    Args:
        flame: the model (its device is used); with eyelid blendshapes, blinks are fitted.
        emb: landmark embeddings.
        points478: (478, 2|3) MediaPipe points, x, y in pixels of the fitted image.
        camera: pinhole camera of that image; None = :func:`default_camera` of ``image_size``.
        quality: "fast", "default" or "best" (number of solver iterations).
        progress: ``progress(stage, fraction_of_this_fit, message)``.
        cancel: returns True to stop; checked before every iteration.
        init: start from these parameters instead of the PnP initialisation.
        image_size: (width, height), used when ``camera`` is None.
        network: the large-pose network's output for this face (photo pixels of the fitted
            image), or None for MediaPipe alone.
    Returns:
        FitResult.
    Raises:
        BadInputError: wrong landmark array or a degenerate face.
        Cancelled: ``cancel()`` returned True.
    """
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {', '.join(QUALITIES)}")
    prob, targets, camera = landmark_problem(flame, emb, points478, camera, image_size, network)
    dev = prob.device
    n_s, n_e = min(flame.n_shape, N_SHAPE_FIT), min(flame.n_expr, N_EXPR_FIT)
    n_j = flame.n_joints
    it_rigid, it_shape, rel_tol = ITERATIONS[quality]
    total = it_rigid + it_shape
    done = [0]

    def step(stage: str) -> Callable[[int], None]:
        def _step(i: int) -> None:
            if cancel is not None and cancel():
                raise Cancelled("Reconstruction cancelled.")
            if progress is not None:
                progress(stage, done[0] / total, f"{stage} iteration {i + 1}")
            done[0] += 1
        return _step

    p: dict[str, torch.Tensor] = {
        "shape": torch.zeros(1, n_s, device=dev), "expression": torch.zeros(1, n_e, device=dev),
        "pose": torch.zeros(1, n_j, 3, device=dev), "translation": torch.zeros(1, 3, device=dev),
        "eyelids": torch.zeros(1, 2, device=dev)}
    if init is not None:
        p = {"shape": init.shape[:, :n_s], "expression": init.expression[:, :n_e],
             "pose": init.pose, "translation": init.translation, "eyelids": init.eyelids}
        p = {k: v.detach().to(dev, torch.float32).clone() for k, v in p.items()}
    timings: dict[str, float] = {}

    # ---------------------------------------------------------------- rigid
    t0 = time.perf_counter()
    net_init = False
    if init is None:
        root, trans, net_init = _rigid_init(prob, targets, p, camera)
        p["pose"][0, 0] = root
        p["translation"][0] = trans
    rigid = _Layout({"root": (3,), "translation": (1, 3)})

    def rigid_params(x: torch.Tensor) -> dict[str, torch.Tensor]:
        v = rigid.unpack(x)
        pose = torch.cat([v["root"][None, None], p["pose"][:, 1:]], dim=1)
        return {**p, "pose": pose, "translation": v["translation"]}

    x = rigid.pack({"root": p["pose"][0, 0], "translation": p["translation"]})
    x = _solve(prob, rigid_params, x, it_rigid, rel_tol, step("fit_rigid"), inner_only=True)
    p = {k: v.detach() for k, v in rigid_params(x).items()}
    timings["fit_rigid"] = round(time.perf_counter() - t0, 4)

    # ---------------------------------------------------------------- shape
    t0 = time.perf_counter()
    blocks: dict[str, tuple[int, ...]] = {"shape": (1, n_s), "expression": (1, n_e),
                                          "pose": (1, n_j, 3), "translation": (1, 3)}
    if flame.eyelid_deltas is not None:
        blocks["eyelids"] = (1, 2)
    full = _Layout(blocks)

    def full_params(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**p, **full.unpack(x)}

    x = _solve(prob, full_params, full.pack(p), it_shape, rel_tol, step("fit_shape"),
               inner_only=False, priors=_priors(flame))
    p = {k: v.detach() for k, v in full_params(x).items()}
    p["eyelids"] = p["eyelids"].clamp(0.0, 1.0)
    timings["fit_shape"] = round(time.perf_counter() - t0, 4)
    if progress is not None:
        progress("fit_shape", 1.0, "done")

    params = FitParams.zeros(flame.n_shape, flame.n_expr, n_j, camera, device=dev)
    params.shape[:, :n_s] = p["shape"]
    params.expression[:, :n_e] = p["expression"]
    params.pose = p["pose"].clone()
    params.translation = p["translation"].clone()
    params.eyelids = p["eyelids"].clone()
    if init is not None:
        params.sh = init.sh.detach().to(dev).clone()
    with torch.no_grad():
        uv, _ = prob.points(p, yaw_degrees(p["pose"]))
        err = (uv[:prob.n_inner] - prob.target[:prob.n_inner]).norm(dim=-1)
        rms = float(torch.sqrt((err * err).mean()))
    return FitResult(params=params, landmark_loss=prob.loss, timings=timings, rms_px=rms,
                     targets=targets, network_init=net_init)


def _priors(flame: FLAME) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Prior residuals (flattened) on the parameters of the shape stage."""
    jaw, neck = flame.joint_index("jaw"), flame.joint_index("neck")
    eyes = [flame.joint_index("eye_L"), flame.joint_index("eye_R")]
    lo = torch.tensor([lim[0] for lim in JAW_LIMITS], device=flame.v_template.device)
    hi = torch.tensor([lim[1] for lim in JAW_LIMITS], device=flame.v_template.device)
    sq = {k: math.sqrt(v) for k, v in PRIOR.items()}
    lim = math.sqrt(LIMIT_WEIGHT)

    def priors(p: dict[str, torch.Tensor]) -> torch.Tensor:
        pose = p["pose"][0]
        parts = [sq["shape"] * p["shape"].reshape(-1), sq["expression"] * p["expression"].reshape(-1),
                 sq["neck"] * pose[neck], sq["jaw"] * pose[jaw, :1],
                 sq["jaw_side"] * pose[jaw, 1:], sq["eyes"] * pose[eyes].reshape(-1),
                 sq["gaze"] * (pose[eyes[0]] - pose[eyes[1]]),
                 lim * _hinge(pose[jaw], lo, hi), lim * _hinge(pose[neck], -NECK_LIMIT, NECK_LIMIT),
                 lim * _hinge(pose[eyes].reshape(-1), -EYE_LIMIT, EYE_LIMIT)]
        if "eyelids" in p:
            parts += [sq["eyelids"] * p["eyelids"].reshape(-1),
                      lim * _hinge(p["eyelids"].reshape(-1), 0.0, 1.0)]
        return torch.cat(parts)

    return priors


def _solve(prob: _Problem, to_params: Callable[[torch.Tensor], dict[str, torch.Tensor]],
           x: torch.Tensor, iterations: int, rel_tol: float, step: Callable[[int], None],
           inner_only: bool,
           priors: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None) -> torch.Tensor:
    """Robust LM over the flat vector ``x`` (``to_params`` maps it to FLAME inputs): IRLS Huber
    weights, far-contour fading and the contour's yaw bin are refreshed every iteration.
    ``inner_only`` uses the points of the rigid stage alone: the 105 inner MediaPipe points and
    the network's 68 when present."""
    state: dict[str, torch.Tensor] = {}
    keep = prob.rigid_mask.bool() if inner_only else torch.ones_like(prob.rigid_mask, dtype=torch.bool)

    def refresh(i: int, x_now: torch.Tensor) -> None:
        step(i)
        with torch.no_grad():
            p = to_params(x_now)
            yaw = yaw_degrees(p["pose"])
            r, r_lids = prob.residuals(p, yaw)
            err = torch.cat([r[keep].norm(dim=-1), r_lids.norm(dim=-1)])
            irls = torch.where(err <= HUBER_DELTA, torch.ones_like(err), HUBER_DELTA / err)
            w = torch.cat([prob.point_weights(yaw)[keep],
                           torch.full((len(r_lids),), 0.0 if inner_only else W_LIDS,
                                      device=prob.device)])
            state["yaw"], state["sqrt_w"] = yaw, torch.sqrt(w * irls)

    def fun(xv: torch.Tensor) -> torch.Tensor:
        p = to_params(xv)
        r, r_lids = prob.residuals(p, state["yaw"])
        res = torch.cat([r[keep], r_lids], dim=0) * state["sqrt_w"][:, None]
        parts = [res.reshape(-1)]
        if priors is not None:
            parts.append(priors(p))
        return torch.cat(parts)

    return _levenberg_marquardt(fun, x, iterations, rel_tol, refresh)
