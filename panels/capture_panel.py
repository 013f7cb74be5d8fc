"""Sidebar sub-panel "Performance Capture" of the active head: Expression from Photo, video /
image-folder capture with its smoothing, and Live Link Face CSV import / export."""

from __future__ import annotations

import bpy

from ..operators import face_rig
from ..operators.capture_photo import HEADRECON_OT_capture_photo
from ..operators.capture_video import HEADRECON_OT_capture_video
from ..operators.export_livelink import HEADRECON_OT_export_livelink
from ..operators.import_livelink import HEADRECON_OT_import_livelink
from .main_panel import SubPanel


class VIEW3D_PT_headrecon_capture(SubPanel, bpy.types.Panel):
    bl_label = "Performance Capture"
    bl_options = {'DEFAULT_CLOSED'}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return face_rig.head_or_none(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        wm = context.window_manager
        col = layout.column(align=True)
        col.prop(wm, "headrecon_capture_photo", text="")
        col.operator(HEADRECON_OT_capture_photo.bl_idname, icon='IMAGE_DATA')
        col = layout.column(align=True)
        col.prop(wm, "headrecon_capture_video", text="")
        col.prop(wm, "headrecon_capture_smooth")
        col.operator(HEADRECON_OT_capture_video.bl_idname, icon='FILE_MOVIE')
        layout.label(text=f"Keys start at frame {context.scene.frame_current}")
        row = layout.row(align=True)
        row.operator(HEADRECON_OT_import_livelink.bl_idname, text="Import CSV", icon='IMPORT')
        row.operator(HEADRECON_OT_export_livelink.bl_idname, text="Export CSV", icon='EXPORT')


classes = (VIEW3D_PT_headrecon_capture,)
