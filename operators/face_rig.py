"""bpy helpers shared by the face operators (presets, reset, keyframes, export); not an operator.

Bone rotations are handled as FLAME-frame rotations: a pose bone's local rotation ``R_b``
and its FLAME joint rotation ``R_j`` are related by the bone's rest frame ``P`` (columns =
the bone's local axes in FLAME coordinates), ``R_j = P R_b P^T`` (see ``rig``). ``P`` is read
from the armature's rest matrices, so these helpers work for any of the rig's bones and
whatever rotation mode the artist picked.
"""

from __future__ import annotations

import bpy
import mathutils
import numpy as np

from ..headrecon_addon import face_controls, rig
from ..heads import active_head
from ..panels.main_panel import rotation_property


class HeadPoll:
    """Operator mixin: available only while a HeadRecon head is selected (and, when
    ``object_mode_for`` names the action, only in Object Mode)."""

    object_mode_for: str = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if cls.object_mode_for and context.mode != 'OBJECT':
            cls.poll_message_set(f"Switch to Object Mode to {cls.object_mode_for}")
            return False
        if head_or_none(context) is None:
            cls.poll_message_set("Select a HeadRecon head")
            return False
        return True


def head_or_none(context: bpy.types.Context) -> tuple[bpy.types.Object, bpy.types.Object] | None:
    """(armature, mesh) of the active head when both exist and the mesh has shape keys."""
    head = active_head(context)
    if head is None or head[1] is None or head[1].data.shape_keys is None:
        return None
    return head[0], head[1]


def driven_paths(id_data: bpy.types.ID) -> set[str]:
    """Data paths of ``id_data`` that have a driver."""
    anim = id_data.animation_data
    return {fc.data_path for fc in anim.drivers} if anim is not None else set()


def face_key_blocks(mesh_obj: bpy.types.Object) -> list[bpy.types.ShapeKey]:
    """The mesh's face keys (``face_controls.is_face_key``) that no driver sets, in key order."""
    shape_keys = mesh_obj.data.shape_keys
    driven = driven_paths(shape_keys)
    return [kb for kb in shape_keys.key_blocks if face_controls.is_face_key(kb.name)
            and kb.path_from_id("value") not in driven]


def bone_frame(armature: bpy.types.Object, bone: str) -> np.ndarray:
    """(3, 3) rest frame P of a bone: its local axes as columns, in FLAME coordinates."""
    local = np.array(armature.data.bones[bone].matrix_local.to_3x3())
    return rig.FLAME_TO_BLENDER.T @ local


def set_local_matrix(pbone: bpy.types.PoseBone, local: np.ndarray) -> None:
    """Set a pose bone's rotation from a (3, 3) local rotation, in its own rotation mode."""
    mat = mathutils.Matrix(np.asarray(local, dtype=np.float64).tolist())
    if pbone.rotation_mode == 'QUATERNION':
        pbone.rotation_quaternion = mat.to_quaternion()
    elif pbone.rotation_mode == 'AXIS_ANGLE':
        axis, angle = mat.to_quaternion().to_axis_angle()
        pbone.rotation_axis_angle = (angle, *axis)
    else:
        pbone.rotation_euler = mat.to_euler(pbone.rotation_mode, pbone.rotation_euler)


def local_matrix(pbone: bpy.types.PoseBone) -> np.ndarray:
    """(3, 3) current local rotation of a pose bone (any rotation mode)."""
    return np.array(pbone.matrix_basis.to_3x3().normalized())


def set_flame_rotation(armature: bpy.types.Object, bone: str, axis_angle: np.ndarray,
                       add: bool = False) -> None:
    """Rotate a pose bone to a FLAME-frame rotation.

    Args:
        axis_angle: (3,) FLAME-frame axis-angle (radians).
        add: apply the rotation after the bone's current one instead of replacing it.
    """
    frame = bone_frame(armature, bone)
    pbone = armature.pose.bones[bone]
    local = rig.local_rotation(frame, rig.axis_angle_to_matrix(np.asarray(axis_angle)))
    if add:
        local = local @ local_matrix(pbone)
    set_local_matrix(pbone, local)


def key_bone_rotation(armature: bpy.types.Object, bone: str, frame: int) -> int:
    """Keyframe a pose bone's rotation (its mode's property) at ``frame``; returns channels keyed."""
    pbone = armature.pose.bones[bone]
    prop = rotation_property(pbone)
    ok = armature.keyframe_insert(pbone.path_from_id(prop), frame=frame, group=bone)
    return len(getattr(pbone, prop)) if ok else 0


def shape_key_rotations(armature: bpy.types.Object, mesh_obj: bpy.types.Object,
                        key_bones: dict[str, str]) -> dict[str, np.ndarray]:
    """Each shape key as the rotation of a bone it imitates (``rig.equivalent_rotation``).

    E.g. ``eyeLookOutLeft`` turns the left eyeball like a rotation of ``eye.L`` about its joint,
    ``jawOpen`` opens the mouth like a rotation of ``jaw``. Fitted on the vertices the bone
    drives (skin weight > 0.5), relative to the key's reference key.

    Args:
        key_bones: shape key name -> bone name (pairs whose key, bone or vertex group is
            missing are left out).
    Returns:
        key name -> (3,) FLAME-frame axis-angle at key value 1.
    """
    mesh = mesh_obj.data
    blocks = mesh.shape_keys.key_blocks
    n = len(mesh.vertices)
    pairs = {k: b for k, b in key_bones.items() if k in blocks and b in armature.data.bones
             and b in mesh_obj.vertex_groups}
    if not pairs:
        return {}
    weights: dict[str, np.ndarray] = {}
    for bone in set(pairs.values()):
        index = mesh_obj.vertex_groups[bone].index
        w = np.zeros(n)
        for v in mesh.vertices:
            for g in v.groups:
                if g.group == index:
                    w[v.index] = g.weight
        weights[bone] = np.where(w > 0.5, w, 0.0)

    def coords(kb: bpy.types.ShapeKey) -> np.ndarray:
        co = np.empty(n * 3, np.float32)
        kb.data.foreach_get("co", co)
        return co.reshape(n, 3).astype(np.float64) @ rig.FLAME_TO_BLENDER  # Blender -> FLAME

    out = {}
    for key, bone in pairs.items():
        kb = blocks[key]
        rest = coords(kb.relative_key)
        joint = rig.FLAME_TO_BLENDER.T @ np.array(armature.data.bones[bone].head_local)
        out[key] = rig.equivalent_rotation(rest, coords(kb) - rest, joint, weights[bone])
    return out

