"""HeadRecon Blender extension: builds animatable FLAME heads from HeadRecon result bundles.

Registration: ``MODULES`` lists the submodules in registration order; each exposes
``register()``/``unregister()`` or a ``classes`` tuple (registered in order, unregistered
in reverse). Add new modules to the tuple (and to build.py's ``EXTENSION_PATHS`` when they
are new top-level files or folders).
"""

from __future__ import annotations

from types import ModuleType

import bpy

from . import preferences
from .operators import apply_preset, export_head, import_bundle, insert_keyframes, reset_expression
from .operators import backend_start, backend_stop, reconstruct
from .panels import backend_panel, expression_panel, main_panel
from .operators import capture_photo, capture_video, export_livelink, import_livelink
from .panels import capture_panel

MODULES: tuple[ModuleType, ...] = (preferences, import_bundle, apply_preset, reset_expression,
                                   insert_keyframes, export_head, backend_start, backend_stop,
                                   reconstruct, main_panel, backend_panel, expression_panel)
MODULES += (import_livelink, export_livelink, capture_photo, capture_video, capture_panel)


def register() -> None:
    for module in MODULES:
        if hasattr(module, "register"):
            module.register()
        else:
            for cls in module.classes:
                bpy.utils.register_class(cls)


def unregister() -> None:
    for module in reversed(MODULES):
        if hasattr(module, "unregister"):
            module.unregister()
        else:
            for cls in reversed(module.classes):
                bpy.utils.unregister_class(cls)
