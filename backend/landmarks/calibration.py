"""Re-embed MediaPipe's landmarks on the FLAME surface from synthetic renders.

The MediaPipe-105 embedding of the assets (metrical-tracker) places each MediaPipe point on
a FLAME triangle, but MediaPipe does not detect exactly those surface points on a FLAME
head. Here random dev-model heads (identity, expression, jaw, head pose, SH lighting; the
renderer of backend/fit/synthetic.py with the fitter's default camera) are rendered, MediaPipe
runs on each image, and for every embedded point the surface point (template triangle +
barycentric) whose projection best matches the detections over all renders is searched:

1. candidates: the non-eyeball triangles whose template centroid lies within ``radius`` of
   the current point on the template;
2. each candidate is scored on a barycentric grid (mean pixel distance over the renders);
3. the best few are refined by Gauss-Newton in barycentric space, clamped to the triangle,
   and the lowest mean pixel distance wins (the current point competes as well).

Setup (``python -m backend setup-weights``) writes the result to
``weights/mediapipe_flame_embedding_calibrated.npz`` (same keys as the assets embedding plus
provenance); :meth:`backend.landmarks.embedding.LandmarkEmbedding.load` prefers it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from ..model.assets import DEV_MODEL_RELPATH, assets_dir, weights_dir
from ..fit.landmark_fit import default_camera
from ..model.flame import FLAME, FlameModelData, load_eyelid_deltas, load_flame
from .embedding import EMBEDDING_68, EMBEDDING_68_CALIBRATED, EMBEDDING_MP, EMBEDDING_MP_CALIBRATED
from ..model.params import Camera
from ..model.pinned import sha256_of
from ..fit.synthetic import random_head_params, random_sh, render_head
from ..model.uv import UVLayout, load_uv_layout

CALIBRATED_NAME = EMBEDDING_MP_CALIBRATED
FIXED68_CALIBRATED_NAME = EMBEDDING_68_CALIBRATED
FIXED68_HEADS = 60
FIXED68_ALGORITHM_VERSION = 2  # 2: wide poses, crop from the true points
ASSETS_EMBEDDING = EMBEDDING_MP
MEAN_TEXTURE = "uv/mean_texture.jpg"
ALGORITHM_VERSION = 1
SETUP_HEADS = 40
SETUP_SEED = 1000  # held out: the recovery test uses seeds 3 and 11, the benchmark seed 0
IMAGE_SIZE = 512


class HeadParts(Protocol):
    """What the calibration needs of an engine (backend.pipeline.Engine has all of it)."""

    flame: FLAME
    model: FlameModelData
    uv: UVLayout
    assets: Path


@dataclass
class Parts:
    """Model parts loaded from the assets folder (dev model), for setup without an engine."""

    flame: FLAME
    model: FlameModelData
    uv: UVLayout
    assets: Path

    @classmethod
    def from_assets(cls, assets: str | os.PathLike[str] | None = None) -> "Parts":
        root = assets_dir(assets)
        model = load_flame(root / DEV_MODEL_RELPATH)
        flame = FLAME(model, eyelid_deltas=load_eyelid_deltas(root))
        return cls(flame, model, load_uv_layout(root, model_faces=model.faces), root)


@dataclass
class CalibrationRender:
    """One rendered head with a detector's points.

    Args:
        vertices: (V, 3) float64 view-frame vertices of the rendered head.
        points: (N, 2) float64 detected points in pixels (MediaPipe's 478, or the network's 68).
        camera: the render's camera.
    """

    vertices: np.ndarray
    points: np.ndarray
    camera: Camera


class _HeadRenderer:
    """Random dev-model heads (identity, expression, jaw, pose, SH light, background) rendered
    through the fitter's default camera, drawn from one random generator."""

    def __init__(self, parts: HeadParts, seed: int, size: int):
        self.parts, self.size = parts, size
        self.rng = np.random.default_rng(seed)
        self.camera = default_camera(size, size)
        self.albedo = np.asarray(Image.open(Path(parts.assets) / MEAN_TEXTURE).convert("RGB"),
                                 np.float32) / 255.0

    def render(self, wide_pose: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One head: (image (size, size, 3) uint8, view-frame vertices (V, 3) float64).

        ``wide_pose`` turns the head up to +-63 degrees of yaw and +-17 of pitch (beyond what
        MediaPipe detects; for detectors that get their crop from the true points)."""
        flame, rng, size, camera = self.parts.flame, self.rng, self.size, self.camera
        params = random_head_params(flame.n_shape, flame.n_expr, flame.n_joints, rng)
        if wide_pose:
            params["pose"][0, :2] = [rng.uniform(-0.3, 0.3), rng.uniform(-1.1, 1.1)]
        sh = random_sh(rng)
        dist = 0.24 * camera.focal / (0.5 * size) * rng.uniform(0.85, 1.15)
        translation = np.array([rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01) + 0.02, -dist],
                               np.float32)
        bg = np.full((size, size, 3), rng.uniform(0.2, 0.7, 3), np.float32)
        bg += rng.normal(0.0, 0.02, bg.shape).astype(np.float32)
        img = render_head(flame, self.parts.uv, self.albedo, params, sh, camera, bg.clip(0, 1),
                          translation)
        dev = next(flame.buffers()).device
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=dev)[None]  # noqa: E731
        with torch.no_grad():
            verts = flame(t(params["shape"]), t(params["expression"]), t(params["pose"]),
                          t(translation), eyelids=t(params["eyelids"])).vertices[0]
        return img, verts.cpu().double().numpy()


def render_calibration_set(parts: HeadParts, n_heads: int, seed: int,
                           size: int = IMAGE_SIZE) -> list[CalibrationRender]:
    """Render ``n_heads`` random heads and detect MediaPipe's points on each.

    Heads where MediaPipe finds no face are skipped (so the list may be shorter).
    """
    from .mediapipe_mesh import get_landmarker

    detector = get_landmarker()
    heads = _HeadRenderer(parts, seed, size)
    renders: list[CalibrationRender] = []
    for _ in range(n_heads):
        img, verts = heads.render()
        faces = detector.detect_faces(img)
        if faces:
            renders.append(CalibrationRender(verts, np.asarray(faces[0].points[:, :2], np.float64),
                                             heads.camera))
    return renders


def render_network_set(parts: HeadParts, network: Any, n_heads: int, seed: int,
                       face_idx: np.ndarray, bary: np.ndarray,
                       size: int = IMAGE_SIZE) -> list[CalibrationRender]:
    """Render ``n_heads`` heads in wide poses and run the large-pose network on each, cropped
    around the true projections of the 68 embedded points (``face_idx`` (68,), ``bary`` (68, 3)).
    """
    faces = np.asarray(parts.model.faces, np.int64)
    heads = _HeadRenderer(parts, seed, size)
    renders: list[CalibrationRender] = []
    for _ in range(n_heads):
        img, verts = heads.render(wide_pose=True)
        truth = np.einsum("nkc,nk->nc", verts[faces[face_idx]], bary)
        crop_points = _project(truth[:, None], [heads.camera])[:, 0]
        renders.append(CalibrationRender(verts, network.predict(img, crop_points).landmarks,
                                         heads.camera))
    return renders


def _project(points: np.ndarray, cams: list[Camera]) -> np.ndarray:
    """Pinhole projection per render.

    Args:
        points: (..., R, 3) view-frame points, axis -2 the render.
    Returns:
        (..., R, 2) pixels.
    """
    f = np.array([c.focal for c in cams])[:, None]
    cx = np.array([c.cx for c in cams])
    cy = np.array([c.cy for c in cams])
    depth = np.maximum(-points[..., 2], 1e-6)
    return np.stack([cx + f[:, 0] * points[..., 0] / depth, cy - f[:, 0] * points[..., 1] / depth], -1)


def reprojection_errors(renders: list[CalibrationRender], faces: np.ndarray, face_idx: np.ndarray,
                        bary: np.ndarray, mp_indices: np.ndarray) -> np.ndarray:
    """Mean pixel distance between embedded points and MediaPipe's detections.

    Args:
        faces: (F, 3) template triangles; face_idx: (N,); bary: (N, 3);
        mp_indices: (N,) indices among MediaPipe's 478 points.
    Returns:
        (N,) mean over the renders, pixels.
    """
    verts = np.stack([r.vertices for r in renders])  # (R, V, 3)
    tri = verts[:, faces[face_idx]]  # (R, N, 3, 3)
    pts = np.einsum("rnkc,nk->nrc", tri, bary)  # (N, R, 3)
    det = np.stack([r.points[mp_indices] for r in renders], 1)  # (N, R, 2)
    return np.linalg.norm(_project(pts, [r.camera for r in renders]) - det, axis=-1).mean(-1)


def _barycentric_grid(steps: int) -> np.ndarray:
    """(M, 3) barycentric points on a regular grid over the triangle."""
    ij = [(i, j) for i in range(steps + 1) for j in range(steps + 1 - i)]
    return np.array([(i, j, steps - i - j) for i, j in ij], np.float64) / steps


def _refine(tri: np.ndarray, det: np.ndarray, cams: list[Camera], w0: np.ndarray,
            iterations: int = 8) -> np.ndarray:
    """Gauss-Newton on the barycentric coordinates of one triangle, clamped to the triangle.

    Args:
        tri: (R, 3, 3) triangle corners per render; det: (R, 2) detections; w0: (3,).
    Returns:
        (3,) barycentric coordinates.
    """
    ab = w0[:2].copy()
    basis = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]])  # d w / d (a, b)
    for _ in range(iterations):
        w = np.array([ab[0], ab[1], 1.0 - ab.sum()])
        r = (_project(np.einsum("rkc,k->rc", tri, w), cams) - det).reshape(-1)
        jac = np.empty((len(r), 2))
        eps = 1e-4
        for d in range(2):
            wd = w + eps * basis[d]
            jac[:, d] = ((_project(np.einsum("rkc,k->rc", tri, wd), cams) - det).reshape(-1) - r) / eps
        step = np.linalg.lstsq(jac, -r, rcond=None)[0]
        ab = np.clip(ab + step, 0.0, 1.0)
        if ab.sum() > 1.0:
            ab = ab / ab.sum()
    return np.array([ab[0], ab[1], 1.0 - ab.sum()])


def fit_embedding(renders: list[CalibrationRender], faces: np.ndarray, v_template: np.ndarray,
                  face_idx: np.ndarray, bary: np.ndarray, mp_indices: np.ndarray,
                  excluded_vertices: np.ndarray, radius: float = 0.015, grid_steps: int = 8,
                  refine_top: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Move every embedded point to the surface point that best explains the detections.

    Args:
        faces: (F, 3); v_template: (V, 3) template (candidate search, metres);
        face_idx: (N,) and bary: (N, 3) the starting embedding; mp_indices: (N,);
        excluded_vertices: (K,) vertex ids whose triangles are never used (eyeballs).
    Returns:
        face_idx (N,) int64 and bary (N, 3) float64.
    """
    cams = [r.camera for r in renders]
    verts = np.stack([r.vertices for r in renders])  # (R, V, 3)
    blocked = np.zeros(len(v_template), bool)
    blocked[excluded_vertices] = True
    allowed = ~blocked[faces].any(1)
    centroids = v_template[faces].mean(1)
    grid = _barycentric_grid(grid_steps)
    new_idx = np.asarray(face_idx, np.int64).copy()
    new_w = np.asarray(bary, np.float64).copy()
    for n in range(len(face_idx)):
        det = np.stack([r.points[mp_indices[n]] for r in renders])  # (R, 2)
        start = (v_template[faces[face_idx[n]]] * bary[n][:, None]).sum(0)
        cand = np.flatnonzero(allowed & (np.linalg.norm(centroids - start, axis=1) < radius))
        tri = verts[:, faces[cand]]  # (R, C, 3, 3)
        pts = np.einsum("rckx,mk->cmrx", tri, grid)  # (C, M, R, 3)
        err = np.linalg.norm(_project(pts, cams) - det, axis=-1).mean(-1)  # (C, M)
        best_err = np.linalg.norm(_project(np.einsum("rkc,k->rc", verts[:, faces[face_idx[n]]],
                                                     bary[n]), cams) - det, axis=-1).mean()
        for c in np.argsort(err.min(1))[:refine_top]:
            tri_c = verts[:, faces[cand[c]]]
            w = _refine(tri_c, det, cams, grid[err[c].argmin()])
            e = np.linalg.norm(_project(np.einsum("rkc,k->rc", tri_c, w), cams) - det, axis=-1).mean()
            if e < best_err:
                best_err, new_idx[n], new_w[n] = e, cand[c], w
    return new_idx, new_w


def calibrate_mediapipe_embedding(parts: HeadParts, n_heads: int = SETUP_HEADS, seed: int = 0,
                                  size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Calibrate the assets' MediaPipe-105 embedding on ``n_heads`` synthetic renders.

    Args:
        parts: an engine (or :class:`Parts`): FLAME, its data, the UV layout, the assets folder.
    Returns:
        lmk_face_idx (105,) uint32, lmk_b_coords (105, 3) float64, landmark_indices (105,)
        int64 (the assets file's keys) and per-point mean reprojection errors in pixels over
        the renders, ``error_before_px`` / ``error_after_px`` (105,), plus ``n_renders`` ().
    """
    root = Path(parts.assets)
    with np.load(root / ASSETS_EMBEDDING) as data:
        face_idx = data["lmk_face_idx"].astype(np.int64)
        bary = data["lmk_b_coords"].astype(np.float64)
        mp_indices = data["landmark_indices"].astype(np.int64)
    renders = render_calibration_set(parts, n_heads, seed, size)
    if len(renders) < 3:
        raise RuntimeError(f"MediaPipe found a face in only {len(renders)} of {n_heads} renders.")
    faces = np.asarray(parts.model.faces, np.int64)
    with np.load(root / "masks" / "flame_vertex_masks.npz") as masks:
        eyeballs = np.concatenate([masks["left_eyeball"], masks["right_eyeball"]]).astype(np.int64)
    v_template = np.asarray(parts.model.v_template, np.float64)
    before = reprojection_errors(renders, faces, face_idx, bary, mp_indices)
    new_idx, new_w = fit_embedding(renders, faces, v_template, face_idx, bary, mp_indices, eyeballs)
    after = reprojection_errors(renders, faces, new_idx, new_w, mp_indices)
    return {"lmk_face_idx": new_idx.astype(np.uint32), "lmk_b_coords": new_w,
            "landmark_indices": mp_indices, "error_before_px": before, "error_after_px": after,
            "n_renders": np.array(len(renders))}


def calibrate_fixed68_embedding(parts: HeadParts, network: Any, n_heads: int = SETUP_HEADS,
                                seed: int = 0, size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Re-embed FLAME's fixed 68 iBUG points where the large-pose network sees them.

    The network was trained on 300W-LP, whose 68 points are fixed vertices of another face
    model (AFLW2000-3D's definition); FLAME's static 68-point embedding puts some of them
    elsewhere (brows, lips). Searching, per point, the FLAME surface point whose projection
    best matches the network's detections on synthetic dev-model renders carries that
    definition over to FLAME without any evaluation image. The renders turn the head up to +-63
    degrees of yaw (the network's crop comes from the true points, no MediaPipe needed), so the
    far-side jaw points are seen where the network places them at large yaw too.

    Args:
        parts: FLAME, its data, the UV layout, the assets folder.
        network: a loaded ``tddfa.TDDFA``.
    Returns:
        full_lmk_faces_idx (68,) int64, full_lmk_bary_coords (68, 3) float64,
        error_before_px / error_after_px (68,) mean reprojection errors over the renders,
        n_renders ().
    """
    root = Path(parts.assets)
    with np.load(root / EMBEDDING_68) as data:
        face_idx = data["full_lmk_faces_idx"].reshape(-1).astype(np.int64)
        bary = data["full_lmk_bary_coords"].reshape(-1, 3).astype(np.float64)
    renders = render_network_set(parts, network, n_heads, seed, face_idx, bary, size)
    faces = np.asarray(parts.model.faces, np.int64)
    with np.load(root / "masks" / "flame_vertex_masks.npz") as masks:
        eyeballs = np.concatenate([masks["left_eyeball"], masks["right_eyeball"]]).astype(np.int64)
    v_template = np.asarray(parts.model.v_template, np.float64)
    ids = np.arange(68)
    before = reprojection_errors(renders, faces, face_idx, bary, ids)
    new_idx, new_w = fit_embedding(renders, faces, v_template, face_idx, bary, ids, eyeballs,
                                   radius=0.02)
    after = reprojection_errors(renders, faces, new_idx, new_w, ids)
    return {"full_lmk_faces_idx": new_idx, "full_lmk_bary_coords": new_w,
            "error_before_px": before, "error_after_px": after, "n_renders": np.array(len(renders))}


# ------------------------------------------------------------------------- setup step
def _inputs_provenance(assets: Path) -> dict[str, Any]:
    from .mediapipe_files import MEDIAPIPE_FILES

    files = {rel: sha256_of(assets / rel) for rel in (ASSETS_EMBEDDING, DEV_MODEL_RELPATH, MEAN_TEXTURE)}
    detector = {p.name: p.sha256 for p in MEDIAPIPE_FILES if p.name.endswith(".tflite")}
    return {"algorithm_version": ALGORITHM_VERSION, "n_heads": SETUP_HEADS, "seed": SETUP_SEED,
            "image_size": IMAGE_SIZE, "inputs": files, "detector": detector}


def ensure_calibrated_embedding(assets: str | os.PathLike[str] | None = None,
                                weights: str | os.PathLike[str] | None = None) -> Path:
    """Write weights/mediapipe_flame_embedding_calibrated.npz unless present from the same inputs.

    Returns:
        path of the file.
    """
    root = assets_dir(assets)
    out = weights_dir(weights) / CALIBRATED_NAME
    wanted = _inputs_provenance(root)
    if _stored_provenance(out, wanted):
        print(f"setup-weights: {out} is up to date")
        return out
    return _write_calibration(
        out, wanted, lambda: calibrate_mediapipe_embedding(Parts.from_assets(root), SETUP_HEADS, SETUP_SEED),
        ("lmk_face_idx", "lmk_b_coords", "landmark_indices", "error_before_px", "error_after_px"),
        "the MediaPipe embedding", "assets MediaPipe embedding (metrical-tracker) re-fitted by "
                                   "backend/landmarks/calibration.py")


def ensure_calibrated_fixed68(assets: str | os.PathLike[str] | None = None,
                              weights: str | os.PathLike[str] | None = None) -> Path | None:
    """Write weights/tddfa_flame_embedding_68_calibrated.npz unless present from the same inputs.

    Needs the large-pose network in weights/ (``setup_tddfa`` first); without it, nothing is
    written and None is returned (the assets' static 68 embedding is used).
    """
    from .tddfa import TDDFA_FILES, load_tddfa_weights

    root = assets_dir(assets)
    out = weights_dir(weights) / FIXED68_CALIBRATED_NAME
    network, warnings = load_tddfa_weights(weights)
    if network is None:
        print(f"setup-weights: no calibrated 68-point embedding ({' '.join(warnings)})")
        return None
    files = {rel: sha256_of(root / rel) for rel in (EMBEDDING_68, DEV_MODEL_RELPATH, MEAN_TEXTURE)}
    wanted = {"algorithm_version": FIXED68_ALGORITHM_VERSION, "n_heads": FIXED68_HEADS,
              "seed": SETUP_SEED, "image_size": IMAGE_SIZE, "inputs": files,
              "network": {p.name: p.sha256 for p in TDDFA_FILES[:2]}}
    if _stored_provenance(out, wanted):
        print(f"setup-weights: {out} is up to date")
        return out
    return _write_calibration(
        out, wanted, lambda: calibrate_fixed68_embedding(Parts.from_assets(root), network,
                                                         FIXED68_HEADS, SETUP_SEED),
        ("full_lmk_faces_idx", "full_lmk_bary_coords", "error_before_px", "error_after_px"),
        "the fixed 68-point embedding to the large-pose network",
        "assets full 68-point embedding re-fitted to the 3DDFA_V2 network's detections by "
        "backend/landmarks/calibration.py")


def _write_calibration(out: Path, wanted: dict[str, Any], compute: Any, keys: tuple[str, ...],
                       what: str, source: str) -> Path:
    """Run ``compute()`` (a calibrate_* function) and write ``keys`` of its result plus the
    provenance (``wanted`` + error figures) to ``out`` atomically.

    Returns:
        ``out``.
    """
    start = time.perf_counter()
    result = compute()
    before = float(result["error_before_px"].mean())
    after = float(result["error_after_px"].mean())
    provenance = dict(wanted, n_renders=int(result["n_renders"]), mean_error_before_px=before,
                      mean_error_after_px=after, seconds=time.perf_counter() - start, source=source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: result[k] for k in keys}, n_heads=np.array(wanted["n_heads"]),
             seed=np.array(wanted["seed"]), mean_error_before_px=np.array(before),
             mean_error_after_px=np.array(after), provenance=np.array(json.dumps(provenance)))
    os.replace(tmp, out)
    print(f"setup-weights: calibrated {what} on {provenance['n_renders']} renders, mean "
          f"reprojection error {before:.2f} -> {after:.2f} px -> {out} ({provenance['seconds']:.1f} s)")
    return out


def _stored_provenance(path: Path, wanted: dict[str, Any]) -> bool:
    """True when ``path`` holds a provenance record that agrees with ``wanted`` on its keys."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = json.loads(str(data["provenance"]))
    except (OSError, KeyError, ValueError):
        return False
    return {k: stored.get(k) for k in wanted} == wanted
