"""Fit ARKit weights (0..1) with head, jaw and eye pose to the 2D landmarks of one photo, for an
identity that is already known (its FLAME shape coefficients).

The ARKit shapes adapted to the identity (``arkit.arkit_for_identity``) become the expression
space of a FLAME (:func:`arkit_flame`), so an ARKit weight vector is an ``expression`` vector
and the landmark problem of backend/fit/landmark_fit.py is reused as it is (its residuals, point
weights with far-contour fading, PnP initialisation): MediaPipe-105 points, the 17
yaw-dependent contour points, the pupils and the lid vectors, in face sizes, with Huber IRLS
weights.

Unknowns: ARKit weights, root rotation, translation, jaw and eye rotations (neck kept at 0,
it is indistinguishable from the root here). The ARKit shapes already open the jaw
(``jawOpen``) and turn the eyeballs (``eyeLook*``), so jaw and eye rotations carry stronger
priors than the weights and only take what the shapes cannot explain. Opposite shapes
(eyeLookUp/Down, In/Out, eyeBlink/eyeWide, jawLeft/Right, mouthLeft/Right) are kept from
cancelling each other by a prior on the product of their weights. Solver: projected
Levenberg-Marquardt (weights clipped to [0, 1] after every step) on :class:`ArkitRig`, the
identity's FLAME + ARKit basis precomputed at the landmarks only: closed-form Jacobian in the
weights, ``torch.func.jacfwd`` over the 15 pose and translation unknowns of ~124 points.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import Cancelled
from .landmark_fit import (FAR_CONTOUR_FADE, HUBER_DELTA, W_CONTOUR, W_INNER, W_IRIS, W_LIDS,
                           LandmarkTargets, _rigid_init, default_camera, landmark_problem)
from ..model.flame import FLAME, FlameModelData
from ..model.lbs import pose_feature, rigid_transforms, rodrigues
from ..landmarks.embedding import MAX_YAW_BIN, LandmarkEmbedding, yaw_degrees
from ..model.params import Camera, FitParams

# Prior weights (residual = sqrt(weight) * value; data residuals are in face sizes).
PRIOR_WEIGHTS = 1e-5  # on each ARKit weight
PRIOR_JAW = 0.05  # on the jaw axis-angle (rad)
PRIOR_EYES = 0.05  # on each eye axis-angle (rad)
PRIOR_OPPOSING = 1e-3  # on the product of the weights of two opposite shapes
OPPOSING: tuple[tuple[str, str], ...] = tuple(
    (a + side, b + side) for side in ("Left", "Right") for a, b in (
        ("eyeLookUp", "eyeLookDown"), ("eyeLookIn", "eyeLookOut"), ("eyeBlink", "eyeWide"))
) + (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"))
RIGID_ITERATIONS = 10
FD_STEP = 1e-6  # rad, central differences of the rotation columns of the Jacobian (float64)
REL_TOL = 1e-5


def arkit_flame(data: FlameModelData, deltas: np.ndarray) -> FLAME:
    """A FLAME whose expression components are the given ARKit shapes.

    Args:
        data: the FLAME model.
        deltas: (A, V, 3) ARKit deltas (for the identity the fit is for).
    Returns:
        FLAME with ``n_expr == A``: ``expression`` = ARKit weights.
    """
    exprdirs = np.ascontiguousarray(np.asarray(deltas, np.float32).transpose(1, 2, 0))
    return FLAME(dataclasses.replace(data, exprdirs=exprdirs))


@dataclass
class ArkitFit:
    """Result of :func:`fit_arkit`.

    Attributes:
        weights: (A,) ARKit weights in [0, 1], in the order of the deltas.
        params: FitParams with the given shape, ``expression`` = the weights (1, A), pose
            (root, neck = 0, jaw, eyes) and translation.
        rms_px: RMS 2D error over the 105 inner points, pixels.
        timings: seconds per stage ("fit_arkit_rigid", "fit_arkit").
        iterations: LM iterations of the full stage that ran.
    """

    weights: np.ndarray
    params: FitParams
    rms_px: float
    timings: dict[str, float] = field(default_factory=dict)
    iterations: int = 0


def _pose(root: torch.Tensor, jaw: torch.Tensor, eyes: torch.Tensor) -> torch.Tensor:
    """(J=5, 3) pose from root (3,), jaw (3,), eyes (2, 3); the neck stays 0."""
    return torch.cat([root[None], torch.zeros_like(root)[None], jaw[None], eyes])


class ArkitRig:
    """FLAME with the ARKit basis of one identity, evaluated only at the landmarks.

    Linear blend skinning is linear in the rest vertices, so a barycentric landmark
    ``x_l = sum_k b_lk v'_k`` of skinned vertices ``v'_k = sum_j w_kj (Q_j v_k + b_j)`` is
    ``x_l = sum_j (Q_j m_lj + W_lj b_j)`` with ``W_lj = sum_k b_lk w_kj`` and
    ``m_lj = sum_k b_lk w_kj v_k``. ``m`` is affine in the ARKit weights and the pose-corrective
    feature, so its parts are precomputed once per identity (float64):
    ``m = M0 + ME @ weights + MP @ pose_feature``. A frame then costs a few small matrix
    products over L ~ 124 landmarks instead of skinning the ~550 vertices they use, and the
    Jacobian in the weights is exact and closed-form (``sum_j Q_j ME_lj``).

    Landmarks (rows): the MediaPipe-105 points, the 17 yaw-dependent contour points of the
    current yaw (precomputed lazily per integer degree in [-39, 39]) and the two pupils, in the
    target order of ``landmark_fit``'s problem.

    Args:
        flame: :func:`arkit_flame` of the model and this identity's ARKit deltas.
        emb: landmark embeddings (same topology).
        shape: (1, S') identity coefficients (fixed).
    """

    def __init__(self, flame: FLAME, emb: LandmarkEmbedding, shape: torch.Tensor):
        ids = emb.vertex_ids()
        sub = flame.subset(ids)
        self.emb = emb.remapped(ids)
        self.device = flame.v_template.device
        self.n_a = flame.n_expr
        self.parents: list[int] = list(flame.parents)
        dt = torch.float64
        shape = shape.to(self.device, torch.float32)
        with torch.no_grad():
            out = sub(shape, torch.zeros(1, self.n_a, device=self.device),
                      torch.zeros(1, flame.n_joints, 3, device=self.device))
        v0 = out.v_shaped[0].to(dt)  # (K, 3) template + identity
        self.rest_joints = out.rest_joints.to(dt)  # (1, J, 3)
        w = sub.weights.to(dt)  # (K, J)
        n_j, k = w.shape[1], w.shape[0]
        self.n_p = sub.posedirs.shape[2]
        # per-vertex attributes whose landmark interpolation gives W, M0, ME, MP
        self._attr = torch.cat([
            w,
            (w[:, :, None] * v0[:, None, :]).reshape(k, -1),
            (w[:, :, None, None] * sub.exprdirs.to(dt)[:, None]).reshape(k, -1),
            (w[:, :, None, None] * sub.posedirs.to(dt)[:, None]).reshape(k, -1)], dim=1)[None]
        self._sizes = (n_j, n_j * 3, n_j * 3 * self.n_a, n_j * 3 * self.n_p)
        self.n_j = n_j
        fixed = torch.cat([self.emb.mp105(self._attr), self.emb.pupils(self._attr)], dim=1)[0]
        self._fixed = fixed  # (105 + 2, C)
        self._contour: dict[int, torch.Tensor] = {}
        self._tables: dict[int, tuple[torch.Tensor, ...]] = {}

    def tables(self, yaw_deg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W (L,J), M0 (L,J,3), ME (L,J,3,A), MP (L,J,3,P)) for the contour of ``yaw_deg``;
        rows: 105 inner, 17 contour, 2 pupils (L = 124)."""
        deg = int(max(-MAX_YAW_BIN, min(MAX_YAW_BIN, round(float(yaw_deg)))))
        if deg not in self._tables:
            contour = self.emb.lmk68(self._attr, torch.tensor([float(deg)], dtype=torch.float64,
                                                              device=self.device))[0, :17]
            rows = torch.cat([self._fixed[:105], contour, self._fixed[105:]])
            n_l, (a, b, c, _) = len(rows), self._sizes
            self._tables[deg] = (rows[:, :a], rows[:, a:a + b].reshape(n_l, self.n_j, 3),
                                 rows[:, a + b:a + b + c].reshape(n_l, self.n_j, 3, self.n_a),
                                 rows[:, a + b + c:].reshape(n_l, self.n_j, 3, self.n_p))
        return self._tables[deg]

    def _posed(self, w: torch.Tensor, rotations: torch.Tensor, yaw_deg: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmarks before translation for a batch of rotations.

        Args:
            w: (A,) float64 ARKit weights.
            rotations: (B, 12) float64 ``[root, jaw, eye_L, eye_R]`` axis-angles (neck = 0).
        Returns:
            (points (B, L, 3), world joint rotations Q (B, J, 3, 3)).
        """
        w_tab, m0, me, mp = self.tables(yaw_deg)
        n_b, n_l, n_j = len(rotations), len(w_tab), self.n_j
        pose = torch.cat([rotations[:, None, :3], torch.zeros_like(rotations[:, None, :3]),
                          rotations[:, 3:].reshape(n_b, 3, 3)], dim=1)  # (B, J, 3)
        rot = rodrigues(pose)
        _, transforms = rigid_transforms(rot, self.rest_joints.expand(n_b, -1, -1), self.parents)
        q, b = transforms[:, :, :3, :3], transforms[:, :, :3, 3]
        # plain matrix products (einsum picks slow paths for these small shapes)
        m_w = (m0 + me @ w).reshape(n_l * n_j * 3, 1)
        m = (m_w + mp.reshape(-1, self.n_p) @ pose_feature(rot).T).T.reshape(n_b, n_l, n_j * 3)
        q_flat = q.transpose(-1, -2).reshape(n_b, n_j * 3, 3)  # [(j, y), x] = Q_j[x, y]
        return m @ q_flat + w_tab @ b, q

    def skinned(self, x: torch.Tensor, yaw_deg: float, with_jacobian: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Landmarks and their Jacobian.

        The weight and translation columns are exact; the 12 rotation columns are central
        differences (step ``FD_STEP`` rad, float64: relative error ~1e-10) evaluated as one
        batch of 25 poses.

        Args:
            x: (A + 15,) float64 ``[weights, root, translation, jaw, eyes (2x3)]`` (neck = 0).
            yaw_deg: selects the contour points.
            with_jacobian: False skips the Jacobian (None).
        Returns:
            (X (L, 3) view-frame landmarks, dX/dx (L, 3, A + 15) or None).
        """
        n_a = self.n_a
        w, trans = x[:n_a], x[n_a + 3:n_a + 6]
        rotations = torch.cat([x[n_a:n_a + 3], x[n_a + 6:]])[None]  # (1, 12)
        if with_jacobian:
            step = FD_STEP * torch.eye(12, dtype=x.dtype, device=x.device)
            rotations = torch.cat([rotations, rotations + step, rotations - step])
        pts, q = self._posed(w, rotations, yaw_deg)
        if not with_jacobian:
            return pts[0] + trans, None
        d_rot = ((pts[1:13] - pts[13:]) / (2 * FD_STEP)).permute(1, 2, 0)  # (L, 3, 12)
        me = self.tables(yaw_deg)[2]
        d_w = q[0].transpose(-1, -2).reshape(1, self.n_j * 3, 3).transpose(-1, -2) @ me.reshape(
            len(me), self.n_j * 3, self.n_a)  # (L, 3, A): sum_j Q_j ME_lj
        d_t = torch.eye(3, dtype=x.dtype, device=x.device).expand(len(d_w), 3, 3)
        jac = torch.cat([d_w, d_rot[..., :3], d_t, d_rot[..., 3:]], dim=-1)
        return pts[0] + trans, jac

    def points(self, x: torch.Tensor, yaw_deg: float) -> torch.Tensor:
        """(L, 3) view-frame landmarks of ``x`` (see :meth:`skinned`)."""
        return self.skinned(x, yaw_deg, with_jacobian=False)[0]


def _project_jac(pts: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (L, 2) of view-frame points (L, 3) and d(pixels)/d(points) (L, 2, 3)."""
    d = (-pts[:, 2]).clamp_min(1e-4)
    f = camera.focal
    uv = torch.stack([camera.cx + f * pts[:, 0] / d, camera.cy - f * pts[:, 1] / d], dim=-1)
    jac = torch.zeros(len(pts), 2, 3, dtype=pts.dtype, device=pts.device)
    jac[:, 0, 0] = f / d
    jac[:, 0, 2] = f * pts[:, 0] / d ** 2
    jac[:, 1, 1] = -f / d
    jac[:, 1, 2] = -f * pts[:, 1] / d ** 2
    return uv, jac


def _projected_lm(fun: Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None]],
                  x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, iterations: int,
                  before: Callable[[int, torch.Tensor], None], rel_tol: float = REL_TOL
                  ) -> tuple[torch.Tensor, int]:
    """Minimise ``|r(x)|^2`` subject to ``lo <= x <= hi`` (projected LM, Marquardt damping).

    Args:
        fun: ``fun(x, with_jacobian)`` -> (residuals (R,), Jacobian (R, P) or None).
        x: (P,) start, inside the box.
        lo, hi: (P,) bounds (+-inf for free parameters, lo == hi for fixed ones).
        iterations: outer iterations (each one Jacobian).
        before: ``before(i, x)`` runs before each iteration (IRLS weights, cancel).
        rel_tol: stop when an iteration lowers the cost by less than this fraction.
    Returns:
        (x, number of outer iterations run).
    """
    lam = 1e-3
    it = 0
    for it in range(iterations):
        before(it, x)
        r, jac = fun(x, True)
        cost = float(r @ r)
        g = jac.T @ r
        # active set: parameters held at a bound by the gradient do not take part in the step
        held = (lo == hi) | ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        free = torch.nonzero(~held).flatten()
        if len(free) == 0:
            break
        jf = jac[:, free]
        a, gf = jf.T @ jf, g[free]
        diag = torch.diagonal(a).clamp_min(1e-9)
        for _ in range(8):
            step = torch.zeros_like(x)
            step[free] = torch.linalg.solve(a + torch.diag(lam * diag), -gf)
            x_new = torch.maximum(torch.minimum(x + step, hi), lo)
            r_new, _ = fun(x_new, False)
            new_cost = float(r_new @ r_new)
            if new_cost < cost:
                break
            lam *= 10.0
        else:
            break  # no descent: converged
        x, lam = x_new, max(lam * 0.3, 1e-7)
        if cost - new_cost < rel_tol * cost:
            break
    return x, it + 1


def point_weights(yaw_deg: float, n_inner: int, n_contour: int, device: torch.device
                  ) -> torch.Tensor:
    """(n_inner + n_contour + 2,) float64 data weights of inner, contour and iris points: those of
    ``landmark_fit`` with MediaPipe alone (far-side contour points fade out between
    ``FAR_CONTOUR_FADE`` degrees of yaw)."""
    w = torch.cat([torch.full((n_inner,), W_INNER), torch.full((n_contour,), W_CONTOUR),
                   torch.full((2,), W_IRIS)]).to(device, torch.float64)
    side = torch.zeros_like(w)
    side[n_inner:n_inner + 8], side[n_inner + 9:n_inner + n_contour] = -1.0, 1.0
    lo, hi = FAR_CONTOUR_FADE
    fade = min(max((hi - abs(yaw_deg)) / (hi - lo), 0.0), 1.0)
    far = side * math.copysign(1.0, yaw_deg) * (yaw_deg != 0) > 0
    return torch.where(far, w * fade, w)


def fit_arkit(flame: FLAME, emb: LandmarkEmbedding, points478: np.ndarray,
              shape: torch.Tensor, names: list[str], camera: Camera | None = None,
              image_size: tuple[int, int] | None = None, init: FitParams | None = None,
              iterations: int = 40, cancel: Callable[[], bool] | None = None, *,
              rig: ArkitRig | None = None, warm_start: bool = False,
              rel_tol: float = REL_TOL) -> ArkitFit:
    """Fit ARKit weights and head, jaw and eye pose of a known identity to MediaPipe landmarks.

    Args:
        flame: :func:`arkit_flame` of the model and this identity's ARKit deltas.
        emb: landmark embeddings.
        points478: (478, 2|3) MediaPipe points, pixels of the fitted image.
        shape: (1, S) identity coefficients (kept fixed).
        names: the A ARKit names of the flame's expression components.
        camera: pinhole camera; None = ``default_camera(*image_size)``.
        image_size: (width, height), used when ``camera`` is None.
        init: start pose/translation (e.g. from fit_landmarks); None = PnP on the neutral head
            followed by a rigid refinement.
        iterations: LM iterations of the full stage (at most; it stops when converged).
        cancel: returns True to stop; checked before every iteration.
        rig: the identity's :class:`ArkitRig` (built from ``flame``, ``emb``, ``shape`` when None;
            pass it to fit many frames of one identity).
        warm_start: also start the weights, jaw and eyes from ``init`` (a previous frame's fit,
            ``init.expression`` (1, A)), not only root and translation.
        rel_tol: the full stage stops when an iteration lowers the cost by less than this.
    Returns:
        ArkitFit.
    Raises:
        BadInputError: wrong landmark array or a degenerate face.
        Cancelled: ``cancel()`` returned True.
    """
    if camera is None:
        if image_size is None:
            raise ValueError("a landmark fit needs a camera or an image_size")
        camera = default_camera(*image_size)
    targets = LandmarkTargets.from_mediapipe(points478, emb)
    n_a = flame.n_expr
    if len(names) != n_a:
        raise ValueError(f"{len(names)} names for {n_a} ARKit shapes")
    if rig is None:
        rig = ArkitRig(flame, emb, shape)
    dev = rig.device
    f64 = torch.float64
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=f64, device=dev)  # noqa: E731
    target = t(np.concatenate([targets.inner, targets.contour, targets.iris]))
    target_lids = t(targets.lids)
    p0, p1 = (torch.as_tensor(targets.lid_pairs[:, k], device=dev) for k in (0, 1))
    scale = 1.0 / targets.face_size
    n_in, n_c = len(targets.inner), len(targets.contour)
    pairs = torch.tensor([(names.index(a), names.index(b)) for a, b in OPPOSING
                          if a in names and b in names], dtype=torch.long, device=dev)
    n_x = n_a + 15
    sq = math.sqrt
    # prior rows: weights, opposing products, jaw, eyes
    prior_jac = torch.zeros(n_a + len(pairs) + 9, n_x, dtype=f64, device=dev)
    prior_jac[:n_a, :n_a] = sq(PRIOR_WEIGHTS) * torch.eye(n_a, dtype=f64, device=dev)
    rows = n_a + len(pairs)
    prior_jac[rows:rows + 3, n_a + 6:n_a + 9] = sq(PRIOR_JAW) * torch.eye(3, dtype=f64, device=dev)
    prior_jac[rows + 3:, n_a + 9:] = sq(PRIOR_EYES) * torch.eye(6, dtype=f64, device=dev)
    pair_rows = torch.arange(n_a, rows, device=dev)
    timings: dict[str, float] = {}
    state: dict[str, Any] = {}

    def yaw_of(x: torch.Tensor) -> float:
        pose = torch.zeros(1, 2, 3, dtype=f64, device=dev)
        pose[0, 0] = x[n_a:n_a + 3]
        return float(yaw_degrees(pose)[0])

    def evaluate(x: torch.Tensor, yaw: float, with_jac: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rig.skinned with a one-entry memo (refresh and the next Jacobian share a point)."""
        hit = state.get("memo")
        if hit is not None and hit[0] is x and hit[1] == yaw and (hit[3] is not None or not with_jac):
            return hit[2], hit[3]
        pts, d_x = rig.skinned(x, yaw, with_jac)
        state["memo"] = (x, yaw, pts, d_x)
        return pts, d_x

    def refresh(inner_only: bool) -> Callable[[int, torch.Tensor], None]:
        def before(_: int, x: torch.Tensor) -> None:
            if cancel is not None and cancel():
                raise Cancelled("ARKit fit cancelled.")
            yaw = yaw_of(x)
            uv, _ = _project_jac(evaluate(x, yaw, True)[0], camera)
            err = torch.cat([(uv - target) * scale,
                             (uv[p0] - uv[p1] - target_lids) * scale]).norm(dim=-1)
            irls = torch.where(err <= HUBER_DELTA, torch.ones_like(err), HUBER_DELTA / err)
            w = torch.cat([point_weights(yaw, n_in, n_c, dev),
                           torch.full((len(p0),), W_LIDS, dtype=f64, device=dev)])
            if inner_only:
                w[n_in:] = 0.0
            state["yaw"], state["sqrt_w"] = yaw, torch.sqrt(w * irls)
        return before

    def fun(x: torch.Tensor, with_jac: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        yaw, sqrt_w = state["yaw"], state["sqrt_w"]
        pts, d_x = evaluate(x, yaw, with_jac)
        uv, d_proj = _project_jac(pts, camera)
        data = torch.cat([uv - target, uv[p0] - uv[p1] - target_lids]) * (scale * sqrt_w[:, None])
        w = x[:n_a]
        prior = torch.cat([sq(PRIOR_WEIGHTS) * w,
                           sq(PRIOR_OPPOSING) * w[pairs[:, 0]] * w[pairs[:, 1]],
                           sq(PRIOR_JAW) * x[n_a + 6:n_a + 9], sq(PRIOR_EYES) * x[n_a + 9:]])
        r = torch.cat([data.reshape(-1), prior])
        if not with_jac:
            return r, None
        d_uv = d_proj @ d_x  # (L, 2, n_x)
        d_data = torch.cat([d_uv, d_uv[p0] - d_uv[p1]]) * (scale * sqrt_w[:, None, None])
        d_prior = prior_jac.clone()
        d_prior[pair_rows, pairs[:, 0]] = sq(PRIOR_OPPOSING) * w[pairs[:, 1]]
        d_prior[pair_rows, pairs[:, 1]] = sq(PRIOR_OPPOSING) * w[pairs[:, 0]]
        return r, torch.cat([d_data.reshape(-1, n_x), d_prior])

    x = torch.zeros(n_x, dtype=f64, device=dev)
    t0 = time.perf_counter()
    if init is not None:
        x[n_a:n_a + 3] = init.pose[0, 0].to(dev, f64)
        x[n_a + 3:n_a + 6] = init.translation[0].to(dev, f64)
        if warm_start and init.expression.shape[1] == n_a:
            x[:n_a] = init.expression[0].to(dev, f64).clamp(0.0, 1.0)
            x[n_a + 6:n_a + 9] = init.pose[0, 2].to(dev, f64)
            x[n_a + 9:] = init.pose[0, 3:5].reshape(-1).to(dev, f64)
    else:
        prob, _, _ = landmark_problem(flame, emb, points478, camera, None)
        base = {"shape": shape.to(dev, torch.float32),
                "expression": torch.zeros(1, n_a, device=dev),
                "pose": torch.zeros(1, flame.n_joints, 3, device=dev)}
        root, trans = _rigid_init(prob, targets, base, camera)[:2]
        x[n_a:n_a + 3], x[n_a + 3:n_a + 6] = root.to(f64), trans.to(f64)
        # rigid refinement on the inner points: only root and translation move
        lo, hi = x.clone(), x.clone()
        lo[n_a:n_a + 6], hi[n_a:n_a + 6] = -math.inf, math.inf
        x, _ = _projected_lm(fun, x, lo, hi, RIGID_ITERATIONS, refresh(inner_only=True))
    timings["fit_arkit_rigid"] = round(time.perf_counter() - t0, 4)

    t0 = time.perf_counter()
    lo, hi = torch.full_like(x, -math.inf), torch.full_like(x, math.inf)
    lo[:n_a], hi[:n_a] = 0.0, 1.0
    x, n_it = _projected_lm(fun, x, lo, hi, iterations, refresh(inner_only=False), rel_tol)
    timings["fit_arkit"] = round(time.perf_counter() - t0, 4)

    with torch.no_grad():
        uv, _ = _project_jac(rig.points(x, yaw_of(x)), camera)
        rms = float((uv[:n_in] - target[:n_in]).norm(dim=-1).pow(2).mean().sqrt())
    x32 = x.to(torch.float32)
    params = FitParams.zeros(flame.n_shape, n_a, flame.n_joints, camera, device=dev)
    params.shape[:, :shape.shape[1]] = shape.to(dev, torch.float32)
    params.expression = x32[None, :n_a].clone()
    params.pose = _pose(x32[n_a:n_a + 3], x32[n_a + 6:n_a + 9],
                        x32[n_a + 9:n_a + 15].reshape(2, 3))[None].clone()
    params.translation = x32[None, n_a + 3:n_a + 6].clone()
    return ArkitFit(weights=x32[:n_a].cpu().numpy(), params=params, rms_px=rms,
                    timings=timings, iterations=n_it)
