"""``headrecon.export_livelink``: write the active head's animation as a Live Link Face CSV.

For every frame of the range (default the scene's) the scene is evaluated at that frame and
one row is written: the values of the head's ARKit shape keys (``livelink.shape_key_targets``;
shapes the head lacks are 0) and the FLAME-frame rotations of the ``neck`` / ``eye.L`` /
``eye.R`` bones as yaw/pitch/roll (``livelink.GROUP_BONES``). Timecodes count scene frames
at the scene's frame rate (rounded to a whole rate). The current frame is restored.

Gaze and jaw as the import reads them (``livelink`` module docstring): an eye's angles are its
whole gaze (the eye bone after what the ``eyeLook*`` keys turn), ``JawOpen`` is the ``jawOpen``
key plus the jaw bone's opening in units of the rotation that key imitates (so a preset that
opens the mouth by the bone exports its opening; values may exceed 1 when the bone opens wider
than the shape does).
"""

from __future__ import annotations

import bpy
import numpy as np

from ..headrecon_addon import livelink, naming
from . import face_rig
from .import_livelink import fps_of, key_axes


def flame_rotation(armature: bpy.types.Object, bone: str) -> np.ndarray:
    """(3, 3) FLAME-frame rotation of a pose bone now: ``P R_local P^T``."""
    frame = face_rig.bone_frame(armature, bone)
    return frame @ face_rig.local_matrix(armature.pose.bones[bone]) @ frame.T


class HEADRECON_OT_export_livelink(face_rig.HeadPoll, bpy.types.Operator):
    """Write the head's shape-key and head/eye animation as a Live Link Face CSV"""

    bl_idname = "headrecon.export_livelink"
    bl_label = "Export Live Link Face CSV"
    bl_options = {'REGISTER'}

    filepath: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="File Path", subtype='FILE_PATH', description="CSV file to write")
    filter_glob: bpy.props.StringProperty(default="*.csv", options={'HIDDEN'})  # type: ignore[valid-type]
    check_existing: bpy.props.BoolProperty(default=True, options={'HIDDEN'})  # type: ignore[valid-type]
    frame_start: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Start", description="First frame (the scene's start when not set)")
    frame_end: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="End", description="Last frame (the scene's end when not set)")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            self.filepath = bpy.path.ensure_ext(
                bpy.path.clean_name(face_rig.head_or_none(context)[0].name), ".csv")
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature, mesh_obj = face_rig.head_or_none(context)
        scene = context.scene
        props = self.properties
        start = self.frame_start if props.is_property_set("frame_start") else scene.frame_start
        end = self.frame_end if props.is_property_set("frame_end") else scene.frame_end
        if end < start:
            self.report({'ERROR'}, f"The frame range {start}-{end} is empty.")
            return {'CANCELLED'}
        if not self.filepath:
            self.report({'ERROR'}, "Choose a file to export to.")
            return {'CANCELLED'}
        blocks = mesh_obj.data.shape_keys.key_blocks
        targets = livelink.shape_key_targets(blocks.keys())
        bones = {g: b for g, b in livelink.GROUP_BONES.items() if b in armature.pose.bones}
        axes = key_axes(armature, mesh_obj, targets)
        jaw = naming.JAW_BONE in armature.pose.bones and livelink.JAW_OPEN_KEY in targets
        current = scene.frame_current
        frames = []
        try:
            for f in range(start, end + 1):
                scene.frame_set(f)
                weights = {n: float(blocks[k].value) for n, k in targets.items()}
                rots = {}
                for g, b in bones.items():
                    r = flame_rotation(armature, b).tolist()
                    rots[g] = livelink.matrix_to_euler(r) if g == "Head" else livelink.eye_gaze(
                        livelink.matrix_to_axis_angle(r), weights, axes, g)
                if jaw:
                    weights[livelink.JAW_OPEN_KEY] += livelink.jaw_open_of_bone(
                        livelink.matrix_to_axis_angle(
                            flame_rotation(armature, naming.JAW_BONE).tolist()), axes)
                frames.append(livelink.LiveLinkFrame(f - start, weights, rots))
        finally:
            scene.frame_set(current)
        path = bpy.path.ensure_ext(bpy.path.abspath(self.filepath), ".csv")
        try:
            livelink.write_csv(path, livelink.LiveLinkTake(float(max(1, round(fps_of(scene)))),
                                                           frames), start_frame=max(start, 0))
        except livelink.LiveLinkError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        self.report({'INFO'}, f"Wrote {len(frames)} frames ({start}-{end}) to {path}")
        return {'FINISHED'}


classes = (HEADRECON_OT_export_livelink,)
