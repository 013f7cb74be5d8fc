"""``headrecon.capture_video``: performance capture of a video file or an image folder onto
the active head. Every frame is fitted by the backend (``python -m backend capture``, see
:mod:`.capture_photo`), smoothed over time, and keyed from the current frame on: frame ``i``
of the video at ``current + i`` (one video frame per scene frame: match the scene's frame
rate to the video's for real-time playback). Progress (bar, frames/s, time left) in the status
bar; Esc stops the capture and keys the frames captured so far (a second Esc discards them).
"""

from __future__ import annotations

import bpy

from .capture_photo import CaptureOperatorBase


class HEADRECON_OT_capture_video(CaptureOperatorBase, bpy.types.Operator):
    """Capture a video or image folder onto the head: ARKit keys, jaw, eye and head rotations per frame, keyed from the current frame (Esc stops and keeps the frames so far)"""

    bl_idname = "headrecon.capture_video"
    bl_label = "Capture Video"

    source_prop = "video"
    what = "Video"
    keep_on_escape = True

    video: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Video or Folder", subtype='FILE_PATH', options={'SKIP_SAVE'},
        description="Video file or folder of images (default: the panel's)")
    smoothing: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Smoothing", default=-1.0, min=-1.0, max=10.0, options={'SKIP_SAVE'},
        description="Temporal smoothing, Gaussian sigma in frames (-1: the panel's value)")

    def extra_args(self, context: bpy.types.Context) -> list[str]:
        smooth = self.smoothing if self.smoothing >= 0 else context.window_manager.headrecon_capture_smooth
        return ["--smooth", f"{smooth:g}"]


def register() -> None:
    wm = bpy.types.WindowManager
    wm.headrecon_capture_video = bpy.props.StringProperty(
        name="Video", subtype='FILE_PATH',
        description="Video file, or folder of images (frames in natural name order)")
    wm.headrecon_capture_smooth = bpy.props.FloatProperty(
        name="Smoothing", default=1.0, min=0.0, max=10.0,
        description="Temporal smoothing of the captured values (Gaussian sigma in frames, 0: off)")
    bpy.utils.register_class(HEADRECON_OT_capture_video)


def unregister() -> None:
    bpy.utils.unregister_class(HEADRECON_OT_capture_video)
    del bpy.types.WindowManager.headrecon_capture_smooth
    del bpy.types.WindowManager.headrecon_capture_video
