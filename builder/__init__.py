"""Builds an animatable head from a validated bundle, in explicit stages (bpy).

Stages run in this order, each in the Blender mode it declares (``MODE``); the builder
switches modes between them and returns to Object Mode:

========== ======= ============================================================
stage      mode    does
========== ======= ============================================================
objects    OBJECT  collection, mesh and armature objects, HeadRecon marks
mesh       OBJECT  FLAME-topology geometry, UV map, smooth shading
shape_keys OBJECT  Basis, expressions, blinks, Captured, ARKit, correctives
armature   EDIT    six bones with exact rest frames (edit mode of the armature)
skin       OBJECT  vertex groups from the skin weights, Armature modifier
drivers    OBJECT  corrective keys driven by jaw / neck rotations
pose       OBJECT  the photo's neck, jaw and eye pose on the pose bones
material   OBJECT  Principled BSDF with the bundle's texture / maps
eyes       OBJECT  eye UV map and eyeball material (pupil, iris colour, sclera, coat)
mouth      OBJECT  teeth, tongue (tongueOut key driven by the head's) and cavity objects
========== ======= ============================================================

Only new datablocks are created; if a stage fails they are all removed again.
"""

from __future__ import annotations

import time
from types import ModuleType

import bpy

from ..headrecon_addon import naming, rig
from ..headrecon_addon.bundle import Bundle
from . import armature, drivers, eyes, material, mesh, mouth, objects, pose, shape_keys, skin
from .state import HeadBuild

STAGES: tuple[ModuleType, ...] = (objects, mesh, shape_keys, armature, skin, drivers, pose, material,
                                   eyes, mouth)


def stage_name(stage: ModuleType) -> str:
    return stage.__name__.rpartition(".")[2]


def _run_stage(build: HeadBuild, stage: ModuleType) -> None:
    if stage.MODE == 'EDIT':
        build.context.view_layer.objects.active = build.armature_obj
        bpy.ops.object.mode_set(mode='EDIT')
        try:
            stage.run(build)
        finally:
            bpy.ops.object.mode_set(mode='OBJECT')
    else:
        stage.run(build)


def _remove_created(build: HeadBuild) -> None:
    """Delete every datablock of a failed build (objects first, then their data)."""
    if bpy.context.mode != 'OBJECT':
        bpy.ops.object.mode_set(mode='OBJECT')
    collections = ((bpy.types.Object, bpy.data.objects), (bpy.types.Collection, bpy.data.collections),
                   (bpy.types.Mesh, bpy.data.meshes), (bpy.types.Armature, bpy.data.armatures),
                   (bpy.types.Material, bpy.data.materials), (bpy.types.Image, bpy.data.images))
    for block in sorted(build.created, key=lambda b: not isinstance(b, bpy.types.Object)):
        data = next(data for cls, data in collections if isinstance(block, cls))
        data.remove(block)


def build_head(context: bpy.types.Context, bundle: Bundle) -> HeadBuild:
    """Build the head of ``bundle`` into a new collection of ``context.scene``.

    Must be called in Object Mode. The new armature becomes the active object and the
    armature and mesh are the only selected objects.

    Returns:
        The finished HeadBuild (objects, collection, per-stage timings in seconds).
    """
    if context.mode != 'OBJECT':
        raise RuntimeError("HeadRecon builds heads in Object Mode only")
    build = HeadBuild(
        context=context, bundle=bundle, names=naming.object_names(bundle.photo_stem),
        bones=rig.bone_layout(bundle.joints, bundle.v_neutral, bundle.weights),
        basis=rig.flame_to_blender(bundle.v_neutral),
    )
    previous_active = context.view_layer.objects.active
    try:
        for stage in STAGES:
            start = time.perf_counter()
            _run_stage(build, stage)
            build.timings[stage_name(stage)] = time.perf_counter() - start
    except Exception:
        _remove_created(build)
        context.view_layer.objects.active = previous_active
        raise
    for obj in context.view_layer.objects:
        if obj.select_get():
            obj.select_set(False)
    build.mesh_obj.select_set(True)
    build.armature_obj.select_set(True)
    context.view_layer.objects.active = build.armature_obj
    return build
