"""Sub-panels of the "HeadRecon" sidebar tab: Expression (presets, reset, keyframes, the
shape-key sliders grouped and filtered) and Export.

The sliders are the shape keys' own ``value`` properties, so they animate and key like any
shape key (I over a slider). The filter text is UI state on the WindowManager; nothing an
artist animates lives there.
"""

from __future__ import annotations

import bpy

from ..headrecon_addon import export_profiles, face_controls, presets
from ..operators import face_rig
from ..operators.apply_preset import HEADRECON_OT_apply_preset
from ..operators.export_head import HEADRECON_OT_export_head
from ..operators.insert_keyframes import HEADRECON_OT_insert_keyframes
from ..operators.reset_expression import HEADRECON_OT_reset_expression
from .main_panel import SubPanel

FILTER_PROP = "headrecon_key_filter"
CLOSED_GROUPS = ("PCA", "OTHER")  # long or rarely used: collapsed until opened
PRESET_COLUMNS = 3


class _HeadPanel(SubPanel):

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return face_rig.head_or_none(context) is not None


class VIEW3D_PT_headrecon_expression(_HeadPanel, bpy.types.Panel):
    bl_label = "Expression"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        grid = layout.grid_flow(columns=PRESET_COLUMNS, even_columns=True, align=True)
        for preset in presets.PRESETS:
            grid.operator(HEADRECON_OT_apply_preset.bl_idname, text=preset.label).preset = preset.id
        row = layout.row(align=True)
        for target, label, _ in face_controls.RESET_TARGETS:
            row.operator(HEADRECON_OT_reset_expression.bl_idname, text=f"Reset to {label}",
                         icon='LOOP_BACK').target = target
        layout.operator(HEADRECON_OT_insert_keyframes.bl_idname, text="Insert Keyframes",
                        icon='KEYFRAME_HLT')


class VIEW3D_PT_headrecon_shape_keys(_HeadPanel, bpy.types.Panel):
    bl_label = "Shape Keys"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        mesh_obj = face_rig.head_or_none(context)[1]
        layout.prop(context.window_manager, FILTER_PROP, text="", icon='VIEWZOOM')
        blocks = {kb.name: kb for kb in face_rig.face_key_blocks(mesh_obj)}
        groups = face_controls.grouped_keys(blocks, getattr(context.window_manager, FILTER_PROP))
        if not groups:
            layout.label(text="No shape key matches the filter")
        for gid, label, names in groups:
            header, body = layout.panel(f"headrecon_keys_{gid}", default_closed=gid in CLOSED_GROUPS)
            header.label(text=f"{label} ({len(names)})")
            if body is None:
                continue
            col = body.column(align=True)
            for name in names:
                col.prop(blocks[name], "value", text=name, slider=True)


class VIEW3D_PT_headrecon_export(_HeadPanel, bpy.types.Panel):
    bl_label = "Export"
    bl_options = {'DEFAULT_CLOSED'}

    def draw(self, context: bpy.types.Context) -> None:
        col = self.layout.column(align=True)
        for preset in export_profiles.EXPORT_PRESETS:
            col.operator(HEADRECON_OT_export_head.bl_idname, text=preset.label,
                         icon='EXPORT').preset = preset.id


classes = (VIEW3D_PT_headrecon_expression, VIEW3D_PT_headrecon_shape_keys,
           VIEW3D_PT_headrecon_export)


def register() -> None:
    setattr(bpy.types.WindowManager, FILTER_PROP, bpy.props.StringProperty(
        name="Filter", description="Show only the shape keys whose name contains every word",
        options={'TEXTEDIT_UPDATE'}))
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
    delattr(bpy.types.WindowManager, FILTER_PROP)
