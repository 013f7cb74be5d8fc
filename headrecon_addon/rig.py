"""Rig math of an imported head (numpy only): bone frames, skin weights, pose, corrective drivers.

Frames. FLAME uses +Y up, +Z out of the face, +X the subject's left; Blender gets
``(x, y, z) -> (x, -z, y)``. Every bone is aligned with the FLAME axes and its local X axis
is FLAME's +X, so a bone's rest frame ``P`` (columns = the bone's local X, Y, Z axes in FLAME
coordinates) is a signed permutation: "up" bones (root, neck, head) have ``P = I``, "forward"
bones (jaw, eyes; the bone's Y axis points out of the face) have columns ``(X, Z, -Y)``.
A pose bone's local rotation ``R_b`` then equals FLAME's joint rotation
``R_j = P R_b P^T``, and each entry of ``R_j`` is one signed entry of ``R_b``.

Correctives. FLAME adds ``posedirs @ flatten(R_j - I)`` before skinning. Each entry of
``R_b`` is a quadratic in the bone's local quaternion ``(w, x, y, z)``, so each corrective
shape key gets a driver with a short expression such as ``2*(x*y-w*z)`` that Blender's
simple-expression evaluator runs without Python.

Skinning. The FLAME weights become vertex groups bone-for-joint, except that FLAME's neck
weights are split between ``neck`` and its child ``head``: ``head`` gets the fraction
``s = clip(1 - w_root / HEAD_SPLIT_TAU, 0, 1)`` of them (the skull, where the root weight
is ~0), ``neck`` the rest. With ``head`` at rest both move with the neck joint, so the
mesh is exactly FLAME's linear blend skinning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import naming

# FLAME (x, y, z) -> Blender (x, -z, y), as a matrix acting on column vectors.
FLAME_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

FRAME_UP = np.eye(3)  # local X, Y, Z = FLAME X, Y, Z
FRAME_FORWARD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # columns X, Z, -Y

HEAD_SPLIT_TAU = 0.1
MIN_BONE_LENGTH = 0.01  # metres

# Entry (k, l) of the rotation matrix of a unit quaternion (w, x, y, z), minus 1 on the diagonal.
_QUAT_ENTRY: dict[tuple[int, int], tuple[str, tuple[str, ...]]] = {
    (0, 0): ("-2*(y*y+z*z)", ("y", "z")),
    (0, 1): ("2*(x*y-w*z)", ("w", "x", "y", "z")),
    (0, 2): ("2*(x*z+w*y)", ("w", "x", "y", "z")),
    (1, 0): ("2*(x*y+w*z)", ("w", "x", "y", "z")),
    (1, 1): ("-2*(x*x+z*z)", ("x", "z")),
    (1, 2): ("2*(y*z-w*x)", ("w", "x", "y", "z")),
    (2, 0): ("2*(x*z-w*y)", ("w", "x", "y", "z")),
    (2, 1): ("2*(y*z+w*x)", ("w", "x", "y", "z")),
    (2, 2): ("-2*(x*x+y*y)", ("x", "y")),
}


@dataclass(frozen=True)
class BoneSpec:
    """One bone of the head armature, in FLAME coordinates (metres).

    Attributes:
        name: Blender bone name (naming.BONE_NAMES).
        joint: FLAME joint whose rotation it carries, or None (the extra ``head`` bone).
        parent: parent bone name or None.
        frame: (3, 3) columns = the bone's local X, Y, Z axes (signed permutation).
        head: (3,) bone head (the pivot), tail: (3,) bone tail = head + length * frame[:, 1].
        connected: the head sits on the parent's tail.
    """

    name: str
    joint: str | None
    parent: str | None
    frame: np.ndarray
    head: np.ndarray
    tail: np.ndarray
    connected: bool = False


@dataclass(frozen=True)
class CorrectiveDriver:
    """The driver of one corrective shape key.

    Attributes:
        key: shape key name, e.g. ``PC_jaw_01``.
        bone: pose bone whose local rotation drives it.
        expression: simple expression in the quaternion components ``w, x, y, z``.
        variables: the components the expression uses (each one driver variable).
        feature: index into FLAME's pose feature vector (``pose_deltas`` row).
    """

    key: str
    bone: str
    expression: str
    variables: tuple[str, ...]
    feature: int


def flame_to_blender(points: np.ndarray) -> np.ndarray:
    """Map FLAME coordinates to Blender coordinates.

    Args:
        points: (..., 3) in the FLAME frame.
    Returns:
        (..., 3) ``(x, -z, y)``, same dtype.
    """
    out = np.empty_like(points)
    out[..., 0] = points[..., 0]
    out[..., 1] = -points[..., 2]
    out[..., 2] = points[..., 1]
    return out


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula.

    Args:
        axis_angle: (..., 3) rotation vectors (radians).
    Returns:
        (..., 3, 3) rotation matrices (float64).
    """
    r = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(r, axis=-1, keepdims=True)
    axis = r / np.where(angle < 1e-12, 1.0, angle)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*r.shape[:-1], 3, 3)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def _reach_forward(v_neutral: np.ndarray, mask: np.ndarray, origin: np.ndarray,
                   fallback: float) -> float:
    """Distance along FLAME +Z from ``origin`` to the front-most masked vertex (display length)."""
    if not mask.any():
        return fallback
    return max(float(v_neutral[mask, 2].max() - origin[2]), MIN_BONE_LENGTH)


def bone_layout(joints: np.ndarray, v_neutral: np.ndarray, weights: np.ndarray) -> list[BoneSpec]:
    """The six bones of a head at the rest joints of its identity.

    Args:
        joints: (5, 3) rest joints in naming.FLAME_JOINTS order (FLAME frame).
        v_neutral: (V, 3) neutral mesh (sizes the bones for display).
        weights: (V, 5) FLAME skinning weights.
    Returns:
        BoneSpecs in naming.BONE_NAMES order (parents before children).
    """
    j = {name: np.asarray(joints[i], dtype=np.float64) for i, name in enumerate(naming.FLAME_JOINTS)}
    top = float(v_neutral[:, 1].max())
    neck_len = max(0.3 * (top - j["neck"][1]), MIN_BONE_LENGTH)
    head_len = max(top - j["neck"][1] - neck_len, MIN_BONE_LENGTH)
    root_len = max(0.5 * (j["neck"][1] - j["root"][1]), MIN_BONE_LENGTH)
    jaw_len = _reach_forward(v_neutral, weights[:, 2] > 0.5, j["jaw"], 0.08)

    def spec(name: str, joint: str | None, parent: str | None, frame: np.ndarray,
             head: np.ndarray, length: float, connected: bool = False) -> BoneSpec:
        return BoneSpec(name, joint, parent, frame.copy(), head.copy(),
                        head + length * frame[:, 1], connected)

    neck_tail = j["neck"] + neck_len * FRAME_UP[:, 1]
    bones = [
        spec(naming.ROOT_BONE, "root", None, FRAME_UP, j["root"], root_len),
        spec(naming.NECK_BONE, "neck", naming.ROOT_BONE, FRAME_UP, j["neck"], neck_len),
        spec(naming.HEAD_BONE, None, naming.NECK_BONE, FRAME_UP, neck_tail, head_len, True),
        spec(naming.JAW_BONE, "jaw", naming.HEAD_BONE, FRAME_FORWARD, j["jaw"], jaw_len),
    ]
    for joint, col in (("eye_L", 3), ("eye_R", 4)):
        eye_len = _reach_forward(v_neutral, weights[:, col] > 0.5, j[joint], 0.012) + 0.01
        bones.append(spec(naming.JOINT_TO_BONE[joint], joint, naming.HEAD_BONE, FRAME_FORWARD,
                          j[joint], eye_len))
    return bones


def bone_weights(weights: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex-group weights per bone from FLAME's skinning weights.

    Args:
        weights: (V, 5) FLAME weights (rows sum to 1), naming.FLAME_JOINTS order.
    Returns:
        bone name -> (V,) float32 weights; rows still sum to 1 over the six bones.
    """
    w = np.asarray(weights, dtype=np.float64)
    s = np.clip(1.0 - w[:, 0] / HEAD_SPLIT_TAU, 0.0, 1.0)
    out = {
        naming.ROOT_BONE: w[:, 0],
        naming.NECK_BONE: w[:, 1] * (1.0 - s),
        naming.HEAD_BONE: w[:, 1] * s,
        naming.JAW_BONE: w[:, 2],
        naming.EYE_L_BONE: w[:, 3],
        naming.EYE_R_BONE: w[:, 4],
    }
    return {k: v.astype(np.float32) for k, v in out.items()}


def local_rotation(frame: np.ndarray, flame_rotation: np.ndarray) -> np.ndarray:
    """Pose-bone local rotation for a FLAME joint rotation: ``P^T R P``.

    Args:
        frame: (3, 3) bone frame P (FLAME coordinates).
        flame_rotation: (3, 3) joint rotation in the FLAME frame.
    Returns:
        (3, 3) rotation in the bone's local frame.
    """
    return frame.T @ flame_rotation @ frame


def pose_rotations(pose: np.ndarray, bones: list[BoneSpec]) -> dict[str, np.ndarray]:
    """Local rotation of every pose bone for a FLAME pose.

    Args:
        pose: (5, 3) axis-angle per joint, naming.FLAME_JOINTS order.
        bones: from :func:`bone_layout`.
    Returns:
        bone name -> (3, 3) local rotation (identity for the ``head`` bone).
    """
    mats = axis_angle_to_matrix(pose)
    out = {}
    for bone in bones:
        if bone.joint is None:
            out[bone.name] = np.eye(3)
        else:
            out[bone.name] = local_rotation(bone.frame, mats[naming.FLAME_JOINTS.index(bone.joint)])
    return out


def entry_expression(frame: np.ndarray, row: int, col: int) -> tuple[str, tuple[str, ...]]:
    """Expression of ``(R_j - I)[row, col]`` in the bone's local quaternion ``(w, x, y, z)``.

    Args:
        frame: (3, 3) signed-permutation bone frame P.
        row, col: entry of the FLAME-frame rotation.
    Returns:
        (expression, variables used).
    """
    p = np.asarray(frame, dtype=np.float64)
    a = np.abs(p)
    if not (np.isin(p, (-1.0, 0.0, 1.0)).all() and (a.sum(0) == 1).all() and (a.sum(1) == 1).all()):
        raise ValueError("bone frame is not a signed permutation")
    k, l = int(a[row].argmax()), int(a[col].argmax())
    sign = p[row, k] * p[col, l]
    expr, variables = _QUAT_ENTRY[(k, l)]
    if sign < 0:
        expr = expr[1:] if expr.startswith("-") else "-" + expr
    return expr, variables


def corrective_drivers(bones: list[BoneSpec]) -> list[CorrectiveDriver]:
    """Drivers of all corrective keys (naming.corrective_keys order).

    FLAME's pose feature of joint j (j = 1..4) occupies rows ``9*(j-1) .. 9*(j-1)+8`` of
    ``pose_deltas``, row-major over the 3x3 entries of ``R_j - I``.
    """
    by_joint = {b.joint: b for b in bones if b.joint is not None}
    out = []
    for joint in naming.CORRECTIVE_JOINTS:
        bone = by_joint[joint]
        base = 9 * (naming.FLAME_JOINTS.index(joint) - 1)
        for row in range(3):
            for col in range(3):
                expr, variables = entry_expression(bone.frame, row, col)
                out.append(CorrectiveDriver(naming.corrective_key(joint, row, col), bone.name,
                                            expr, variables, base + 3 * row + col))
    return out


def matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) axis-angle (radians), angle in [0, pi)."""
    r = np.asarray(r, dtype=np.float64)
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:  # angle ~ pi: axis from the diagonal
        d = np.sqrt(np.clip((np.diag(r) + 1.0) / 2.0, 0.0, None))
        k = int(np.argmax(d))
        axis = r[k] / (2.0 * d[k])
        axis[k] = d[k]
        norm = np.linalg.norm(axis)
    return angle * axis / norm


def equivalent_rotation(rest: np.ndarray, delta: np.ndarray, center: np.ndarray,
                        weight: np.ndarray) -> np.ndarray:
    """The rotation about ``center`` that best moves ``rest`` by ``delta`` (a shape key
    expressed as a bone rotation, e.g. ``eyeLookOutLeft`` as an eye rotation, ``jawOpen`` as
    a jaw rotation).

    Weighted orthogonal Procrustes with the centre fixed:
    ``argmin_R sum_i w_i |R (p_i - c) - (p_i + d_i - c)|^2``.

    Args:
        rest: (N, 3) rest positions (any frame; the result is in the same frame).
        delta: (N, 3) shape-key offsets at weight 1.
        center: (3,) the joint the rotation turns about.
        weight: (N,) non-negative weights (e.g. the bone's skin weights).
    Returns:
        (3,) axis-angle (radians); zeros when nothing moves.
    """
    p = np.asarray(rest, np.float64) - np.asarray(center, np.float64)
    q = p + np.asarray(delta, np.float64)
    w = np.asarray(weight, np.float64)[:, None]
    if not np.any(w > 0) or np.abs(delta).max(initial=0.0) < 1e-9:
        return np.zeros(3)
    u, _, vt = np.linalg.svd((q * w).T @ p)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return matrix_to_axis_angle(r)
