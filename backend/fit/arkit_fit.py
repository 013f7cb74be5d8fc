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
Levenberg-Marquardt (weights clipped to [0, 1] after every step), Jacobians by
``torch.func.jacfwd`` on the vertex subset the landmarks use.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import Cancelled
from .landmark_fit import HUBER_DELTA, W_LIDS, _rigid_init, landmark_problem
from ..model.flame import FLAME, FlameModelData
from ..landmarks.embedding import LandmarkEmbedding, yaw_degrees
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
    """

    weights: np.ndarray
    params: FitParams
    rms_px: float
    timings: dict[str, float] = field(default_factory=dict)


def _pose(root: torch.Tensor, jaw: torch.Tensor, eyes: torch.Tensor) -> torch.Tensor:
    """(J=5, 3) pose from root (3,), jaw (3,), eyes (2, 3); the neck stays 0."""
    return torch.cat([root[None], torch.zeros_like(root)[None], jaw[None], eyes])


def _projected_lm(fun: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  lo: torch.Tensor, hi: torch.Tensor, iterations: int,
                  before: Callable[[int, torch.Tensor], None]) -> torch.Tensor:
    """Minimise ``|fun(x)|^2`` subject to ``lo <= x <= hi`` (projected LM, Marquardt damping).

    Args:
        fun: residual function (P,) -> (R,).
        x: (P,) start, inside the box.
        lo, hi: (P,) bounds (+-inf for free parameters).
        iterations: outer iterations.
        before: ``before(i, x)`` runs before each iteration (IRLS weights, cancel).
    """
    lam = 1e-3
    movable = torch.nonzero(lo != hi).flatten()  # Jacobian columns of fixed parameters are 0
    for it in range(iterations):
        before(it, x)
        r = fun(x)
        cost = float(r @ r)
        jac = torch.zeros(len(r), len(x), device=x.device)
        jac[:, movable] = torch.func.jacfwd(
            lambda z, base=x: fun(base.index_put((movable,), z)))(x[movable])
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
            r_new = fun(x_new)
            new_cost = float(r_new @ r_new)
            if new_cost < cost:
                break
            lam *= 10.0
        else:
            break  # no descent: converged
        x, lam = x_new, max(lam * 0.3, 1e-7)
        if cost - new_cost < REL_TOL * cost:
            break
    return x


def fit_arkit(flame: FLAME, emb: LandmarkEmbedding, points478: np.ndarray,
              shape: torch.Tensor, names: list[str], camera: Camera | None = None,
              image_size: tuple[int, int] | None = None, init: FitParams | None = None,
              iterations: int = 40, cancel: Callable[[], bool] | None = None) -> ArkitFit:
    """Fit ARKit weights and head, jaw and eye pose of a known identity to MediaPipe landmarks.

    Args:
        flame: :func:`arkit_flame` of the model and this identity's ARKit deltas.
        emb: landmark embeddings.
        points478: (478, 2|3) MediaPipe points, pixels of the fitted image.
        shape: (1, S) identity coefficients (kept fixed).
        names: the A ARKit names of the flame's expression components.
        camera: pinhole camera; None = ``default_camera(*image_size)``.
        image_size: (width, height), used when ``camera`` is None.
        init: start pose/translation (e.g. from fit_landmarks); None = PnP on the neutral head.
        iterations: LM iterations of the full stage.
        cancel: returns True to stop; checked before every iteration.
    Returns:
        ArkitFit.
    Raises:
        BadInputError: wrong landmark array or a degenerate face.
        Cancelled: ``cancel()`` returned True.
    """
    prob, targets, camera = landmark_problem(flame, emb, points478, camera, image_size)
    dev = prob.device
    shape = shape.to(dev, torch.float32)
    n_a = flame.n_expr
    if len(names) != n_a:
        raise ValueError(f"{len(names)} names for {n_a} ARKit shapes")
    pairs = torch.tensor([(names.index(a), names.index(b)) for a, b in OPPOSING
                          if a in names and b in names], dtype=torch.long, device=dev)
    n_lids = len(targets.lids)
    timings: dict[str, float] = {}
    state: dict[str, torch.Tensor] = {}

    def unpack(x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x = [weights (A), root (3), translation (3), jaw (3), eyes (6)] -> FLAME inputs."""
        pose = _pose(x[n_a:n_a + 3], x[n_a + 6:n_a + 9], x[n_a + 9:n_a + 15].reshape(2, 3))
        return {"shape": shape, "expression": x[None, :n_a], "pose": pose[None],
                "translation": x[None, n_a + 3:n_a + 6], "eyelids": None}

    def errors(p: dict[str, torch.Tensor], yaw: torch.Tensor) -> torch.Tensor:
        r, r_lids = prob.residuals(p, yaw)
        return torch.cat([r, r_lids])  # (N + 6, 2), face sizes

    def refresh(inner_only: bool) -> Callable[[int, torch.Tensor], None]:
        def before(_: int, x: torch.Tensor) -> None:
            if cancel is not None and cancel():
                raise Cancelled("ARKit fit cancelled.")
            with torch.no_grad():
                p = unpack(x)
                yaw = yaw_degrees(p["pose"])
                err = errors(p, yaw).norm(dim=-1)
                irls = torch.where(err <= HUBER_DELTA, torch.ones_like(err), HUBER_DELTA / err)
                w = torch.cat([prob.point_weights(yaw), torch.full((n_lids,), W_LIDS, device=dev)])
                if inner_only:
                    w[prob.n_inner:] = 0.0
                state["yaw"], state["sqrt_w"] = yaw, torch.sqrt(w * irls)
        return before

    def fun(x: torch.Tensor) -> torch.Tensor:
        p = unpack(x)
        w, pose = x[:n_a], p["pose"][0]
        data = errors(p, state["yaw"]) * state["sqrt_w"][:, None]
        prior = torch.cat([math.sqrt(PRIOR_WEIGHTS) * w,
                           math.sqrt(PRIOR_OPPOSING) * w[pairs[:, 0]] * w[pairs[:, 1]],
                           math.sqrt(PRIOR_JAW) * pose[2],
                           math.sqrt(PRIOR_EYES) * pose[3:].reshape(-1)])
        return torch.cat([data.reshape(-1), prior])

    x = torch.zeros(n_a + 15, device=dev)
    t0 = time.perf_counter()
    if init is not None:
        x[n_a:n_a + 3] = init.pose[0, 0].to(dev)
        x[n_a + 3:n_a + 6] = init.translation[0].to(dev)
    else:
        base = {"shape": shape, "expression": torch.zeros(1, n_a, device=dev),
                "pose": torch.zeros(1, flame.n_joints, 3, device=dev)}
        x[n_a:n_a + 3], x[n_a + 3:n_a + 6] = _rigid_init(prob, targets, base, camera)
        # rigid refinement on the inner points: only root and translation move
        lo, hi = x.clone(), x.clone()
        lo[n_a:n_a + 6], hi[n_a:n_a + 6] = -math.inf, math.inf
        x = _projected_lm(fun, x, lo, hi, RIGID_ITERATIONS, refresh(inner_only=True))
    timings["fit_arkit_rigid"] = round(time.perf_counter() - t0, 4)

    t0 = time.perf_counter()
    lo, hi = torch.full_like(x, -math.inf), torch.full_like(x, math.inf)
    lo[:n_a], hi[:n_a] = 0.0, 1.0
    x = _projected_lm(fun, x, lo, hi, iterations, refresh(inner_only=False))
    timings["fit_arkit"] = round(time.perf_counter() - t0, 4)

    p = {k: (v.detach() if v is not None else None) for k, v in unpack(x).items()}
    with torch.no_grad():
        uv, _ = prob.points(p, yaw_degrees(p["pose"]))
        rms = float((uv[:prob.n_inner] - prob.target[:prob.n_inner]).norm(dim=-1).pow(2).mean().sqrt())
    params = FitParams.zeros(flame.n_shape, n_a, flame.n_joints, camera, device=dev)
    params.shape[:, :shape.shape[1]] = shape
    params.expression = p["expression"].clone()
    params.pose = p["pose"].clone()
    params.translation = p["translation"].clone()
    return ArkitFit(weights=p["expression"][0].cpu().numpy(), params=params, rms_px=rms,
                    timings=timings)
