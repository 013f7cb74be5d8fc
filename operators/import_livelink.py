"""``headrecon.import_livelink``: key a Live Link Face CSV onto the active head.

Each CSV row becomes keyframes at ``start frame + row frame`` (the first row at the start
frame, default the current frame): the ARKit weights on the head's ARKit shape keys
(``livelink.shape_key_targets``) and the head / eye rotations on the ``neck`` / ``eye.L`` /
``eye.R`` pose bones (``livelink.GROUP_BONES``). Keys go into the head's own action (as
Insert Keyframes: the action already assigned to the armature / shape keys, else a new
``<stem>_FaceAnim``); other actions are never touched. :func:`key_face` is shared with the
capture operators.

The take replaces the photo's expression: ``Captured`` and the FLAME eyelid keys are keyed to
0 at the take's first and last frames (:func:`key_photo_expression_off`; Ctrl+Z undoes the
whole import in one step), so a neutral row gives the neutral head. Gaze and jaw are one motion
each (``livelink`` module docstring): the eye bones get the CSV's eye angles less what the
keyed ``eyeLook*`` keys already turn, ``JawOpen`` opens the jaw bone (the ``jawOpen`` key is
keyed 0) and the jaw and eye bones are keyed on every row.
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from ..headrecon_addon import face_controls, livelink, naming
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


def key_photo_expression_off(mesh_obj: bpy.types.Object, frames: list[int]) -> list[str]:
    """Key ``Captured`` and the FLAME eyelid keys to 0 at ``frames`` (a take or a captured
    expression replaces the photo's expression instead of playing on top of it).

    Returns:
        the keys set (those the head has and no driver sets).
    """
    blocks = {kb.name: kb for kb in face_rig.face_key_blocks(mesh_obj)}
    done = []
    for name in (naming.CAPTURED_KEY, *naming.BLINK_KEYS):
        if name not in blocks:
            continue
        blocks[name].value = 0.0
        for f in sorted(set(frames)):
            blocks[name].keyframe_insert("value", frame=f,
                                         group=GROUP_LABELS[face_controls.key_group(name)])
        done.append(name)
    return done


def key_axes(armature: bpy.types.Object, mesh_obj: bpy.types.Object,
             targets: dict[str, str]) -> livelink.Axes:
    """ARKit name -> FLAME-frame axis-angle the head's eyeLook / jawOpen key turns its bone by
    (``livelink.KEY_BONES``; keys the head lacks are left out). The jaw's is kept about FLAME
    +X only (the opening axis of the jaw bone and the presets; the shape's sideways part is
    ~1 degree)."""
    pairs = {targets[k]: b for k, b in livelink.KEY_BONES.items() if k in targets}
    by_key = face_rig.shape_key_rotations(armature, mesh_obj, pairs)
    axes = {k: tuple(float(c) for c in by_key[targets[k]])
            for k in livelink.KEY_BONES if k in targets and targets[k] in by_key}
    if livelink.JAW_OPEN_KEY in axes:
        axes[livelink.JAW_OPEN_KEY] = (axes[livelink.JAW_OPEN_KEY][0], 0.0, 0.0)
    return axes


def frame_controls(fr: livelink.LiveLinkFrame, targets: dict[str, str], bones: dict[str, str],
                   axes: livelink.Axes, jaw_bone: bool) -> tuple[dict[str, float],
                                                                 dict[str, np.ndarray]]:
    """Shape-key values and bone rotations of one CSV row on this head.

    Args:
        targets: ARKit name -> shape key (empty: no keys imported).
        bones: rotation group -> bone (empty: no rotations imported).
        axes: :func:`key_axes` of the head.
        jaw_bone: ``JawOpen`` opens the jaw bone (its key keyed 0) instead of the key.
    Returns:
        (shape key -> value, bone -> (3,) FLAME-frame axis-angle).
    """
    weights = {targets[n]: v for n, v in fr.weights.items() if n in targets}
    keyed = {n: v for n, v in fr.weights.items() if n in targets}  # what the keys will show
    rots: dict[str, np.ndarray] = {}
    if jaw_bone:
        rots[naming.JAW_BONE] = np.array(livelink.jaw_bone_rotation(
            fr.weights.get(livelink.JAW_OPEN_KEY, 0.0), axes))
        weights[targets[livelink.JAW_OPEN_KEY]] = 0.0
    for group, bone in bones.items():
        if group == "Head":
            if group in fr.rotations:
                rots[bone] = np.array(livelink.euler_to_axis_angle(*fr.rotations[group]))
        else:  # eyes: the CSV's gaze (rest when absent) less what the eyeLook keys turn
            gaze = fr.rotations.get(group, (0.0, 0.0, 0.0))
            rots[bone] = np.array(livelink.eye_bone_rotation(gaze, keyed, axes, group))
    return weights, rots


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
        axes = key_axes(armature, mesh_obj, targets)
        jaw_bone = bool(bones) and naming.JAW_BONE in armature.pose.bones \
            and livelink.JAW_OPEN_KEY in targets and livelink.JAW_OPEN_KEY in axes
        _head_actions(armature, mesh_obj.data.shape_keys)
        current = scene.frame_current
        for fr in take.frames:
            weights, rots = frame_controls(fr, targets, bones, axes, jaw_bone)
            key_face(armature, mesh_obj, start + fr.frame, weights, rots)
        key_photo_expression_off(mesh_obj, [start, start + take.frames[-1].frame])
        scene.frame_set(current)
        last = start + take.frames[-1].frame
        self.report({'INFO'}, f"Keyed {len(take.frames)} frames ({start}-{last}) of "
                              f"{os.path.basename(path)} on {armature.name}")
        return {'FINISHED'}


classes = (HEADRECON_OT_import_livelink,)
