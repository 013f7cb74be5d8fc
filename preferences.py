"""Add-on preferences of the extension, keyed by the extension's package name.

Backend settings (how to start or reach the reconstruction service) will be added here by
the backend-connection work.
"""

from __future__ import annotations

import bpy


class HeadReconPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.label(text="Import bundles with File > Import > HeadRecon Bundle or the "
                               "HeadRecon sidebar tab")


classes = (HeadReconPreferences,)
