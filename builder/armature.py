"""Stage ``armature`` (Edit Mode of the armature): the six bones at the identity's joints.

Each bone's rest matrix is set exactly (``rig.BoneSpec.frame`` mapped to Blender), so a
pose bone's local rotation maps to FLAME's joint rotation by a signed permutation.
"""

from __future__ import annotations

import mathutils
import numpy as np

from ..headrecon_addon import rig
from .state import HeadBuild

MODE = 'EDIT'


def rest_matrix(spec: rig.BoneSpec) -> mathutils.Matrix:
    """4x4 armature-space rest matrix of a bone (Blender coordinates)."""
    mat = np.eye(4)
    mat[:3, :3] = rig.FLAME_TO_BLENDER @ spec.frame
    mat[:3, 3] = rig.flame_to_blender(spec.head)
    return mathutils.Matrix(mat.tolist())


def run(build: HeadBuild) -> None:
    """Create the edit bones (armature must be in Edit Mode)."""
    edit_bones = build.armature_obj.data.edit_bones
    for spec in build.bones:
        bone = edit_bones.new(spec.name)
        bone.head = rig.flame_to_blender(spec.head).tolist()
        bone.tail = rig.flame_to_blender(spec.tail).tolist()
        bone.matrix = rest_matrix(spec)
        bone.use_deform = True
        if spec.parent is not None:
            bone.parent = edit_bones[spec.parent]
            bone.use_connect = spec.connected
