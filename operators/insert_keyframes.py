"""``headrecon.insert_keyframes``: key every face control of the active head at one frame.

Keys the value of every face key (``face_rig.face_key_blocks``: not Basis, not driven) and
the rotation of every pose bone. Both go into the head's own action: the one already
assigned to the armature (or to its shape keys), else a new ``<stem>_FaceAnim`` action.
With slotted actions (Blender 4.4+) armature and shape keys share that one action (one slot
each), which glTF exports as one animation; older Blender gets a second ``..._Keys`` action
for the shape keys. Other actions are never touched.
"""

from __future__ import annotations

import bpy

from ..headrecon_addon import face_controls, naming
from . import face_rig

SLOTTED_ACTIONS = hasattr(bpy.types, "ActionSlot")
GROUP_LABELS: dict[str, str] = dict(face_controls.KEY_GROUPS)  # dope-sheet group per key group


def _head_actions(armature: bpy.types.Object, shape_keys: bpy.types.Key) -> list[bpy.types.Action]:
    """Assign the head's action(s) to the armature and its shape keys where none is; returns them."""
    arm_anim = armature.animation_data or armature.animation_data_create()
    key_anim = shape_keys.animation_data or shape_keys.animation_data_create()
    name = face_controls.action_name(armature.name)
    if SLOTTED_ACTIONS:
        action = arm_anim.action or key_anim.action or bpy.data.actions.new(name)
        for anim in (arm_anim, key_anim):
            if anim.action is None:
                anim.action = action
    else:
        if arm_anim.action is None:
            arm_anim.action = bpy.data.actions.new(name)
        if key_anim.action is None:
            key_anim.action = bpy.data.actions.new(f"{name}_Keys")
    return list(dict.fromkeys([arm_anim.action, key_anim.action]))


class HEADRECON_OT_insert_keyframes(face_rig.HeadPoll, bpy.types.Operator):
    """Insert a keyframe on every face control of the head (shape keys and bone rotations)"""

    bl_idname = "headrecon.insert_keyframes"
    bl_label = "Insert Face Keyframes"
    bl_options = {'REGISTER', 'UNDO'}

    frame: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Frame", description="Frame to key (the scene's current frame when not set)")
    shape_keys: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Shape Keys", description="Key every face shape key's value", default=True)
    bones: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Bones", description="Key every pose bone's rotation", default=True)

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature, mesh_obj = face_rig.head_or_none(context)
        frame = self.frame if self.properties.is_property_set("frame") else context.scene.frame_current
        actions = _head_actions(armature, mesh_obj.data.shape_keys)
        n_keys = n_bones = 0
        if self.shape_keys:
            for kb in face_rig.face_key_blocks(mesh_obj):
                group = GROUP_LABELS[face_controls.key_group(kb.name)]
                n_keys += int(kb.keyframe_insert("value", frame=frame, group=group))
        if self.bones:
            for bone in naming.BONE_NAMES:
                if bone in armature.pose.bones:
                    n_bones += int(face_rig.key_bone_rotation(armature, bone, frame) > 0)
        self.report({'INFO'}, f"Keyed {n_keys} shape keys and {n_bones} bones at frame {frame} "
                              f"in {', '.join(a.name for a in actions)}")
        return {'FINISHED'}


classes = (HEADRECON_OT_insert_keyframes,)
