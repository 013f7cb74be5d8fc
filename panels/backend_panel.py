"""Sidebar panel "Reconstruct": backend status with Start/Stop, photo with preview, quality,
the Reconstruct button or the running job's progress, and the last outcome."""

from __future__ import annotations

import os
import textwrap

import bpy
import bpy.utils.previews

from ..headrecon_addon.client import current_backend
from ..operators.backend_start import HEADRECON_OT_backend_start
from ..operators.backend_stop import HEADRECON_OT_backend_stop
from ..operators.reconstruct import STATE, HEADRECON_OT_reconstruct
from .main_panel import SubPanel

STATUS_ICONS = {"stopped": 'RADIOBUT_OFF', "starting": 'SORTTIME', "ready": 'CHECKMARK',
                "busy": 'SORTTIME', "error": 'ERROR'}
MAX_PREVIEWS = 16

_previews: bpy.utils.previews.ImagePreviewCollection | None = None


def photo_icon(path: str) -> int:
    """Icon id of a preview of the photo file, or 0 when there is none."""
    path = bpy.path.abspath(path) if path else ""
    if _previews is None or not path or not os.path.isfile(path):
        return 0
    key = f"{path}:{os.path.getmtime(path)}"
    if key not in _previews:
        if len(_previews) >= MAX_PREVIEWS:
            _previews.clear()
        _previews.load(key, path, 'IMAGE')
    return _previews[key].icon_id


def wrapped(layout: bpy.types.UILayout, text: str, width_px: int, icon: str) -> None:
    """Labels for ``text`` wrapped to the panel width (about 7 px per character)."""
    col = layout.column(align=True)
    for i, line in enumerate(textwrap.wrap(text, max(20, width_px // 7)) or [""]):
        col.label(text=line, icon=icon if i == 0 else 'BLANK1')


class VIEW3D_PT_headrecon_reconstruct(SubPanel, bpy.types.Panel):
    bl_label = "Reconstruct"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        wm = context.window_manager
        width = context.region.width if context.region is not None else 300
        backend = current_backend()
        status = backend.status if backend is not None else "stopped"

        box = layout.box()
        row = box.row()
        row.label(text="Backend", icon=STATUS_ICONS[status])
        if status in ("stopped", "error"):
            row.operator(HEADRECON_OT_backend_start.bl_idname,
                         text="Restart" if status == "error" else "Start", icon='PLAY')
        else:
            row.operator(HEADRECON_OT_backend_stop.bl_idname, text="Stop", icon='PAUSE')
        wrapped(box, backend.status_text if backend is not None else "Stopped", width, 'BLANK1')

        layout.prop(wm, "headrecon_photo", text="")
        icon = photo_icon(wm.headrecon_photo)
        if icon:
            layout.template_icon(icon_value=icon, scale=6.0)
        layout.row().prop(wm, "headrecon_quality", expand=True)

        if STATE.running:
            layout.progress(factor=STATE.fraction, type='BAR', text=STATE.text)
            layout.label(text="Esc cancels", icon='EVENT_ESC')
        else:
            layout.operator(HEADRECON_OT_reconstruct.bl_idname, icon='USER')
            if STATE.text:
                wrapped(layout, STATE.text, width, 'ERROR' if STATE.is_error else 'INFO')


def register() -> None:
    global _previews
    _previews = bpy.utils.previews.new()
    bpy.utils.register_class(VIEW3D_PT_headrecon_reconstruct)


def unregister() -> None:
    global _previews
    bpy.utils.unregister_class(VIEW3D_PT_headrecon_reconstruct)
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
