"""``headrecon.reset_expression``: the active head back to its Captured or its Neutral state.

``CAPTURED`` is the photo as imported (``Captured`` key 1, fitted eyelids, fitted neck/jaw/eye
rotations; read from the head's bundle), ``NEUTRAL`` is no expression and every bone at rest
(see ``headrecon_addon.face_controls``). Every face key is set, so keys an artist dialled in
go back to 0; ``head_pose`` says whether root/neck/head rotations are reset too.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..headrecon_addon import face_controls, naming
from . import face_rig


class HEADRECON_OT_reset_expression(face_rig.HeadPoll, bpy.types.Operator):
    """Reset every face control of the head to the captured photo or to neutral"""

    bl_idname = "headrecon.reset_expression"
    bl_label = "Reset Expression"
    bl_options = {'REGISTER', 'UNDO'}

    target: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Reset To", items=face_controls.RESET_TARGETS, default="CAPTURED")
    head_pose: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Head Pose", description="Also reset the root, neck and head bone rotations",
        default=True)

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature, mesh_obj = face_rig.head_or_none(context)
        captured = None
        if self.target == 'CAPTURED':
            try:
                captured = face_controls.load_captured(armature.get(naming.BUNDLE_PROP, ""))
            except face_controls.CapturedStateError as exc:
                self.report({'ERROR'}, str(exc))
                return {'CANCELLED'}
        blocks = face_rig.face_key_blocks(mesh_obj)
        values = face_controls.reset_key_values([kb.name for kb in blocks], self.target, captured)
        for kb in blocks:
            kb.value = values[kb.name]
        rotations = (face_controls.captured_joint_rotations(captured) if captured is not None
                     else {bone: np.zeros(3) for bone in naming.BONE_NAMES})
        bones = face_controls.EXPRESSION_BONES + (face_controls.HEAD_POSE_BONES if self.head_pose else ())
        for bone in bones:
            if bone in armature.pose.bones:
                face_rig.set_flame_rotation(armature, bone, rotations[bone])
        self.report({'INFO'}, f"{armature.name} reset to {self.target.title()}")
        return {'FINISHED'}


classes = (HEADRECON_OT_reset_expression,)
