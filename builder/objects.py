"""Stage ``objects`` (Object Mode): the collection, the mesh and armature objects, their marks."""

from __future__ import annotations

import bpy

from ..headrecon_addon import naming
from .state import HeadBuild

MODE = 'OBJECT'


def run(build: HeadBuild) -> None:
    """Create the new collection (in the scene's master collection) holding an empty mesh
    object parented to an empty armature object, both marked with ``naming.HEAD_PROP``."""
    names, bundle = build.names, build.bundle
    collection = build.track(bpy.data.collections.new(names["collection"]))
    build.context.scene.collection.children.link(collection)
    armature = build.track(bpy.data.armatures.new(names["armature"]))
    arm_obj = build.track(bpy.data.objects.new(names["armature"], armature))
    mesh = build.track(bpy.data.meshes.new(names["mesh"]))
    mesh_obj = build.track(bpy.data.objects.new(names["mesh"], mesh))
    collection.objects.link(arm_obj)
    collection.objects.link(mesh_obj)
    mesh_obj.parent = arm_obj
    arm_obj.show_in_front = True
    for obj in (arm_obj, mesh_obj):
        obj[naming.HEAD_PROP] = 1
        obj[naming.BUNDLE_PROP] = str(bundle.folder)
        obj[naming.PHOTO_PROP] = str(bundle.result.get("input", {}).get("photo", bundle.photo_stem))
    root = naming.FLAME_JOINTS.index("root")
    arm_obj[naming.ROOT_POSE_PROP] = [float(x) for x in bundle.pose[root]]
    arm_obj[naming.TRANSLATION_PROP] = [float(x) for x in bundle.translation]
    build.collection, build.mesh_obj, build.armature_obj = collection, mesh_obj, arm_obj
