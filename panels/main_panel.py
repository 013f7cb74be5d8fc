"""The "HeadRecon" tab of the 3D view sidebar: Import, and the active head's pose controls.

The controls are the pose bones' own rotation properties (animatable, keyframeable with I
over the field); other parts of the extension add child panels with
``bl_parent_id = "VIEW3D_PT_headrecon"``.
"""

from __future__ import annotations

import bpy

from ..headrecon_addon import naming
from ..heads import active_head
from ..operators.import_bundle import HEADRECON_OT_import_bundle

CATEGORY = "HeadRecon"


class SidebarPanel:
    """Mixin: a panel in the 3D view's sidebar tab "HeadRecon"."""

    bl_space_type = 'VIEW_3D'
    bl_region_type = 'UI'
    bl_category = CATEGORY


class SubPanel(SidebarPanel):
    """Mixin: a sub-panel of the main HeadRecon panel."""

    bl_parent_id = "VIEW3D_PT_headrecon"

# (bone, label) rows of the pose panel.
POSE_CONTROLS: tuple[tuple[str, str], ...] = (
    (naming.NECK_BONE, "Neck"),
    (naming.HEAD_BONE, "Head"),
    (naming.JAW_BONE, "Jaw"),
    (naming.EYE_L_BONE, "Eye Left"),
    (naming.EYE_R_BONE, "Eye Right"),
)


def rotation_property(pbone: bpy.types.PoseBone) -> str:
    """Name of the rotation property the pose bone's rotation mode uses."""
    if pbone.rotation_mode == 'QUATERNION':
        return "rotation_quaternion"
    if pbone.rotation_mode == 'AXIS_ANGLE':
        return "rotation_axis_angle"
    return "rotation_euler"


class VIEW3D_PT_headrecon(SidebarPanel, bpy.types.Panel):
    bl_label = "HeadRecon"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.operator(HEADRECON_OT_import_bundle.bl_idname, text="Import Bundle", icon='IMPORT')
        head = active_head(context)
        if head is None:
            layout.label(text="Select a HeadRecon head to pose it")
        else:
            layout.label(text=head[0].name, icon='ARMATURE_DATA')


class VIEW3D_PT_headrecon_pose(SubPanel, bpy.types.Panel):
    bl_label = "Pose"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_head(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        armature = active_head(context)[0]
        layout = self.layout
        for bone, label in POSE_CONTROLS:
            pbone = armature.pose.bones.get(bone)
            if pbone is None:
                continue
            col = layout.column(align=True)
            col.label(text=label)
            col.prop(pbone, rotation_property(pbone), text="")


classes = (VIEW3D_PT_headrecon, VIEW3D_PT_headrecon_pose)
