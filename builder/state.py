"""State shared by the build stages of one head."""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np

from ..headrecon_addon import rig
from ..headrecon_addon.bundle import Bundle


@dataclass
class HeadBuild:
    """Everything the stages of one build read and write.

    Attributes:
        context: the Blender context the build runs in.
        bundle: the validated bundle.
        names: naming.object_names() for the bundle's photo.
        bones: rig.bone_layout() of the bundle's identity.
        basis: (V, 3) float32 neutral mesh in Blender coordinates.
        collection, mesh_obj, armature_obj: created by the ``objects`` stage.
        mouth_objs: part name -> object, created by the ``mouth`` stage ({} without a mouth).
        created: every datablock the build created (removed again if the build fails).
        timings: stage name -> seconds.
    """

    context: bpy.types.Context
    bundle: Bundle
    names: dict[str, str]
    bones: list[rig.BoneSpec]
    basis: np.ndarray
    collection: bpy.types.Collection | None = None
    mesh_obj: bpy.types.Object | None = None
    armature_obj: bpy.types.Object | None = None
    mouth_objs: dict[str, bpy.types.Object] = field(default_factory=dict)
    created: list[bpy.types.ID] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def track(self, block: bpy.types.ID) -> bpy.types.ID:
        """Remember a datablock this build created; returns it."""
        self.created.append(block)
        return block
