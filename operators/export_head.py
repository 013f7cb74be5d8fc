"""``headrecon.export_head``: write the active head (armature, mesh and the mouth interior:
teeth, tongue, cavity) as .glb or .fbx.

Settings come from ``headrecon_addon.export_profiles``. For the export, and only for it,
the head is the only selection, its shape keys and bones carry the rename profile's names
and (Unreal) the armature object is called ``Armature``; names, selection and active
object are restored afterwards, also when the exporter fails. Renaming a bone or a shape
key through Blender's API also renames vertex groups, animation paths and driver targets,
so restoring the names restores the head exactly.

The mouth objects (``heads.mouth_objects``) go along when they are visible; the tongue's
``tongueOut`` key gets the rename profile's name too, and its driver (the head's
``tongueOut``) is baked into the animation by both exporters.

Also for the export only: glTF gets the mesh (and each mouth object) unparented from the armature (same world
matrix; the Armature modifier keeps the skin), so the file has the skinned mesh node beside
the armature node; FBX gets the scene's frame range set to the keyed range of the head's
action(s) and the scene named after the action (the FBX exporter names its take after the
scene). Parent, frame range and scene name are restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import bpy

from ..headrecon_addon import export_profiles as ep
from ..headrecon_addon.face_controls import head_stem
from ..heads import mouth_objects
from . import face_rig

RENAME_ITEMS: list[tuple[str, str, str]] = [
    ("PRESET", "Preset's Names", "The rename profile the export preset recommends")] + [
    (p.id, p.label, p.description) for p in ep.RENAME_PROFILES]


@contextmanager
def _only_selected(context: bpy.types.Context, objects: list[bpy.types.Object]) -> Iterator[None]:
    """Select exactly ``objects`` (the first one active); restore selection and active after."""
    view_layer = context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    try:
        for obj in selected:
            obj.select_set(False)
        for obj in objects:
            obj.select_set(True)
        view_layer.objects.active = objects[0]
        yield
    finally:
        for obj in objects:
            obj.select_set(False)
        for obj in selected:
            if obj.name in view_layer.objects:
                obj.select_set(True)
        view_layer.objects.active = active


def _rename_all(items: list[tuple[bpy.types.bpy_struct, str]]) -> None:
    """Give each struct (shape key, bone, object) its name, via free temporary names first
    so swaps and chains never collide."""
    for k, (struct, _) in enumerate(items):
        struct.name = f"__headrecon_tmp_{k}"
    for struct, name in items:
        struct.name = name


@contextmanager
def _renamed(armature: bpy.types.Object, mesh_obj: bpy.types.Object, mapping: ep.RenameMap,
             armature_node: str | None,
             others: tuple[bpy.types.Object, ...] = ()) -> Iterator[None]:
    """Names of the rename map (and the armature object name) for the duration of the block;
    ``others`` (mouth objects) get the map's names on the shape keys they share with the head."""
    key_blocks = mesh_obj.data.shape_keys.key_blocks
    bones = armature.data.bones
    forward = ([(key_blocks[old], new) for old, new in mapping.keys.items()]
               + [(bones[old], new) for old, new in mapping.bones.items()])
    for obj in others:
        if obj.data.shape_keys is not None:
            blocks = obj.data.shape_keys.key_blocks
            forward += [(blocks[old], new) for old, new in mapping.keys.items() if old in blocks]
    if armature_node is not None:
        forward.append((armature, armature_node))
    originals = [(struct, struct.name) for struct, _ in forward]
    _rename_all(forward)
    try:
        yield
    finally:
        _rename_all(originals)


def _head_actions(armature: bpy.types.Object, mesh_obj: bpy.types.Object) -> list[bpy.types.Action]:
    """The actions of the armature and of the head's shape keys (each once)."""
    owners = (armature, mesh_obj.data.shape_keys)
    actions = [o.animation_data.action for o in owners
               if o is not None and o.animation_data is not None and o.animation_data.action is not None]
    return list(dict.fromkeys(actions))


@contextmanager
def _mesh_beside_armature(mesh_obj: bpy.types.Object) -> Iterator[None]:
    """The mesh without its parent (same world matrix) for the duration of the block."""
    parent, parent_type, bone = mesh_obj.parent, mesh_obj.parent_type, mesh_obj.parent_bone
    basis, inverse = mesh_obj.matrix_basis.copy(), mesh_obj.matrix_parent_inverse.copy()
    world = mesh_obj.matrix_world.copy()
    mesh_obj.parent = None
    mesh_obj.matrix_world = world
    try:
        yield
    finally:
        mesh_obj.parent, mesh_obj.parent_type, mesh_obj.parent_bone = parent, parent_type, bone
        mesh_obj.matrix_parent_inverse = inverse
        mesh_obj.matrix_basis = basis


@contextmanager
def _take_from_action(scene: bpy.types.Scene, actions: list[bpy.types.Action]) -> Iterator[str | None]:
    """Scene frame range = the actions' keyed range and scene name = the first action's name
    for the duration of the block; yields a warning sentence or None."""
    keyed = ep.keyed_frame_range([tuple(a.frame_range) for a in actions])
    if keyed is None:
        yield None
        return
    saved = (scene.name, scene.frame_start, scene.frame_end)
    name = actions[0].name
    warning = None
    if name != scene.name and name in bpy.data.scenes:
        warning = f"A scene named {name} exists, so the FBX take keeps the scene's name {scene.name}."
        name = scene.name
    # frame_end first when moving the range up, frame_start first when moving it down
    scene.frame_end = max(keyed[1], scene.frame_start)
    scene.frame_start = keyed[0]
    scene.frame_end = keyed[1]
    scene.name = name
    try:
        yield warning
    finally:
        scene.name = saved[0]
        scene.frame_end = max(saved[2], scene.frame_start)
        scene.frame_start = saved[1]
        scene.frame_end = saved[2]


class HEADRECON_OT_export_head(face_rig.HeadPoll, bpy.types.Operator):
    """Export the head (armature, mesh, shape keys, animation) for glTF viewers, Unreal or Unity"""

    object_mode_for = "export"
    bl_idname = "headrecon.export_head"
    bl_label = "Export Head"
    bl_options = {'REGISTER'}

    filepath: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="File Path", description="File to write", subtype='FILE_PATH')
    filter_glob: bpy.props.StringProperty(  # type: ignore[valid-type]
        default="*.glb;*.fbx", options={'HIDDEN'})
    check_existing: bpy.props.BoolProperty(  # type: ignore[valid-type]
        default=True, options={'HIDDEN'})
    preset: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Preset", items=[(p.id, p.label, p.description) for p in ep.EXPORT_PRESETS],
        default="GLB")
    rename: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Names", items=RENAME_ITEMS, default="PRESET")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            folder = os.path.dirname(bpy.data.filepath) or os.path.expanduser("~")
            name = head_stem(face_rig.head_or_none(context)[0].name)
            self.filepath = os.path.join(folder, bpy.path.clean_name(name))
        self.filepath = ep.export_path(self.filepath, self.preset)
        context.window_manager.fileselect_add(self)
        return {'RUNNING_MODAL'}

    def check(self, context: bpy.types.Context) -> bool:
        fixed = ep.export_path(self.filepath, self.preset) if self.filepath else self.filepath
        changed = fixed != self.filepath
        self.filepath = fixed
        return changed

    def execute(self, context: bpy.types.Context) -> set[str]:
        armature, mesh_obj = face_rig.head_or_none(context)
        preset = ep.EXPORT_PRESETS_BY_ID[self.preset]
        if not self.filepath:
            self.report({'ERROR'}, "Choose a file to export to.")
            return {'CANCELLED'}
        path = ep.export_path(bpy.path.abspath(self.filepath), preset.id)
        mouth = [o for o in mouth_objects(armature)
                 if o.name in context.view_layer.objects and o.visible_get()]
        for obj in (armature, mesh_obj):
            if obj.name not in context.view_layer.objects or not obj.visible_get():
                self.report({'ERROR'}, f"{obj.name} is hidden or excluded from the view layer; "
                                       "show it to export the head.")
                return {'CANCELLED'}
        profile = preset.rename if self.rename == 'PRESET' else self.rename
        try:
            mapping = ep.rename_map(profile, mesh_obj.data.shape_keys.key_blocks.keys(),
                                    armature.data.bones.keys())
        except ValueError as exc:
            self.report({'ERROR'}, str(exc))
            return {'CANCELLED'}
        node = preset.armature_node_name
        if node is not None and node != armature.name and node in bpy.data.objects:
            self.report({'WARNING'}, f"An object named {node} exists, so the armature keeps its "
                                     f"name {armature.name} (Unreal adds it as an extra root bone).")
            node = None
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        exporter = (bpy.ops.export_scene.gltf if preset.exporter == "gltf"
                    else bpy.ops.export_scene.fbx)
        with ExitStack() as stack:
            stack.enter_context(_only_selected(context, [armature, mesh_obj, *mouth]))
            stack.enter_context(_renamed(armature, mesh_obj, mapping, node, tuple(mouth)))
            if preset.mesh_beside_armature:
                for obj in (mesh_obj, *mouth):
                    stack.enter_context(_mesh_beside_armature(obj))
            if preset.take_from_action:
                warning = stack.enter_context(
                    _take_from_action(context.scene, _head_actions(armature, mesh_obj)))
                if warning is not None:
                    self.report({'WARNING'}, warning)
            result = exporter(filepath=path, **dict(preset.settings))
        if 'FINISHED' not in result:
            self.report({'ERROR'}, f"The {preset.label} exporter did not finish.")
            return {'CANCELLED'}
        self.filepath = path
        self.report({'INFO'}, f"Exported {head_stem(armature.name)} to {path}")
        return {'FINISHED'}


classes = (HEADRECON_OT_export_head,)
