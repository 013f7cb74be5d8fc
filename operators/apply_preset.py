"""``headrecon.apply_preset``: set the active head's face controls to an expression preset."""

from __future__ import annotations

import bpy
import numpy as np

from ..headrecon_addon import face_controls, presets
from . import face_rig


class HEADRECON_OT_apply_preset(face_rig.HeadPoll, bpy.types.Operator):
    """Set the head's expression to a preset (ARKit keys, eyelid keys, jaw bone)"""

    bl_idname = "headrecon.apply_preset"
    bl_label = "Apply Expression Preset"
    bl_options = {'REGISTER', 'UNDO'}

    preset: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Preset", items=presets.enum_items(), default="SMILE")
    mode: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Mode", items=presets.MODES, default="REPLACE")
    strength: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Strength", description="Factor on every value of the preset",
        default=1.0, min=0.0, soft_max=1.0, max=2.0)

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature, mesh_obj = face_rig.head_or_none(context)
        blocks = face_rig.face_key_blocks(mesh_obj)
        plan = presets.preset_plan(self.preset, [kb.name for kb in blocks], self.strength)
        add = self.mode == 'ADD'
        if not add:
            for kb in blocks:
                kb.value = 0.0
            for bone in face_controls.EXPRESSION_BONES:
                face_rig.set_flame_rotation(armature, bone, np.zeros(3))
        key_blocks = mesh_obj.data.shape_keys.key_blocks
        for name, value in plan.keys.items():
            key_blocks[name].value = key_blocks[name].value + value if add else value
        for bone, axis_angle in plan.bones.items():
            face_rig.set_flame_rotation(armature, bone, np.array(axis_angle), add=add)
        label = presets.PRESETS_BY_ID[self.preset].label
        if plan.missing:
            self.report({'WARNING'}, f"{label}: skipped {len(plan.missing)} keys this head lacks "
                                     f"({', '.join(plan.missing[:4])}{', ...' if len(plan.missing) > 4 else ''}); "
                                     "import a bundle with ARKit shapes for them")
        else:
            self.report({'INFO'}, f"{label} applied to {armature.name}")
        return {'FINISHED'}


classes = (HEADRECON_OT_apply_preset,)
