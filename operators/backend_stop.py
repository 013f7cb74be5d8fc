"""Stop the reconstruction backend (a running reconstruction is cancelled).

Unregistering this module (add-on disabled) stops the backend process as well; at Blender
exit the client's ``atexit`` hook does.
"""

from __future__ import annotations

import bpy

from ..headrecon_addon.client import current_backend, stop_shared
from .backend_start import redraw_sidebars


class HEADRECON_OT_backend_stop(bpy.types.Operator):
    """Stop the reconstruction backend"""

    bl_idname = "headrecon.backend_stop"
    bl_label = "Stop Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        backend = current_backend()
        return backend is not None and backend.status != "stopped"

    def execute(self, context: bpy.types.Context) -> set[str]:
        backend = current_backend()
        if backend is not None:
            backend.stop()
        redraw_sidebars()
        return {'FINISHED'}


def register() -> None:
    bpy.utils.register_class(HEADRECON_OT_backend_stop)


def unregister() -> None:
    stop_shared()
    bpy.utils.unregister_class(HEADRECON_OT_backend_stop)
