"""File > Import > HeadRecon Bundle: build an animatable head from a bundle's result.json."""

from __future__ import annotations

import time

import bpy
from bpy_extras.io_utils import ImportHelper

from ..builder import build_head
from ..headrecon_addon.bundle import BundleError, load_bundle


class HEADRECON_OT_import_bundle(bpy.types.Operator, ImportHelper):
    """Import a HeadRecon result bundle (its result.json, or any file in its folder) as a rigged FLAME head"""

    bl_idname = "headrecon.import_bundle"
    bl_label = "Import HeadRecon Bundle"
    bl_options = {'REGISTER', 'UNDO'}

    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json", options={'HIDDEN'})  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if context.mode != 'OBJECT':
            cls.poll_message_set("Switch to Object Mode to import a head")
            return False
        return context.scene is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        start = time.perf_counter()
        try:
            bundle = load_bundle(self.filepath)
        except BundleError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        build = build_head(context, bundle)
        for note in bundle.warnings:  # a missing or damaged image: imported without it
            self.report({'WARNING'}, note)
        self.report({'INFO'}, f"Imported {build.armature_obj.name} and {build.mesh_obj.name} "
                              f"in {time.perf_counter() - start:.2f} s")
        return {'FINISHED'}


def menu_func_import(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    self.layout.operator(HEADRECON_OT_import_bundle.bl_idname, text="HeadRecon Bundle (result.json)")


def register() -> None:
    bpy.utils.register_class(HEADRECON_OT_import_bundle)
    bpy.types.TOPBAR_MT_file_import.append(menu_func_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_func_import)
    bpy.utils.unregister_class(HEADRECON_OT_import_bundle)
