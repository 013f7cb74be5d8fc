"""ARKit-named expression shapes on FLAME topology, transferred from ICT-FaceKit (MIT).

Computed at setup (``python -m backend setup-weights``) from the assets folder, never
committed:

1. similarity alignment (Umeyama) of ICT's generic neutral head (cm, its own frame) to the
   FLAME template (m) on the 51 inner 68-point landmarks (ICT's published landmark vertices,
   FLAME's static landmark embedding);
2. non-rigid ICP of the FLAME template onto the aligned ICT surface (face, head and neck,
   mouth socket): per-vertex displacements, uniform-Laplacian smoothness annealed from stiff
   to soft, landmark pull. FLAME is the moving mesh because it has 5x fewer vertices (fast
   sparse solves) and because what the transfer needs is exactly a point on ICT's surface for
   every FLAME vertex;
3. for each FLAME vertex the closest point (triangle + barycentrics) on ICT's surface.
   Around the mouth and the eyes the search is split by side so lips and lids never glue:
   upper/lower lip from FLAME's jaw skinning weight and ICT's own jawOpen motion, upper/lower
   lid from the side of the line through the eye landmarks;
4. each ICT expression delta, rotated and scaled into FLAME's frame, interpolated at that
   point and faded out (smoothly, over a few vertex rings) where the registration found no
   ICT surface, on the back of the head and towards FLAME's open neck border, which stay
   fixed. Lid motion is scaled
   by the ratio of FLAME's to ICT's eye aperture so eyeBlink 1 closes the eye. FLAME's
   eyeballs rotate by ``EYE_LOOK_DEG`` about the eye joints for the eyeLook shapes (ICT's
   eyeballs are rigged separately and do not move in its blendshapes).

A shape at weight 1 is ICT's full expression; weights are meant to stay in 0..1 as in
ARKit. ``arkit_for_identity`` adapts the template deltas to a reconstructed identity.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# Apple's ARFaceAnchor.BlendShapeLocation list: one table, shared with the add-on (its pure
# core is installed with the backend).
from headrecon_addon.naming import ARKIT_NAMES

from .assets import DEV_MODEL_RELPATH, asset_path, weights_dir
from ..errors import ModelFileError
from .flame import JOINT_NAMES, load_flame
from .pinned import sha256_of
from .nonrigid import (IcpStage, Surface, SurfaceHit, adjacency, boundary_loops, nonrigid_icp,
                       smooth_scalar)


# ICT has no tongue shape; its cheekRaiser_L/R and PupilDilate_L/R are not ARKit shapes.
MISSING_FROM_ICT: tuple[str, ...] = ("tongueOut",)

# Gaze angle of the eyeLook shapes at weight 1 (a convention: ICT rotates eyeballs by rig,
# not by blendshape, so it gives no angle).
EYE_LOOK_DEG = 25.0

FORMAT_VERSION = 1
ICT_RELPATH = "ict/ict_facekit_expressions.npz"
ICT_INDICES_RELPATH = "ict/vertex_indices.json"
LMK68_RELPATH = "landmarks/flame_landmark_embedding_68.npz"
WEIGHTS_NAME = "arkit_on_flame.npz"

# ICT vertex ranges (ict/README.md): face [0, 9409), then head and neck, then mouth socket
# up to 13294: together the skin surface.
ICT_HEAD, ICT_SKIN_END = (9409, 11248), 13294
JAW, EYE_L, EYE_R = (JOINT_NAMES.index(n) for n in ("jaw", "eye_L", "eye_R"))


def ict_to_arkit_map(ict_names: list[str]) -> dict[str, tuple[str, ...]]:
    """ARKit name -> the ICT shapes summed for it (``X_L`` -> ``XLeft``; split shapes summed).

    ICT's ``_L`` is the subject's left (+X), like ARKit's ``Left``.
    """
    out: dict[str, tuple[str, ...]] = {}
    for name in ARKIT_NAMES:
        if name in ict_names:
            out[name] = (name,)
        elif name.endswith("Left") and name[:-4] + "_L" in ict_names:
            out[name] = (name[:-4] + "_L",)
        elif name.endswith("Right") and name[:-5] + "_R" in ict_names:
            out[name] = (name[:-5] + "_R",)
        elif name + "_L" in ict_names and name + "_R" in ict_names:
            out[name] = (name + "_L", name + "_R")  # browInnerUp, cheekPuff
    return out


@dataclass
class IctModel:
    """ICT-FaceKit generic head in its own frame (cm, +Y up, +Z forward, +X subject's left).

    Attributes:
        neutral: (N, 3) float64 vertices.
        tris: (T, 3) int64 triangles (quads split).
        names: ICT expression names, K of them.
        deltas: (K, N, 3) float32 expression offsets at weight 1.
        landmarks: (68,) int64 vertex indices of the 68 iBUG points.
    """

    neutral: np.ndarray
    tris: np.ndarray
    names: list[str]
    deltas: np.ndarray
    landmarks: np.ndarray


def load_ict(assets: str | os.PathLike[str] | None = None) -> IctModel:
    """Read ICT-FaceKit's neutral head, expressions and landmark vertices from the assets."""
    path = asset_path(ICT_RELPATH, assets)
    try:
        with np.load(path) as data:
            neutral = data["neutral"].astype(np.float64)
            quads = data["faces"].astype(np.int64)
            names = [str(n) for n in data["names"]]
            deltas = data["deltas"].astype(np.float32)
        meta = json.loads(asset_path(ICT_INDICES_RELPATH, assets).read_text())
        landmarks = np.asarray(meta["idx_to_landmark_verts"], np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"ICT-FaceKit asset {path} is unreadable: {exc}.") from exc
    if deltas.shape != (len(names), len(neutral), 3) or landmarks.shape != (68,):
        raise ModelFileError(f"ICT-FaceKit asset {path} has unexpected array shapes.")
    quad = quads[:, 3] >= 0
    tris = np.concatenate([quads[quad][:, [0, 1, 2]], quads[quad][:, [0, 2, 3]], quads[~quad][:, :3]])
    return IctModel(neutral, tris, names, deltas, landmarks)


@dataclass
class FlameTemplate:
    """What the transfer needs of FLAME (template frame, metres).

    Attributes:
        verts: (V, 3) float64 template vertices.
        faces: (F, 3) int64.
        weights: (V, J) skinning weights.
        joints: (J, 3) rest joints of the template.
        lmk51: (51, V) sparse barycentric rows of the 68-point landmarks 17..67.
    """

    verts: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    joints: np.ndarray
    lmk51: sp.csr_matrix


def load_flame_template(assets: str | os.PathLike[str] | None = None) -> FlameTemplate:
    """FLAME template (the assets' model), skinning weights and static landmark embedding."""
    data = load_flame(asset_path(DEV_MODEL_RELPATH, assets))
    emb = asset_path(LMK68_RELPATH, assets)
    try:
        with np.load(emb) as arrays:
            lmk_faces = arrays["static_lmk_faces_idx"].astype(np.int64)
            lmk_bary = arrays["static_lmk_bary_coords"].astype(np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"Landmark embedding {emb} is unreadable: {exc}.") from exc
    verts = data.v_template.astype(np.float64)
    rows = np.repeat(np.arange(len(lmk_faces)), 3)
    lmk51 = sp.csr_matrix((lmk_bary.ravel(), (rows, data.faces[lmk_faces].ravel())),
                          shape=(len(lmk_faces), len(verts)))
    return FlameTemplate(verts, data.faces, data.weights.astype(np.float64),
                         data.J_regressor.astype(np.float64) @ verts, lmk51)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s * R @ src + t (Umeyama 1991).

    Args:
        src, dst: (N, 3) corresponding points.
    Returns:
        s scalar, R (3, 3) rotation, t (3,).
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(xd.T @ xs / len(src))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ fix @ vt
    s = float((sig * np.diag(fix)).sum() / (xs ** 2).sum(1).mean())
    return s, rot, mu_d - s * rot @ mu_s


def _polyline_side(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """+1 where a point lies above (in y) a curve y(x) given by (P, 2) x-sorted points, else -1."""
    order = np.argsort(curve[:, 0])
    y_curve = np.interp(points[:, 0], curve[order, 0], curve[order, 1])
    return np.where(points[:, 1] > y_curve, 1, -1)


def _in_box(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((points >= lo) & (points <= hi), axis=1)


def part_labels(verts: np.ndarray, lmk68: np.ndarray, lower_lip: np.ndarray) -> np.ndarray:
    """Upper/lower side labels near the mouth and the eyes, used to keep lips and lids apart.

    Codes: 0 elsewhere; 1/2 upper/lower lip; 3/4 upper/lower lid of the subject's right eye
    (-X, 68-point indices 36..41); 5/6 upper/lower lid of the left eye (+X, 42..47). Mouth
    and eye boxes are built from the landmarks (metres, FLAME frame); lids are split by the
    line through the eye corners and lid midpoints, lips by ``lower_lip``.

    Args:
        verts: (N, 3) vertices in FLAME's frame.
        lmk68: (68, 3) landmark positions (rows 0..16 unused).
        lower_lip: (N,) bool, vertices that move with the jaw.
    Returns:
        (N,) int64 codes.
    """
    codes = np.zeros(len(verts), np.int64)
    mouth = lmk68[48:68]
    lo = np.array([mouth[:, 0].min() - 0.008, mouth[:, 1].min() - 0.008, mouth[:, 2].max() - 0.04])
    hi = np.array([mouth[:, 0].max() + 0.008, mouth[:, 1].max() + 0.008, np.inf])
    near = _in_box(verts, lo, hi)
    codes[near] = np.where(lower_lip[near], 2, 1)
    for base, first in ((3, 36), (5, 42)):
        eye = lmk68[first:first + 6]
        # corners, then the midpoints of facing upper/lower lid points
        curve = np.stack([eye[0], (eye[1] + eye[5]) / 2, (eye[2] + eye[4]) / 2, eye[3]])[:, :2]
        lo = np.array([eye[:, 0].min() - 0.006, eye[:, 1].min() - 0.01, eye[:, 2].max() - 0.025])
        hi = np.array([eye[:, 0].max() + 0.006, eye[:, 1].max() + 0.01, np.inf])
        near = _in_box(verts, lo, hi)
        side = _polyline_side(verts[near], curve)
        codes[near] = np.where(side > 0, base, base + 1)
    return codes


LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))  # upper, lower; right eye then left


def lid_apertures(lmk68: np.ndarray) -> np.ndarray:
    """(2,) mean upper-to-lower lid distance of the subject's right and left eye.

    Args:
        lmk68: (68, 3) landmark positions (only the lid points are read).
    """
    gaps = [np.linalg.norm(lmk68[up] - lmk68[low]) for up, low in LID_PAIRS]
    return np.array([np.mean(gaps[:2]), np.mean(gaps[2:])])


@dataclass
class EyeLids:
    """Where FLAME's lids are, to keep eyeBlink = 1 a closed eye on any head.

    Attributes:
        regions: (2, V) 0..1 weights of the subject's right and left eye-lid region (1 on the
            lids, fading out over a few vertex rings).
        lmk51: (51, V) sparse barycentric rows of the landmarks 17..67.
    """

    regions: np.ndarray
    lmk51: sp.csr_matrix

    def landmarks(self, verts: np.ndarray) -> np.ndarray:
        """(68, 3) landmark positions of (V, 3) vertices (rows 0..16 are zero)."""
        out = np.zeros((68, 3))
        out[17:] = self.lmk51 @ np.asarray(verts, np.float64)
        return out

    def gain(self, ratio: np.ndarray) -> np.ndarray:
        """(V,) factor on the deltas: ``ratio[eye]`` on each lid region, 1 elsewhere."""
        return 1.0 + ((np.asarray(ratio)[:, None] - 1.0) * self.regions).sum(0)


def eye_lids(flame: FlameTemplate, codes: np.ndarray | None = None) -> EyeLids:
    """Lid regions of the FLAME template (from its side labels) and its landmark rows."""
    if codes is None:
        lmk = np.zeros((68, 3))
        lmk[17:] = flame.lmk51 @ flame.verts
        codes = part_labels(flame.verts, lmk, flame.weights[:, JAW] > 0.5)
    regions = np.stack([smooth_scalar(np.isin(codes, pair).astype(np.float64), flame.faces,
                                      FADE_SMOOTH_ITERS) for pair in ((3, 4), (5, 6))])
    regions[:, (flame.weights[:, EYE_L] > 0.5) | (flame.weights[:, EYE_R] > 0.5)] = 0.0
    return EyeLids(regions, flame.lmk51)


def _opposite(code: int) -> int:
    return code + 1 if code % 2 == 1 else code - 1


class LabelledSurface:
    """ICT's skin surface searched per side label: a point with an upper/lower label never
    lands on a triangle that touches a vertex of the opposite side."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray, vert_codes: np.ndarray) -> None:
        """
        Args:
            verts: (N, 3) vertices; tris: (T, 3) triangles; vert_codes: (N,) part_labels codes.
        """
        self._surfaces: dict[int, Surface] = {0: Surface(verts, tris)}
        for code in range(1, 7):
            banned = np.any(vert_codes[tris] == _opposite(code), axis=1)
            self._surfaces[code] = Surface(verts, tris, subset=np.flatnonzero(~banned))

    def closest(self, points: np.ndarray, codes: np.ndarray) -> SurfaceHit:
        """Closest allowed point for each (N, 3) query with (N,) side codes."""
        n = len(points)
        hit = SurfaceHit(np.zeros((n, 3)), np.zeros(n, np.int64), np.zeros((n, 3)),
                         np.zeros(n), np.zeros((n, 3)))
        for code, surf in self._surfaces.items():
            sel = np.flatnonzero(codes == code)
            if len(sel) == 0:
                continue
            part = surf.closest(points[sel])
            for field in ("points", "tri", "bary", "dist", "normal"):
                getattr(hit, field)[sel] = getattr(part, field)
        return hit


def _eye_rotation(name: str) -> tuple[int, np.ndarray] | None:
    """(eye joint, rotation matrix) of an eyeLook shape, None for other shapes.

    Gaze direction is +Z; "out" turns the subject's left eye towards +X and the right eye
    towards -X, "up" turns the gaze towards +Y.
    """
    if not name.startswith("eyeLook"):
        return None
    left = name.endswith("Left")
    a = np.deg2rad(EYE_LOOK_DEG)
    c, s = np.cos(a), np.sin(a)
    if "Up" in name or "Down" in name:
        sgn = -1.0 if "Up" in name else 1.0  # rotation about +X by -a lifts the gaze
        rot = np.array([[1, 0, 0], [0, c, -sgn * s], [0, sgn * s, c]])
    else:
        towards_plus_x = ("Out" in name) == left
        sgn = 1.0 if towards_plus_x else -1.0  # rotation about +Y by +a turns gaze to +X
        rot = np.array([[c, 0, sgn * s], [0, 1, 0], [-sgn * s, 0, c]])
    return (EYE_L if left else EYE_R), rot


ICP_SCHEDULE: tuple[IcpStage, ...] = (
    IcpStage(stiffness=300.0, landmark_weight=20.0, iterations=3),
    IcpStage(stiffness=100.0, landmark_weight=10.0, iterations=3),
    IcpStage(stiffness=30.0, landmark_weight=5.0, iterations=3),
    IcpStage(stiffness=10.0, landmark_weight=3.0, iterations=3),
    IcpStage(stiffness=3.0, landmark_weight=2.0, iterations=3),
    IcpStage(stiffness=1.0, landmark_weight=1.0, iterations=4),
)
ICP_MAX_DIST = 0.01  # m; pairs farther apart are ignored during registration
FADE_NEAR, FADE_FAR = 0.002, 0.006  # m; transfer weight 1 below, 0 beyond (smoothstep)
FADE_SMOOTH_ITERS = 3  # one-ring averagings of the transfer weight (no seams)


def _transfer_weight(flame: FlameTemplate, dist: np.ndarray, corner_ids: np.ndarray,
                     eyeball: np.ndarray) -> np.ndarray:
    """(V,) 0..1 share of ICT's motion each FLAME vertex takes.

    1 where the registered vertex lies on ICT's surface (smoothstep to 0 between FADE_NEAR
    and FADE_FAR); 0 on the eyeballs (handled apart), on the back of the head (ICT's "head
    and neck" part) and on the neck border, so the head can join a body; then faded over
    FADE_SMOOTH_ITERS rings so no seam appears.

    Args:
        flame: the template.
        dist: (V,) distance of each registered vertex to its ICT correspondence.
        corner_ids: (V, 3) ICT vertex ids of the corresponding triangle.
        eyeball: (V,) bool.
    """
    x = np.clip((dist - FADE_NEAR) / (FADE_FAR - FADE_NEAR), 0.0, 1.0)
    weight = 1.0 - x * x * (3 - 2 * x)
    loops = boundary_loops(len(flame.verts), flame.faces)
    neck = min(loops, key=lambda loop: flame.verts[loop, 1].mean())  # the lowest open border
    weight[neck] = 0.0
    weight[np.any((corner_ids >= ICT_HEAD[0]) & (corner_ids < ICT_HEAD[1]), axis=1)] = 0.0
    weight[eyeball] = 0.0
    weight = np.minimum(weight, smooth_scalar(weight, flame.faces, FADE_SMOOTH_ITERS))
    weight[eyeball] = 0.0
    return weight


def build_arkit_on_flame(
    assets: str | os.PathLike[str] | None = None,
) -> tuple[list[str], np.ndarray, dict]:
    """Transfer ICT-FaceKit's expressions onto the FLAME template.

    Args:
        assets: assets folder (None: backend.model.assets default).
    Returns:
        names: the A ARKit names ICT provides, in ARKIT_NAMES order.
        deltas: (A, 5023, 3) float32 offsets in FLAME's frame (metres) at weight 1.
        report: registration and transfer statistics (JSON-serialisable).
    """
    t0 = time.perf_counter()
    ict = load_ict(assets)
    flame = load_flame_template(assets)
    lmk_flame = np.zeros((68, 3))
    lmk_flame[17:] = flame.lmk51 @ flame.verts

    # 1. similarity ICT (cm) -> FLAME (m) on the 51 inner landmarks
    s, rot, t = umeyama(ict.neutral[ict.landmarks[17:]], lmk_flame[17:])
    ict_aligned = ict.neutral @ rot.T * s + t
    lmk_ict = ict_aligned[ict.landmarks]
    align_rms = float(np.sqrt(((lmk_ict[17:] - lmk_flame[17:]) ** 2).sum(1).mean()))

    # side labels: lower lip = moves with the jaw (ICT: its own jawOpen, FLAME: jaw weight)
    skin = np.all(ict.tris < ICT_SKIN_END, axis=1)
    ict_tris = ict.tris[skin]
    jaw_motion = np.linalg.norm(ict.deltas[ict.names.index("jawOpen")], axis=1)
    lip_split = 0.5 * (jaw_motion[ict.landmarks[62]] + jaw_motion[ict.landmarks[66]])
    ict_codes = part_labels(ict_aligned, lmk_ict, jaw_motion > lip_split)
    flame_codes = part_labels(flame.verts, lmk_flame, flame.weights[:, JAW] > 0.5)
    target = LabelledSurface(ict_aligned, ict_tris, ict_codes)

    # 2. non-rigid ICP of FLAME (eyeballs excluded) onto ICT
    eyeball = (flame.weights[:, EYE_L] > 0.5) | (flame.weights[:, EYE_R] > 0.5)
    registered, icp_stats = nonrigid_icp(
        flame.verts, flame.faces, ~eyeball,
        lambda pts: target.closest(pts, flame_codes),
        flame.lmk51, lmk_ict[17:], list(ICP_SCHEDULE), ICP_MAX_DIST)
    t_reg = time.perf_counter() - t0

    # 3. correspondences and a smooth transfer weight
    hit = target.closest(registered, flame_codes)
    corner_ids = ict_tris[hit.tri]  # (V, 3)
    weight = _transfer_weight(flame, hit.dist, corner_ids, eyeball)

    # 4. transfer every shape
    mapping = ict_to_arkit_map(ict.names)
    names = [n for n in ARKIT_NAMES if n in mapping]
    deltas = np.zeros((len(names), len(flame.verts), 3), np.float32)
    for k, name in enumerate(names):
        d_ict = sum(ict.deltas[ict.names.index(m)].astype(np.float64) for m in mapping[name])
        d_aligned = d_ict @ rot.T * s
        d = np.einsum("vk,vkc->vc", hit.bary, d_aligned[corner_ids]) * weight[:, None]
        eye = _eye_rotation(name)
        if eye is not None:
            joint, r = eye
            ball = flame.weights[:, joint] > 0.5
            rel = flame.verts[ball] - flame.joints[joint]
            d[ball] = rel @ r.T - rel
        deltas[k] = d
    # ARKit semantics: eyeBlink 1 closes the eye. FLAME's lids are further apart than ICT's,
    # so lid motion is scaled by the ratio of the apertures, fading out around each eye.
    aperture_ratio = lid_apertures(lmk_flame) / lid_apertures(lmk_ict)
    deltas *= eye_lids(flame, flame_codes).gain(aperture_ratio)[None, :, None].astype(np.float32)
    face_w = weight > 0.5
    report = {
        "scale_m_per_ict_unit": s,
        "rotation_deg": float(np.rad2deg(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))),
        "landmark_rms_similarity_mm": align_rms * 1e3,
        "landmark_rms_registered_mm": icp_stats["landmark_rms"] * 1e3,
        "icp_accepted_share": icp_stats["accepted"],
        "surface_dist_mean_mm": float(hit.dist[face_w].mean() * 1e3),
        "surface_dist_p95_mm": float(np.percentile(hit.dist[face_w], 95) * 1e3),
        "transfer_vertices": int(face_w.sum()),
        "eye_aperture_ratio_right_left": aperture_ratio.tolist(),
        "seconds_registration": t_reg,
        "seconds_total": time.perf_counter() - t0,
        "missing": [n for n in ARKIT_NAMES if n not in mapping],
    }
    return names, deltas, report


def _inputs_provenance(assets: str | os.PathLike[str] | None) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "eye_look_deg": EYE_LOOK_DEG,
        "inputs": {rel: sha256_of(asset_path(rel, assets))
                   for rel in (ICT_RELPATH, ICT_INDICES_RELPATH, DEV_MODEL_RELPATH, LMK68_RELPATH)},
    }


def _stored_provenance(path: Path) -> dict | None:
    try:
        with np.load(path) as data:
            return json.loads(str(data["provenance"]))
    except (OSError, KeyError, ValueError):
        return None


def ensure_arkit_on_flame(assets: str | os.PathLike[str] | None = None,
                          weights: str | os.PathLike[str] | None = None) -> Path:
    """Compute weights/arkit_on_flame.npz unless it is present and built from the same inputs.

    Args:
        assets: assets folder (None: default).
        weights: weights folder (None: default).
    Returns:
        path of the file.
    """
    out = weights_dir(weights) / WEIGHTS_NAME
    wanted = _inputs_provenance(assets)
    stored = _stored_provenance(out) if out.is_file() else None
    if stored is not None and {k: stored.get(k) for k in wanted} == wanted:
        print(f"setup-weights: {out} is up to date")
        return out
    names, deltas, report = build_arkit_on_flame(assets)
    provenance = dict(wanted, source="ICT-FaceKit (MIT), transferred by backend/model/arkit.py",
                      report=report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, names=np.array(names), deltas=deltas,
                        provenance=np.array(json.dumps(provenance)))
    os.replace(tmp, out)
    print(f"setup-weights: computed {len(names)} ARKit shapes from ICT-FaceKit -> {out} "
          f"({report['seconds_total']:.1f} s)")
    return out


def load_arkit_on_flame(weights: str | os.PathLike[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Read the ARKit shapes written at setup.

    Returns:
        names (A,) and deltas (A, V, 3) float32, FLAME frame metres, template identity.
    """
    path = weights_dir(weights) / WEIGHTS_NAME
    if not path.is_file():
        raise ModelFileError(f"ARKit shapes missing ({path}): run ./setup.sh.")
    try:
        with np.load(path) as data:
            names = [str(n) for n in data["names"]]
            deltas = data["deltas"].astype(np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"ARKit shapes file {path} is unreadable ({exc}): run ./setup.sh.") from exc
    if deltas.ndim != 3 or deltas.shape[0] != len(names) or deltas.shape[2] != 3:
        raise ModelFileError(f"ARKit shapes file {path} has unexpected shapes: run ./setup.sh.")
    return names, deltas


def arkit_for_identity(deltas: np.ndarray, v_neutral_identity: np.ndarray,
                       v_template: np.ndarray, faces: np.ndarray | None = None,
                       lids: EyeLids | None = None, rings: int = 3) -> np.ndarray:
    """Adapt template-space expression deltas to a reconstructed identity.

    Deformation-transfer-like, in two steps:

    1. around every vertex (its ``rings``-ring neighbourhood on the mesh, so eyeballs and
       face stay apart) the best rotation R_i (Kabsch) and isotropic scale s_i mapping the
       template patch onto the identity patch are estimated, and the vertex's delta becomes
       ``s_i R_i delta_i``: a rigidly moved or uniformly scaled head gets exactly rotated or
       scaled expressions, local shape differences turn and scale them locally;
    2. on each lid region the deltas are further scaled so the lid travel matches this
       identity's eye aperture (eyeBlink = 1 still closes the eye).

    Args:
        deltas: (A, V, 3) template deltas.
        v_neutral_identity: (V, 3) the identity's neutral vertices.
        v_template: (V, 3) the template the deltas were made for.
        faces: (F, 3) triangles; None reads them from the assets' FLAME model.
        lids: lid regions and landmark rows; None computes them from the assets.
        rings: neighbourhood size in mesh rings.
    Returns:
        (A, V, 3) float32 deltas for the identity.
    """
    x = np.asarray(v_template, np.float64)
    y = np.asarray(v_neutral_identity, np.float64)
    if x.shape != y.shape or deltas.shape[1:] != x.shape:
        raise ValueError(f"shape mismatch: deltas {deltas.shape}, identity {y.shape}, "
                         f"template {x.shape}")
    if faces is None or lids is None:
        flame = load_flame_template()
        faces = flame.faces if faces is None else faces
        lids = eye_lids(flame) if lids is None else lids
    one = adjacency(len(x), np.asarray(faces, np.int64)) + sp.identity(len(x), format="csr")
    hood = one.copy()
    for _ in range(rings - 1):
        hood = hood @ one
    hood.data[:] = 1.0
    w = sp.diags(1.0 / np.asarray(hood.sum(1)).ravel()) @ hood  # row-stochastic (V, V)
    mx, my = w @ x, w @ y
    # weighted cross-covariance sum_j w_ij (y_j - my_i)(x_j - mx_i)^T, (V, 3, 3)
    outer = (y[:, :, None] * x[:, None, :]).reshape(len(x), 9)
    cov = (w @ outer).reshape(-1, 3, 3) - my[:, :, None] * mx[:, None, :]
    u, _, vt = np.linalg.svd(cov)
    fix = np.ones((len(x), 3))
    fix[:, 2] = np.sign(np.linalg.det(u @ vt))
    rot = (u * fix[:, None, :]) @ vt
    var_x = w @ (x ** 2).sum(1) - (mx ** 2).sum(1)
    var_y = w @ (y ** 2).sum(1) - (my ** 2).sum(1)
    scale = np.sqrt(np.maximum(var_y, 0.0) / np.maximum(var_x, 1e-20))
    out = np.einsum("vij,avj->avi", rot * scale[:, None, None], np.asarray(deltas, np.float64))
    lid_scale = (lids.regions * scale).sum(1) / lids.regions.sum(1)
    ratio = lid_apertures(lids.landmarks(y)) / (lid_apertures(lids.landmarks(x)) * lid_scale)
    out *= lids.gain(ratio)[None, :, None]
    return out.astype(np.float32)
