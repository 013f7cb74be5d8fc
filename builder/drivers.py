"""Stage ``drivers`` (Object Mode): corrective keys driven by the jaw and neck rotations.

Each driver is a simple expression (no Python) of the pose bone's local rotation read as
a quaternion in local space (constraints included), see ``rig.corrective_drivers``.
"""

from __future__ import annotations

from ..headrecon_addon import rig
from .state import HeadBuild

MODE = 'OBJECT'


def run(build: HeadBuild) -> None:
    """Add one driver per corrective shape key."""
    key_blocks = build.mesh_obj.data.shape_keys.key_blocks
    for spec in rig.corrective_drivers(build.bones):
        fcurve = key_blocks[spec.key].driver_add("value")
        while fcurve.keyframe_points:  # the default 0->0, 1->1 keys: pass the value through
            fcurve.keyframe_points.remove(fcurve.keyframe_points[0], fast=True)
        driver = fcurve.driver
        driver.type = 'SCRIPTED'
        driver.use_self = False
        for name in spec.variables:
            var = driver.variables.new()
            var.name = name
            var.type = 'TRANSFORMS'
            target = var.targets[0]
            target.id = build.armature_obj
            target.bone_target = spec.bone
            target.transform_type = 'ROT_' + name.upper()
            target.rotation_mode = 'QUATERNION'
            target.transform_space = 'LOCAL_SPACE'
        driver.expression = spec.expression
