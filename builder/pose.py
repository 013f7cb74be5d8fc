"""Stage ``pose`` (Object Mode): the photo's neck, jaw and eye rotations on the pose bones.

Pose bones use XYZ Euler rotation (X = nod / jaw open for every bone). The root rotation
(head orientation towards the camera) is not applied; it is kept in the armature's
``naming.ROOT_POSE_PROP`` property.
"""

from __future__ import annotations

import mathutils

from ..headrecon_addon import naming, rig
from .state import HeadBuild

MODE = 'OBJECT'
ROTATION_MODE = 'XYZ'


def run(build: HeadBuild) -> None:
    """Set every pose bone's rotation mode and the fitted local rotations."""
    pose = build.bundle.pose.copy()
    pose[naming.FLAME_JOINTS.index("root")] = 0.0
    rotations = rig.pose_rotations(pose, build.bones)
    for name, rot in rotations.items():
        pbone = build.armature_obj.pose.bones[name]
        pbone.rotation_mode = ROTATION_MODE
        pbone.rotation_euler = mathutils.Matrix(rot.tolist()).to_euler(ROTATION_MODE)
