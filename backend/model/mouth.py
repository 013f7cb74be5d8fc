"""Mouth interior: teeth, tongue and a mouth cavity placed in a FLAME head (numpy only).

FLAME has no mouth: its lips curl inwards into a short pocket that ends at the *inner lip
ring*, a hole in the mesh. The parts come from MakeHuman's CC0 teeth and tongue (assets
``mouth/``, copied into ``weights/mouth`` by ``setup-weights``, pinned by size + SHA-256) and
are placed for every identity from FLAME's lip rings (``LIP_RINGS``):

* **scale** = the identity's mouth width (inner-ring corner to corner) times
  ``TEETH_WIDTH_OVER_MOUTH`` over the asset's gum width;
* **position**: the teeth's front ``FRONT_GAP_M`` behind the upper inner ring's centre; the
  upper central incisors' edge ``INCISOR_BELOW_LIP_M`` under the lowest point of the upper
  lip near the midline (``upper_lip_edge``), so that with the jaw open (FLAME's upper lip then
  sags about 2 mm) 2-3 mm of the incisors show under the lip, as in a relaxed open mouth
  (anatomical rest display 1-3 mm), and with the lips closed the edge is behind the lower lip;
  the asset's axes are FLAME's (y up, z forward), so there is no rotation;
* the teeth are split at the asset's bite plane (a line through the 32 teeth's centres in
  the side view): the upper row follows the head (FLAME's ``neck`` joint), the lower row and
  the tongue the ``jaw`` joint;
* the tongue lies on the floor of the mouth, its tip behind the lower incisors and its
  highest point ``TONGUE_TOP_BELOW_INCISORS_M`` under the lower central incisors' edges; ``tongue_out`` is its shape key sticking the tip out between
  the lips, ``head_tongue_out`` the head's matching key (the lips parted);
* the **cavity** is a pouch open at the front: its opening follows the inner lip ring
  (1.5 mm outside and 1 mm behind it, with the ring's own skin weights, so it moves with the
  lips), it widens behind the ring to hold the teeth and the tongue and closes at the back
  (an ellipsoid with a half-axis per side); deeper skin weights blend head and jaw by height
  so it opens with the jaw. Its faces are wound so the normals point into the mouth (it is
  seen from inside).

Every part carries FLAME skinning weights ``(N, J)`` (rows sum to 1) like ``rig.npz``'s.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BadInputError, ModelFileError
from ..files.obj import read_obj
from .assets import weights_dir
from .pinned import PinnedFile, install_pinned

MOUTH_SUBDIR = "mouth"
MOUTH_FILES: tuple[PinnedFile, ...] = (
    PinnedFile("teeth.obj", "mouth/teeth.obj", 312856,
               "08afa96be636495703b75546f08816bb4567c059ab0d5d10597488bd4a194f2b"),
    PinnedFile("teeth.png", "mouth/teeth.png", 1799930,
               "d0afb57869c6fbb56b98f5efc4aec629ee7593e70d8dd2bfb9de923acfb65f43"),
    PinnedFile("tongue.obj", "mouth/tongue.obj", 16901,
               "8feb4d474daaf4de0ed7d4da422d9cdfff47b4db74aaa24fdb9b65e23faf142a"),
    PinnedFile("tongue.png", "mouth/tongue.png", 625419,
               "3150be398e48e8ba1feac164c3143c16c0b2e959d9ffb6155f0171f59cfb4ea9"),
    PinnedFile("LICENSE.CC0.md", "mouth/LICENSE.CC0.md", 6962,
               "f6089cba01cb570a24712b41ab8a586ccd3cc5ef53dc266ca50b95c288956d2c"),
)
ASSET_UNIT_M = 0.1  # the MakeHuman meshes are in decimetres
# teeth.png recoloured for the bundle (sRGB): MakeHuman's enamel is a cool grey (median
# (0.58, 0.55, 0.55)) with strong baked shading, its gums a dark red (0.47, 0.17, 0.19).
# Enamel: TEETH_RGB at the enamel's median brightness, the texture's brightness variation kept
# to the power TEETH_CONTRAST; gums: scaled per channel to median GUM_RGB. Pixels are enamel or
# gum by saturation (max - min) / max, blended between TEETH_SATURATION's two values.
TEETH_RGB = (0.85, 0.82, 0.75)
GUM_RGB = (0.70, 0.36, 0.36)
TEETH_CONTRAST = 0.5
TEETH_SATURATION = (0.12, 0.3)

# FLAME topology: the lip rings, 15 vertices each from the subject's left mouth corner (+X)
# to the right one (assets mouth/README.md).
LIP_RINGS: dict[str, tuple[int, ...]] = {
    "outer_upper": (1713, 1715, 1716, 1735, 1696, 1694, 1657, 3543, 2774, 2811, 2813, 2850,
                    2833, 2832, 2830),
    "outer_lower": (1576, 1577, 1773, 1774, 1795, 1802, 1865, 3503, 2948, 2905, 2898, 2881,
                    2880, 2713, 2712),
    "inner_upper": (1595, 1746, 1747, 1742, 1739, 1665, 1666, 3514, 2783, 2782, 2854, 2857,
                    2862, 2861, 2731),
    "inner_lower": (1572, 1573, 1860, 1862, 1830, 1835, 1852, 3497, 2941, 2933, 2930, 2945,
                    2943, 2709, 2708),
}
FLAME_VERTEX_COUNT = 5023
EYEBALLS_START = 3931  # FLAME's eyeball vertices (both eyes) are 3931..5022
PARTS: tuple[str, ...] = ("upper_teeth", "lower_teeth", "tongue", "cavity")
HEAD_JOINT, JAW_JOINT = "neck", "jaw"  # FLAME joints the upper and the lower parts follow

# Placement constants (metres or ratios), checked by tests/test_mouth.py on random identities.
TEETH_WIDTH_OVER_MOUTH = 0.86  # gum width / inner-ring corner distance
FRONT_GAP_M = 0.0025  # teeth's front (upper gums) behind the upper inner ring's centre
# Upper central incisors' edge under the upper lip's lowest midline point (neutral, lips
# closed). FLAME's upper lip sags 1.7-2.1 mm at the Jaw Open preset (0.35 rad), which leaves
# 2.4-2.8 mm of incisor showing under it (tests/test_mouth.py measures it).
INCISOR_BELOW_LIP_M = 0.0045
UPPER_LIP_HALF_WIDTH_M = 0.005  # the upper lip's lowest point is looked for this near the midline
TONGUE_SCALE = 0.72  # tongue size relative to the teeth's scale
TONGUE_TIP_GAP_M = 0.003  # tongue tip behind the lower incisors' front edge
TONGUE_TOP_BELOW_INCISORS_M = 0.002  # highest tongue point under the lower central incisors' edges
CAVITY_MARGIN_M = 0.004  # cavity wall outside the teeth and tongue
CAVITY_RIM_POINTS = 60  # vertices around the cavity's opening
CAVITY_RIM_OUT_M = 0.0015  # cavity's opening outside the inner lip ring (hidden in the lips)
CAVITY_RIM_BACK_M = 0.001  # and behind it
CAVITY_FLARE_M = 0.012  # depth over which the opening widens to the cavity's full size
CAVITY_DEPTH_ROWS = 12  # vertex rows from the opening to the back
CAVITY_JAW_BLEND_M = 0.008  # cavity weights go from head to jaw over this height at the bite
TONGUE_OUT_M = 0.038  # how far the tongue tip moves forward at tongueOut = 1
TONGUE_OUT_DOWN_M = 0.006  # and its tip droops down
TONGUE_OUT_CLEAR_DEPTH_M = 0.012  # the tongue's front this deep rises over the lower incisors
TONGUE_OUT_CLEARANCE_M = 0.001  # its underside this far above their edges
LIPS_PART_UPPER_M = 0.002  # head tongueOut key: upper lip up
LIPS_PART_LOWER_M = 0.006  # lower lip down
LIPS_PART_RADIUS_M = 0.022  # falloff of the lips' parting around the mouth centre


@dataclass
class MeshPart:
    """A triangle mesh with UVs (metres).

    Attributes:
        verts: (N, 3) float64; faces: (F, 3) int64; uv: (T, 2) float64; uv_faces: (F, 3) int64.
    """

    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray

    def subset(self, face_mask: np.ndarray) -> "MeshPart":
        """The faces where ``face_mask`` (F,) holds, with only the vertices and UVs they use."""
        faces, uv_faces = self.faces[face_mask], self.uv_faces[face_mask]
        used, new_faces = np.unique(faces, return_inverse=True)
        used_uv, new_uv_faces = np.unique(uv_faces, return_inverse=True)
        return MeshPart(self.verts[used], new_faces.reshape(-1, 3), self.uv[used_uv],
                        new_uv_faces.reshape(-1, 3))


@dataclass
class MouthAssets:
    """The asset meshes in the asset's own frame (metres, FLAME's axes) and their textures.

    Attributes:
        upper_teeth, lower_teeth, tongue: MeshPart each (the teeth split at the bite plane).
        bite_line: (a, b) of the asset's bite plane ``y = a + b * z`` (side view).
        teeth_png, tongue_png: texture files.
        upper_incisor_edge, lower_incisor_edge: (3,) the asset's upper central incisors'
            lowest point and the lower ones' highest point (``central_incisors``).
    """

    upper_teeth: MeshPart
    lower_teeth: MeshPart
    tongue: MeshPart
    bite_line: tuple[float, float]
    teeth_png: Path
    tongue_png: Path
    upper_incisor_edge: np.ndarray | None = None
    lower_incisor_edge: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.upper_incisor_edge is None:
            up = central_incisors(self.upper_teeth)
            self.upper_incisor_edge = up[np.argmin(up[:, 1])]
        if self.lower_incisor_edge is None:
            low = central_incisors(self.lower_teeth)
            self.lower_incisor_edge = low[np.argmax(low[:, 1])]


@dataclass
class MouthPart:
    """One placed part of the mouth (FLAME frame of the neutral identity, metres).

    Attributes:
        verts: (N, 3); faces: (F, 3) int; uv: (T, 2); uv_faces: (F, 3) int into ``uv``.
        weights: (N, J) FLAME skinning weights, rows sum to 1.
    """

    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    weights: np.ndarray


@dataclass
class MouthGeometry:
    """The placed mouth of one identity.

    Attributes:
        parts: name (``PARTS``) -> MouthPart.
        tongue_out: (N_tongue, 3) the tongue's ``tongueOut`` shape-key offsets.
        head_tongue_out: (V, 3) the head's ``tongueOut`` shape-key offsets (lips parted).
        scale: the teeth's scale from the asset (1 = the asset's size).
    """

    parts: dict[str, MouthPart]
    tongue_out: np.ndarray
    head_tongue_out: np.ndarray
    scale: float


# ----------------------------------------------------------------------------- assets


def read_quad_obj(path: Path) -> MeshPart:
    """Read an OBJ of triangles and quads with UVs (``f v/vt``), quads split into triangles.

    Raises:
        ModelFileError: unreadable, a face without UVs, or a polygon of more than 4 corners.
    """
    try:
        obj = read_obj(path, quads=True)
    except BadInputError as exc:
        raise ModelFileError(f"Mouth asset {path} cannot be read: {exc}") from None
    if obj.uv is None or obj.uv_faces is None:
        raise ModelFileError(f"Mouth asset {path} cannot be read (a face has no UVs).")
    mesh = MeshPart(obj.verts * ASSET_UNIT_M, obj.faces, obj.uv, obj.uv_faces)
    if (mesh.faces.size == 0 or mesh.faces.max() >= len(mesh.verts)
            or mesh.uv_faces.max() >= len(mesh.uv) or min(mesh.faces.min(), mesh.uv_faces.min()) < 0):
        raise ModelFileError(f"Mouth asset {path} has faces indexing outside its vertices or UVs.")
    return mesh


def _components(n_verts: int, faces: np.ndarray) -> np.ndarray:
    """(N,) connected-component label of every vertex."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_verts, n_verts))
    return connected_components(graph, directed=False)[1]


def split_teeth(teeth: MeshPart) -> tuple[MeshPart, MeshPart, tuple[float, float]]:
    """Split the asset's teeth at the bite plane.

    Each tooth is its own connected component; the biggest component is the gums (upper
    and lower in one piece). The bite plane is the least-squares line ``y = a + b z``
    through the teeth's centres (side view): upper teeth lie above it. Gum faces go by
    their centre's side of that line.

    Returns:
        (upper, lower, (a, b)).
    """
    labels = _components(len(teeth.verts), teeth.faces)
    counts = np.bincount(labels)
    gums = int(np.argmax(counts))
    teeth_ids = [k for k in range(len(counts)) if k != gums]
    centres = np.array([teeth.verts[labels == k].mean(0) for k in teeth_ids])
    b, a = np.polyfit(centres[:, 2], centres[:, 1], 1)
    is_upper_tooth = {k: bool(c[1] > a + b * c[2]) for k, c in zip(teeth_ids, centres)}
    face_centre = teeth.verts[teeth.faces].mean(1)
    face_label = labels[teeth.faces[:, 0]]
    above = face_centre[:, 1] > a + b * face_centre[:, 2]
    upper = np.where(face_label == gums, above,
                     np.array([is_upper_tooth.get(int(k), False) for k in face_label]))
    return teeth.subset(upper), teeth.subset(~upper), (float(a), float(b))


def central_incisors(row: MeshPart) -> np.ndarray:
    """(M, 3) vertices of a tooth row's two central incisors: of the teeth (connected
    components other than the biggest, the gums), the two whose centres lie furthest forward."""
    labels = _components(len(row.verts), row.faces)
    counts = np.bincount(labels)
    teeth = [k for k in range(len(counts)) if k != int(np.argmax(counts))]
    front_z = np.array([row.verts[labels == k, 2].mean() for k in teeth])
    front = [teeth[i] for i in np.argsort(-front_z)[:2]]
    return row.verts[np.isin(labels, front)]


def load_mouth_assets(folder: str | os.PathLike[str]) -> MouthAssets:
    """Read teeth.obj, tongue.obj and their textures from ``folder``.

    Raises:
        ModelFileError: a file is missing or unreadable.
    """
    folder = Path(folder)
    for name in ("teeth.obj", "tongue.obj", "teeth.png", "tongue.png"):
        if not (folder / name).is_file():
            raise ModelFileError(f"Mouth asset missing: {folder / name}.")
    upper, lower, bite = split_teeth(read_quad_obj(folder / "teeth.obj"))
    return MouthAssets(upper, lower, read_quad_obj(folder / "tongue.obj"), bite,
                       folder / "teeth.png", folder / "tongue.png")


def setup_mouth(assets: Path, target: Path | None = None) -> Path:
    """Copy the MakeHuman teeth and tongue (CC0) from ``<assets>/mouth`` into ``weights/mouth``.

    Returns:
        The folder holding the files.
    Raises:
        ModelFileError: a source file is missing or differs from its pin.
    """
    dest = Path(target) if target is not None else weights_dir() / MOUTH_SUBDIR
    return install_pinned(MOUTH_FILES, lambda: Path(assets), dest,
                          "it must be the MakeHuman mouth file of the assets folder.")


def load_mouth_weights(weights: str | os.PathLike[str] | None = None) -> tuple[MouthAssets | None, list[str]]:
    """The mouth assets from ``weights/mouth``, or None with a warning for result.json.

    A missing or damaged file never stops a reconstruction: the head is then written
    without a mouth interior.
    """
    folder = weights_dir(weights) / MOUTH_SUBDIR
    try:
        return load_mouth_assets(folder), []
    except ModelFileError as exc:
        return None, [f"{exc} The head has no teeth, tongue or mouth cavity; run ./setup.sh."]


# ----------------------------------------------------------------------------- placement


@dataclass
class LipFrame:
    """Where a head's mouth is (FLAME frame, metres).

    Attributes:
        width: inner-ring corner to corner distance.
        centre_x: x of the mouth's middle.
        bite_y: height of the bite plane (where the lips meet: the mean of the ring corners;
            ``place_mouth`` sets it to the placed teeth's bite plane at the incisors).
        front_z: z of the upper inner ring's centre.
        ring: (30, 3) inner ring (upper then lower).
        upper_lip_y: height of the upper lip's lowest point near the midline (its free edge).
    """

    width: float
    centre_x: float
    bite_y: float
    front_z: float
    ring: np.ndarray
    upper_lip_y: float


def upper_lip_edge(v_neutral: np.ndarray, jaw_weight: np.ndarray) -> float:
    """Height of the upper lip's free edge at the midline: the lowest head vertex within
    ``UPPER_LIP_HALF_WIDTH_M`` of the mouth's middle that the jaw moves less than half (the
    lower lip's weights are 0.8-0.9 there, the upper lip's under 0.1), in front of the upper
    inner ring's centre and at most 20 mm under it.

    Args:
        v_neutral: (V, 3) FLAME-topology vertices; jaw_weight: (V,) FLAME's jaw skin weights.
    """
    v = np.asarray(v_neutral, np.float64)
    iu = v[list(LIP_RINGS["inner_upper"])]
    mid = iu[len(iu) // 2]
    cx = 0.5 * (iu[0, 0] + iu[-1, 0])
    sel = ((np.abs(v[:, 0] - cx) < UPPER_LIP_HALF_WIDTH_M) & (np.asarray(jaw_weight) < 0.5)
           & (v[:, 2] > mid[2] - 0.001) & (v[:, 1] <= mid[1]) & (v[:, 1] > mid[1] - 0.02))
    sel[EYEBALLS_START:] = False
    return float(v[sel, 1].min()) if sel.any() else float(mid[1])


def lip_frame(v_neutral: np.ndarray, jaw_weight: np.ndarray | None = None) -> LipFrame:
    """The mouth's size and place from FLAME's lip rings.

    Args:
        v_neutral: (V, 3) FLAME-topology vertices (V = 5023).
        jaw_weight: (V,) FLAME's jaw skin weights, for ``upper_lip_y`` (without: the upper
            inner ring's centre height).
    """
    v = np.asarray(v_neutral, np.float64)
    iu, il = v[list(LIP_RINGS["inner_upper"])], v[list(LIP_RINGS["inner_lower"])]
    corners = np.stack([iu[0], il[0], iu[-1], il[-1]])
    left, right = corners[:2].mean(0), corners[2:].mean(0)
    lip_y = float(iu[len(iu) // 2, 1]) if jaw_weight is None else upper_lip_edge(v, jaw_weight)
    return LipFrame(width=float(np.linalg.norm(left - right)), centre_x=float(0.5 * (left[0] + right[0])),
                    bite_y=float(corners[:, 1].mean()), front_z=float(iu[len(iu) // 2, 2]),
                    ring=np.concatenate([iu, il]), upper_lip_y=lip_y)


def _one_hot(n: int, joint: int, n_joints: int) -> np.ndarray:
    w = np.zeros((n, n_joints))
    w[:, joint] = 1.0
    return w


def _loop(ring_upper: np.ndarray, ring_lower: np.ndarray) -> np.ndarray:
    """The inner lip ring as one closed loop (upper left -> right, lower right -> left)."""
    return np.concatenate([ring_upper, ring_lower[::-1]])


def _resample_loop(points: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` points evenly spaced along a closed polyline (M, C).

    Returns:
        (n, C) points, (n,) index of the segment start, (n,) fraction along that segment.
    """
    seg = np.roll(points, -1, axis=0) - points
    length = np.linalg.norm(seg[:, :3] if points.shape[1] >= 3 else seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(length)])
    s = np.linspace(0.0, cum[-1], n, endpoint=False)
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(points) - 1)
    frac = (s - cum[k]) / np.maximum(length[k], 1e-12)
    return points[k] + frac[:, None] * seg[k], k, frac


def cavity_pouch(rim: np.ndarray, centre: np.ndarray, radii: dict[str, float],
                 n_depth: int = 12) -> MeshPart:
    """A pouch open at ``rim`` that flares out to an ellipsoid's widest section and closes
    behind it (the back pole).

    Args:
        rim: (K, 3) closed loop of the opening (just outside and behind the inner lip ring).
        centre: (3,) the ellipsoid's centre (its widest section lies at ``centre[2]``).
        radii: half-axes ``x``, ``up``, ``down`` (at the widest section) and ``back``.
    Returns:
        MeshPart: K * n_depth + 1 vertices, normals pointing out of the pouch, UV u = around
        the rim, v = depth.
    """
    k_n = len(rim)
    d = rim[:, :2] - centre[:2]
    theta = np.arctan2(d[:, 1] / np.where(d[:, 1] > 0, radii["up"], radii["down"]), d[:, 0] / radii["x"])
    widest = np.stack([centre[0] + radii["x"] * np.cos(theta),
                       centre[1] + np.sin(theta) * np.where(np.sin(theta) > 0, radii["up"], radii["down"]),
                       np.full(k_n, centre[2])], -1)
    rows = []
    n_flare = max(2, n_depth // 3)
    for i in range(n_depth):
        if i < n_flare:  # rim -> widest section, leaving the rim along -z, arriving along -z
            t = i / n_flare
            h = t * t * (3.0 - 2.0 * t)
            p = rim + h * (widest - rim)
            p[:, 2] = rim[:, 2] + t * (widest[:, 2] - rim[:, 2])
        else:  # widest section -> towards the back pole along the ellipsoid
            phi = (i - n_flare) / (n_depth - n_flare) * (0.5 * np.pi)
            p = np.concatenate([centre[:2] + (widest[:, :2] - centre[:2]) * np.cos(phi),
                                np.full((k_n, 1), centre[2] - radii["back"] * np.sin(phi))], -1)
        rows.append(p)
    verts = np.concatenate(rows + [[[centre[0], centre[1], centre[2] - radii["back"]]]])
    pole = len(verts) - 1
    faces = []
    for i in range(n_depth - 1):
        for k in range(k_n):
            a, b = i * k_n + k, i * k_n + (k + 1) % k_n
            c, e = a + k_n, b + k_n
            faces += [[a, c, e], [a, e, b]]
    last = (n_depth - 1) * k_n
    faces += [[last + k, pole, last + (k + 1) % k_n] for k in range(k_n)]
    faces = np.asarray(faces, np.int64)
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    axis_point = np.stack([np.full(len(faces), centre[0]), np.full(len(faces), centre[1]),
                           tri.mean(1)[:, 2]], -1)
    inward = (n * (tri.mean(1) - axis_point)).sum(1) < 0
    faces[inward] = faces[inward][:, ::-1]
    uv = np.stack([np.tile(np.arange(k_n) / k_n, n_depth), np.repeat(1.0 - np.arange(n_depth) / n_depth, k_n)], -1)
    uv = np.concatenate([uv, [[0.5, 0.0]]])
    return MeshPart(verts, faces, uv, faces.copy())


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def place_mouth(assets: MouthAssets, v_neutral: np.ndarray, weights: np.ndarray,
                joint_names: tuple[str, ...] | list[str]) -> MouthGeometry:
    """Place teeth, tongue and cavity in one identity's neutral head.

    Args:
        assets: load_mouth_assets().
        v_neutral: (V, 3) template + identity (FLAME frame, metres), FLAME topology.
        weights: (V, J) FLAME skinning weights.
        joint_names: J names (FLAME's: root, neck, jaw, eye_L, eye_R).
    Returns:
        MouthGeometry in the frame of ``v_neutral``.
    Raises:
        ValueError: not FLAME topology or joints.
    """
    v_neutral = np.asarray(v_neutral, np.float64)
    if v_neutral.shape != (FLAME_VERTEX_COUNT, 3):
        raise ValueError(f"place_mouth needs FLAME's {FLAME_VERTEX_COUNT} vertices, got {v_neutral.shape}")
    names = list(joint_names)
    n_j, head_j, jaw_j = len(names), names.index(HEAD_JOINT), names.index(JAW_JOINT)
    frame = lip_frame(v_neutral, np.asarray(weights, np.float64)[:, jaw_j])
    up, low = assets.upper_teeth, assets.lower_teeth
    all_teeth = np.concatenate([up.verts, low.verts])
    gum_width = float(all_teeth[:, 0].max() - all_teeth[:, 0].min())
    s = TEETH_WIDTH_OVER_MOUTH * frame.width / gum_width
    a, b = assets.bite_line
    front_z = float(up.verts[:, 2].max())
    asset_anchor = np.array([0.0, float(assets.upper_incisor_edge[1]), front_z])
    head_anchor = np.array([frame.centre_x, frame.upper_lip_y - INCISOR_BELOW_LIP_M,
                            frame.front_z - FRONT_GAP_M])
    place = lambda p: head_anchor + s * (p - asset_anchor)  # noqa: E731
    frame.bite_y = float(place(np.array([0.0, a + b * front_z, front_z]))[1])

    upper_v, lower_v = place(up.verts), place(low.verts)
    # tongue: scaled about its tip, tip behind the lower incisors, top under their edges
    tg = assets.tongue.verts
    tip = tg[np.argmax(tg[:, 2])]
    st = s * TONGUE_SCALE
    lower_edge = place(assets.lower_incisor_edge)
    lower_front = place(central_incisors(low))
    tip_target_z = float(lower_front[:, 2].max()) - TONGUE_TIP_GAP_M
    tongue_v = st * (tg - tip)
    tongue_v += np.array([frame.centre_x, 0.0, tip_target_z])
    tongue_v[:, 1] += float(lower_edge[1]) - TONGUE_TOP_BELOW_INCISORS_M - tongue_v[:, 1].max()

    # cavity: a pouch from just behind the inner lip ring, around teeth and tongue
    cavity, cavity_w = _cavity(frame, v_neutral, weights, np.concatenate([upper_v, lower_v, tongue_v]),
                               head_j, jaw_j)

    # tongueOut: the front of the tongue rises until its underside clears the lower incisors'
    # edges, slides forward between the lips and its tip droops a little; the root stays
    t_len = float(tongue_v[:, 2].max() - tongue_v[:, 2].min())
    along = _smoothstep((tongue_v[:, 2] - (tongue_v[:, 2].max() - 0.8 * t_len)) / (0.8 * t_len))
    front = tongue_v[:, 2] > tongue_v[:, 2].max() - TONGUE_OUT_CLEAR_DEPTH_M
    lift = max(0.0, float(lower_edge[1]) + TONGUE_OUT_CLEARANCE_M - float(tongue_v[front, 1].min()))
    tongue_out = np.zeros_like(tongue_v)
    tongue_out[:, 2] = TONGUE_OUT_M * along
    tongue_out[:, 1] = lift * along - TONGUE_OUT_DOWN_M * along ** 4
    # whatever ends up over or in front of the lower incisors stays above their edges
    teeth_front = float(lower_front[:, 2].max())
    over = _smoothstep((tongue_v[:, 2] + tongue_out[:, 2] - teeth_front + TONGUE_OUT_CLEAR_DEPTH_M)
                       / TONGUE_OUT_CLEAR_DEPTH_M)
    need = float(lower_edge[1]) + TONGUE_OUT_CLEARANCE_M - tongue_v[:, 1]
    tongue_out[:, 1] = np.maximum(tongue_out[:, 1], over * need)

    head_tongue_out = lips_parted(v_neutral, weights[:, jaw_j], frame)
    parts = {
        "upper_teeth": MouthPart(upper_v, up.faces, up.uv, up.uv_faces, _one_hot(len(upper_v), head_j, n_j)),
        "lower_teeth": MouthPart(lower_v, low.faces, low.uv, low.uv_faces, _one_hot(len(lower_v), jaw_j, n_j)),
        "tongue": MouthPart(tongue_v, assets.tongue.faces, assets.tongue.uv, assets.tongue.uv_faces,
                            _one_hot(len(tongue_v), jaw_j, n_j)),
        "cavity": MouthPart(cavity.verts, cavity.faces, cavity.uv, cavity.uv_faces, cavity_w),
    }
    return MouthGeometry(parts, tongue_out, head_tongue_out, float(s))


def _cavity(frame: LipFrame, v_neutral: np.ndarray, weights: np.ndarray, inside: np.ndarray,
            head_j: int, jaw_j: int) -> tuple[MeshPart, np.ndarray]:
    """The cavity pouch and its (N, J) skin weights.

    The rim is the inner lip ring (resampled to ``CAVITY_RIM_POINTS``) pushed
    ``CAVITY_RIM_OUT_M`` away from the ring's centre and ``CAVITY_RIM_BACK_M`` backwards, with
    the ring's own skin weights, so it follows the lips; deeper rows blend to head / jaw
    weights by height (jaw below the bite plane).

    Args:
        inside: (M, 3) points the pouch must hold (placed teeth and tongue).
    """
    v = np.asarray(v_neutral, np.float64)
    ids = np.array(LIP_RINGS["inner_upper"] + LIP_RINGS["inner_lower"][::-1])
    n_j = weights.shape[1]
    loop = np.concatenate([v[ids], np.asarray(weights, np.float64)[ids]], axis=1)
    sampled, _, _ = _resample_loop(loop, CAVITY_RIM_POINTS)
    rim, rim_w = sampled[:, :3], sampled[:, 3:]
    ring_centre = v[ids].mean(0)
    out = rim[:, :2] - ring_centre[:2]
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    rim = rim + np.concatenate([out * CAVITY_RIM_OUT_M, np.full((len(rim), 1), -CAVITY_RIM_BACK_M)], 1)
    lo, hi = inside.min(0) - CAVITY_MARGIN_M, inside.max(0) + CAVITY_MARGIN_M
    half_x = max(float(hi[0] - lo[0]) / 2.0, float(np.abs(rim[:, 0] - frame.centre_x).max()) + CAVITY_MARGIN_M)
    centre_z = float(rim[:, 2].min()) - CAVITY_FLARE_M
    centre = np.array([frame.centre_x, frame.bite_y, centre_z])
    radii = {"x": half_x, "up": max(float(hi[1]) - frame.bite_y, float(rim[:, 1].max()) - frame.bite_y + CAVITY_MARGIN_M),
             "down": max(frame.bite_y - float(lo[1]), frame.bite_y - float(rim[:, 1].min()) + CAVITY_MARGIN_M),
             "back": centre_z - float(lo[2])}
    pouch = cavity_pouch(rim, centre, radii, CAVITY_DEPTH_ROWS)
    k_n = len(rim)
    jaw_w = 1.0 - _smoothstep((pouch.verts[:, 1] - frame.bite_y + CAVITY_JAW_BLEND_M / 2) / CAVITY_JAW_BLEND_M)
    height_w = np.zeros((len(pouch.verts), n_j))
    height_w[:, jaw_j], height_w[:, head_j] = jaw_w, 1.0 - jaw_w
    n_flare = max(2, CAVITY_DEPTH_ROWS // 3)
    row = np.minimum(np.arange(len(pouch.verts)) // k_n, CAVITY_DEPTH_ROWS)
    blend = _smoothstep(row / n_flare)[:, None]
    rim_rows = np.concatenate([np.tile(rim_w, (CAVITY_DEPTH_ROWS, 1)), rim_w[:1]])
    w = (1.0 - blend) * rim_rows + blend * height_w
    pouch.faces, pouch.uv_faces = pouch.faces[:, ::-1].copy(), pouch.uv_faces[:, ::-1].copy()
    return pouch, w / w.sum(1, keepdims=True)


def lips_parted(v_neutral: np.ndarray, jaw_weight: np.ndarray, frame: LipFrame) -> np.ndarray:
    """(V, 3) the head's ``tongueOut`` offsets: the lips part around the mouth's middle.

    The lower lip (vertices the jaw moves, FLAME weight > 0) goes down by up to
    ``LIPS_PART_LOWER_M``, the upper lip up by ``LIPS_PART_UPPER_M``, both fading with the
    distance from the mouth's centre (Gaussian of radius ``LIPS_PART_RADIUS_M``) and to 0
    behind the inner lip ring.
    """
    centre = np.array([frame.centre_x, frame.bite_y, frame.ring[:, 2].mean()])
    d = np.asarray(v_neutral, np.float64) - centre
    fall = np.exp(-(d[:, 0] ** 2 + d[:, 1] ** 2 + (0.5 * d[:, 2]) ** 2) / LIPS_PART_RADIUS_M ** 2)
    fall *= _smoothstep((d[:, 2] + 0.015) / 0.015)  # nothing deep inside the head
    lower = np.clip(np.asarray(jaw_weight, np.float64), 0.0, 1.0)
    out = np.zeros_like(d)
    out[:, 1] = fall * (LIPS_PART_UPPER_M * (1.0 - lower) - LIPS_PART_LOWER_M * lower)
    return out


# ----------------------------------------------------------------------------- bundle files


def mouth_arrays(geometry: MouthGeometry) -> dict[str, np.ndarray]:
    """The arrays of ``mouth.npz`` (float32 / int32): ``<part>_verts`` (N,3), ``<part>_faces``
    (F,3), ``<part>_uv`` (T,2), ``<part>_uv_faces`` (F,3), ``<part>_weights`` (N,J) for every
    part, ``tongue_out`` (N_tongue,3), ``head_tongue_out`` (V,3)."""
    out: dict[str, np.ndarray] = {}
    for name in PARTS:
        p = geometry.parts[name]
        out[f"{name}_verts"] = np.ascontiguousarray(p.verts, np.float32)
        out[f"{name}_faces"] = np.ascontiguousarray(p.faces, np.int32)
        out[f"{name}_uv"] = np.ascontiguousarray(p.uv, np.float32)
        out[f"{name}_uv_faces"] = np.ascontiguousarray(p.uv_faces, np.int32)
        out[f"{name}_weights"] = np.ascontiguousarray(p.weights, np.float32)
    out["tongue_out"] = np.ascontiguousarray(geometry.tongue_out, np.float32)
    out["head_tongue_out"] = np.ascontiguousarray(geometry.head_tongue_out, np.float32)
    return out


def write_mouth_files(out: str | os.PathLike[str], geometry: MouthGeometry,
                      assets: MouthAssets) -> dict[str, str]:
    """Write ``mouth.npz``, the teeth texture recoloured (``recolor_teeth``) and the tongue
    texture into the bundle ``out``.

    Returns:
        The ``files`` table entries: ``mouth``, ``teeth_texture``, ``tongue_texture``.
    """
    out = Path(out)
    with open(out / "mouth.npz", "wb") as fh:
        np.savez(fh, **mouth_arrays(geometry))
    (out / "teeth.png").write_bytes(_teeth_png_bytes(str(assets.teeth_png)))
    shutil.copyfile(assets.tongue_png, out / "tongue.png")
    return {"mouth": "mouth.npz", "teeth_texture": "teeth.png", "tongue_texture": "tongue.png"}


def recolor_teeth(rgba: np.ndarray) -> np.ndarray:
    """MakeHuman's teeth texture with off-white enamel and pink gums (``TEETH_RGB``,
    ``GUM_RGB``; see there).

    Args:
        rgba: (H, W, 4) or (H, W, 3) uint8 sRGB.
    Returns:
        The same shape, uint8; alpha unchanged.
    """
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    hi, lo = rgb.max(-1), rgb.min(-1)
    used = hi > 0.05
    if rgba.shape[-1] == 4:
        used &= rgba[..., 3] > 127
    sat = (hi - lo) / np.maximum(hi, 1e-3)
    a, b = TEETH_SATURATION
    t = np.clip((sat - a) / (b - a), 0.0, 1.0)
    gum_w = (t * t * (3.0 - 2.0 * t))[..., None]
    enamel_px, gum_px = used & (gum_w[..., 0] < 0.5), used & (gum_w[..., 0] >= 0.5)
    lum = rgb.mean(-1, keepdims=True)
    out = rgb.copy()
    if enamel_px.any():
        rel = lum / max(float(np.median(lum[enamel_px])), 1e-3)
        enamel = np.asarray(TEETH_RGB, np.float32) * rel ** TEETH_CONTRAST
        out = out * gum_w + enamel * (1.0 - gum_w)
    if gum_px.any():
        gain = np.asarray(GUM_RGB, np.float32) / np.maximum(np.median(rgb[gum_px], axis=0), 1e-3)
        out = out * (1.0 - gum_w) + rgb * gain * gum_w
    res = rgba.copy()
    res[..., :3] = np.where(used[..., None], np.clip(out * 255.0 + 0.5, 0, 255), rgba[..., :3])
    return res


@functools.lru_cache(maxsize=2)
def _teeth_png_bytes(path: str) -> bytes:
    """``recolor_teeth`` of the PNG at ``path``, encoded as PNG (cached per process)."""
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
    except OSError as exc:
        raise ModelFileError(f"Teeth texture unreadable: {path} ({exc}).") from exc
    buf = io.BytesIO()
    Image.fromarray(recolor_teeth(img)).save(buf, format="PNG")
    return buf.getvalue()
