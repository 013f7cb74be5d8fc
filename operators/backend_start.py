"""Start (or restart) the reconstruction backend set in the preferences.

Also owns the status watcher: a ``bpy.app.timers`` function that polls the backend while it
runs (so a crash while idle shows up in the panel) and redraws the sidebar.
"""

from __future__ import annotations

import bpy

from ..headrecon_addon.client import Backend, BackendError, current_backend, shared_backend
from ..preferences import backend_config

WATCH_INTERVAL_S = 0.25


def redraw_sidebars() -> None:
    """Redraw every 3D view so the HeadRecon panel shows the latest status."""
    wm = bpy.context.window_manager
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type == 'VIEW_3D':
                area.tag_redraw()


def _watch() -> float | None:
    backend = current_backend()
    if backend is None:
        return None
    before = (backend.status, backend.message)
    backend.poll()
    if (backend.status, backend.message) != before:
        redraw_sidebars()
    return WATCH_INTERVAL_S if backend.status in ("starting", "ready", "busy") else None


def watch_backend() -> None:
    """Keep polling the backend from Blender's main loop until it stops or fails."""
    if not bpy.app.timers.is_registered(_watch):
        bpy.app.timers.register(_watch, first_interval=WATCH_INTERVAL_S, persistent=True)


def unwatch_backend() -> None:
    if bpy.app.timers.is_registered(_watch):
        bpy.app.timers.unregister(_watch)


def start_backend(context: bpy.types.Context) -> Backend:
    """The shared backend for the current preferences, started if it is not running.

    Raises:
        BackendError: it cannot be started (no or a wrong command, bad remote URL).
    """
    backend = shared_backend(backend_config(context))
    # A backend that died while idle is restarted here and says so (restart_note).
    backend.restart_note = backend.ensure_running()
    watch_backend()
    return backend


class HEADRECON_OT_backend_start(bpy.types.Operator):
    """Start the reconstruction backend (or restart it after an error)"""

    bl_idname = "headrecon.backend_start"
    bl_label = "Start Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            backend = start_backend(context)
        except BackendError as exc:
            self.report({'ERROR'}, str(exc))
            redraw_sidebars()
            return {'CANCELLED'}
        if getattr(backend, "warning", None):
            self.report({'WARNING'}, backend.warning)
        if backend.restart_note:
            self.report({'WARNING'}, backend.restart_note)
        self.report({'INFO'}, f"HeadRecon backend: {backend.status_text}")
        redraw_sidebars()
        return {'FINISHED'}


def register() -> None:
    bpy.utils.register_class(HEADRECON_OT_backend_start)


def unregister() -> None:
    unwatch_backend()
    bpy.utils.unregister_class(HEADRECON_OT_backend_start)
