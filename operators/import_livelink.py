"""``headrecon.import_livelink``: key a Live Link Face CSV onto the active head.

Each CSV row becomes keyframes at ``start frame + row frame`` (the first row at the start
frame, default the current frame): the ARKit weights on the head's ARKit shape keys
(``livelink.shape_key_targets``) and the head / eye rotations on the ``neck`` / ``eye.L`` /
``eye.R`` pose bones (``livelink.GROUP_BONES``). Keys go into the head's own action (as
Insert Keyframes: the action already assigned to the armature / shape keys, else a new
``<stem>_FaceAnim``); other actions are never touched. :func:`key_face` is shared with the
capture operators.
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from ..headrecon_addon import face_controls, livelink
from . import face_rig
from .insert_keyframes import GROUP_LABELS, _head_actions


def key_face(armature: bpy.types.Object, mesh_obj: bpy.types.Object, frame: int,
             weights: dict[str, float], rotations: dict[str, np.ndarray]) -> None:
    """Set and key shape-key values and FLAME-frame bone rotations at one frame.

    Args:
        weights: shape-key name -> value (keys the head has).
        rotations: bone name -> (3,) FLAME-frame axis-angle.
    """
    blocks = mesh_obj.data.shape_keys.key_blocks
    for name, value in weights.items():
        kb = blocks[name]
        kb.value = value
        kb.keyframe_insert("value", frame=frame, group=GROUP_LABELS[face_controls.key_group(name)])
    for bone, axis_angle in rotations.items():
        face_rig.set_flame_rotation(armature, bone, np.asarray(axis_angle, dtype=np.float64))
        face_rig.key_bone_rotation(armature, bone, frame)


def fps_of(scene: bpy.types.Scene) -> float:
    """The scene's frame rate (``fps / fps_base``)."""
    return scene.render.fps / scene.render.fps_base


class HEADRECON_OT_import_livelink(face_rig.HeadPoll, bpy.types.Operator):
    """Key a Live Link Face CSV (ARKit weights, head and eye rotations) onto the head"""

    object_mode_for = "import"
    bl_idname = "headrecon.import_livelink"
    bl_label = "Import Live Link Face CSV"
    bl_options = {'REGISTER', 'UNDO'}

    filepath: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="File Path", subtype='FILE_PATH', description="Live Link Face CSV to import")
    filter_glob: bpy.props.StringProperty(default="*.csv", options={'HIDDEN'})  # type: ignore[valid-type]
    fps: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Frame Rate", default=0.0, min=0.0, max=240.0,
        description="Frame rate of the CSV's timecodes (0: the scene's)")
    start_frame: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Start Frame", description="Frame of the first row (the current frame when not set)")
    shape_keys: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Shape Keys", default=True, description="Key the ARKit weights")
    rotations: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Head and Eye Rotations", default=True,
        description="Key the neck (head) and eye bone rotations")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature, mesh_obj = face_rig.head_or_none(context)
        scene = context.scene
        start = self.start_frame if self.properties.is_property_set("start_frame") \
            else scene.frame_current
        path = bpy.path.abspath(self.filepath)
        try:
            take = livelink.read_csv(path, self.fps or fps_of(scene))
        except livelink.LiveLinkError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        targets = livelink.shape_key_targets(mesh_obj.data.shape_keys.key_blocks.keys()) \
            if self.shape_keys else {}
        if self.shape_keys and not targets:
            self.report({'ERROR'}, f"{armature.name} has no ARKit shape keys; reconstruct it with "
                                   "the ARKit shapes installed (./setup.sh) to import weights.")
            return {'CANCELLED'}
        bones = {g: b for g, b in livelink.GROUP_BONES.items() if b in armature.pose.bones} \
            if self.rotations else {}
        _head_actions(armature, mesh_obj.data.shape_keys)
        current = scene.frame_current
        for fr in take.frames:
            weights = {targets[n]: v for n, v in fr.weights.items() if n in targets}
            rots = {bones[g]: np.array(livelink.euler_to_axis_angle(*ypr))
                    for g, ypr in fr.rotations.items() if g in bones}
            key_face(armature, mesh_obj, start + fr.frame, weights, rots)
        scene.frame_set(current)
        last = start + take.frames[-1].frame
        self.report({'INFO'}, f"Keyed {len(take.frames)} frames ({start}-{last}) of "
                              f"{os.path.basename(path)} on {armature.name}")
        return {'FINISHED'}


classes = (HEADRECON_OT_import_livelink,)
