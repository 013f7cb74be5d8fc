"""Find the HeadRecon heads in a scene (objects marked by ``naming.HEAD_PROP``)."""

from __future__ import annotations

import bpy

from .headrecon_addon import naming


def is_head_object(obj: bpy.types.Object | None) -> bool:
    """True for the armature or the mesh object of an imported head."""
    return obj is not None and bool(obj.get(naming.HEAD_PROP))


def head_armature(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The head armature of ``obj`` (the armature itself, or the mesh's parent), or None."""
    if not is_head_object(obj):
        return None
    if obj.type == 'ARMATURE':
        return obj
    parent = obj.parent
    return parent if is_head_object(parent) and parent.type == 'ARMATURE' else None


def head_mesh(armature: bpy.types.Object) -> bpy.types.Object | None:
    """The head mesh object skinned to ``armature``, or None."""
    for child in armature.children:
        if is_head_object(child) and child.type == 'MESH':
            return child
    return None


def mouth_objects(armature: bpy.types.Object) -> list[bpy.types.Object]:
    """The mouth interior objects (teeth, tongue, cavity) skinned to ``armature``, in
    ``naming.MOUTH_PARTS`` order (those a user deleted are left out)."""
    found = {c.get(naming.MOUTH_PROP): c for c in armature.children
             if c.type == 'MESH' and c.get(naming.MOUTH_PROP) in naming.MOUTH_PARTS}
    return [found[p] for p in naming.MOUTH_PARTS if p in found]


def active_head(context: bpy.types.Context) -> tuple[bpy.types.Object, bpy.types.Object | None] | None:
    """(armature, mesh) of the head the active object belongs to, or None."""
    armature = head_armature(context.active_object)
    if armature is None:
        return None
    return armature, head_mesh(armature)
