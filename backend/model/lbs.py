"""Linear blend skinning written from the SMPL / FLAME papers (Loper et al. 2015, Li et al. 2017).

A posed vertex is ``v' = sum_j w_j G_j(theta, J) (v_p - J_j)`` (homogeneous coordinates), where
``v_p`` is the rest vertex plus the pose correctives ``P(theta) = sum_p (R(theta) - I)_p * P_p``,
``G_j`` is the world transform of joint ``j`` along the kinematic chain and ``J`` are the rest
joints. Everything is batched; device and dtype follow the inputs.
"""

from __future__ import annotations

import torch

# Below this squared angle (rad^2) the Taylor series of sin(t)/t and (1-cos t)/t^2 are used.
_SMALL_ANGLE_SQ = 1e-6


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices ``[v]_x`` with ``[v]_x u = v x u``.

    Args:
        v: (..., 3) vectors.
    Returns:
        (..., 3, 3) skew-symmetric matrices.
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def rodrigues(rvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors to rotation matrices, ``R = I + a K + b K^2`` with ``K = [r]_x``.

    ``a = sin(t)/t`` and ``b = (1 - cos t)/t^2`` (``t = |r|``) switch to their Taylor series near
    ``t = 0``, so both the value and the gradient are exact and finite at zero rotation.

    Args:
        rvec: (..., 3) axis-angle (axis times angle in radians).
    Returns:
        (..., 3, 3) rotation matrices.
    """
    t2 = (rvec * rvec).sum(-1, keepdim=True).unsqueeze(-1)  # (...,1,1)
    small = t2 < _SMALL_ANGLE_SQ
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    a = torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0 + t2 * t2 / 720.0, (1.0 - torch.cos(t)) / t2_safe)
    k = skew(rvec)
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def pose_feature(rot_mats: torch.Tensor) -> torch.Tensor:
    """Pose-corrective feature ``flatten(R_j - I)`` over the non-root joints ``j = 1..J-1``.

    Args:
        rot_mats: (B, J, 3, 3) local joint rotations.
    Returns:
        (B, 9*(J-1)) feature, row-major per joint.
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def regress_joints(j_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Joint locations as a fixed linear combination of vertices.

    Args:
        j_regressor: (J, V) regressor.
        vertices: (B, V, 3).
    Returns:
        (B, J, 3) joints.
    """
    return torch.einsum("jv,bvc->bjc", j_regressor, vertices)


def rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor,
                     parents: torch.Tensor | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk the kinematic chain ``G_j = G_parent(j) [R_j | J_j - J_parent(j)]``.

    The skinning transform of joint ``j`` is ``T_j = G_j [I | -J_j] = [Q_j | b_j]`` (it maps a
    rest-pose point attached to joint ``j`` to its posed location), with world rotation
    ``Q_j = Q_p R_j`` and, expanding the chain, ``b_j = b_p + Q_p (I - R_j) J_j`` (``p`` the
    parent; for the root ``b_0 = (I - R_0) J_0``). This form is exact for unrotated joints.
    Joints must be ordered so that every parent precedes its children (``parents[0] == -1``).

    Args:
        rot_mats: (B, J, 3, 3) local rotations.
        joints: (B, J, 3) rest joint locations.
        parents: (J,) parent index per joint.
    Returns:
        posed_joints: (B, J, 3) joint locations after posing, ``Q_j J_j + b_j``.
        skin_transforms: (B, J, 4, 4) the transforms ``T_j``.
    """
    par = [int(p) for p in parents]
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    local_shift = ((eye - rot_mats) @ joints.unsqueeze(-1)).squeeze(-1)  # (I - R_j) J_j
    rots = [rot_mats[:, 0]]
    shifts = [local_shift[:, 0]]
    for j in range(1, len(par)):
        q_p = rots[par[j]]
        rots.append(q_p @ rot_mats[:, j])
        shifts.append(shifts[par[j]] + (q_p @ local_shift[:, j].unsqueeze(-1)).squeeze(-1))
    q = torch.stack(rots, dim=1)  # (B,J,3,3)
    b = torch.stack(shifts, dim=1)  # (B,J,3)
    posed_joints = (q @ joints.unsqueeze(-1)).squeeze(-1) + b
    top = torch.cat([q, b.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return posed_joints, torch.cat([top, bottom], dim=-2)


def skin_vertices(vertices: torch.Tensor, weights: torch.Tensor,
                  skin_transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning ``v' = sum_j w_vj T_j v``.

    Written as ``v' = v + sum_j w_vj ((A_j - I) v + b_j)`` with ``T_j = [A_j | b_j]``, which is the
    same for weights that sum to 1 and leaves a vertex bit-exact when its joints do not move.

    Args:
        vertices: (B, V, 3) rest-pose vertices (pose correctives already added).
        weights: (V, J) skinning weights (rows sum to 1).
        skin_transforms: (B, J, 4, 4) from :func:`rigid_transforms`.
    Returns:
        (B, V, 3) posed vertices.
    """
    eye = torch.eye(3, dtype=skin_transforms.dtype, device=skin_transforms.device)
    delta = torch.cat([skin_transforms[:, :, :3, :3] - eye, skin_transforms[:, :, :3, 3:]], dim=-1)
    blended = torch.einsum("vj,bjrc->bvrc", weights, delta)  # (B,V,3,4)
    return vertices + (blended[..., :3] @ vertices.unsqueeze(-1)).squeeze(-1) + blended[..., 3]


def lbs(v_shaped: torch.Tensor, pose: torch.Tensor, rest_joints: torch.Tensor,
        posedirs: torch.Tensor, parents: torch.Tensor | list[int],
        weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose correctives followed by linear blend skinning.

    Args:
        v_shaped: (B, V, 3) template plus identity / expression blendshapes.
        pose: (B, J, 3) axis-angle per joint.
        rest_joints: (B, J, 3) rest joints (FLAME: regressed from template + identity).
        posedirs: (V, 3, 9*(J-1)) pose-corrective blendshapes.
        parents: (J,) kinematic tree.
        weights: (V, J) skinning weights.
    Returns:
        vertices: (B, V, 3) posed vertices.
        joints: (B, J, 3) posed joints.
    """
    rot = rodrigues(pose)
    v_posed = v_shaped + torch.einsum("vcp,bp->bvc", posedirs, pose_feature(rot))
    joints, transforms = rigid_transforms(rot, rest_joints, parents)
    return skin_vertices(v_posed, weights, transforms), joints
